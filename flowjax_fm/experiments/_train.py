"""The one training job: ``train_and_evaluate(config, workdir)`` for point and image runs.

Order of work, so that a refused run writes nothing: resolve the config, load and check the
data, build the model and step, check the devices and the directory (new, or the same run when
resuming), and only then write ``run.json``, checkpoints, logs and the evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["train_and_evaluate", "prepare"]


class _Clock:
    """Wall time per fit chunk; the first chunk's excess over the steady rate is compile time."""

    def __init__(self):
        self.chunks: list[tuple[float, int]] = []
        self.last = time.perf_counter()

    def tick(self, n: int) -> None:
        now = time.perf_counter()
        self.chunks.append((now - self.last, n))
        self.last = now

    def restart(self) -> None:
        self.last = time.perf_counter()

    def summary(self) -> dict:
        c = self.chunks
        if len(c) > 1:
            steady = sum(t for t, _ in c[1:]) / sum(n for _, n in c[1:])
            compile_s, rate = max(c[0][0] - steady * c[0][1], 0.0), 1.0 / steady
        elif c:
            compile_s, rate = float("nan"), c[0][1] / c[0][0]
        else:
            compile_s = rate = float("nan")
        return {
            "steps_per_s": float(rate),
            "compile_s": float(compile_s),
            "train_s": float(sum(t for t, _ in c)),
        }


def _absolute(config):
    from flowjax_fm.experiments._data import absolute_spec

    changes = {}
    if config.source is not None:
        changes["source"] = absolute_spec(config.source)
    changes["target"] = absolute_spec(config.target)
    return dataclasses.replace(config, **changes)


def prepare(config):
    """``(resolved config, task, refs, built)``: every check that needs no directory."""
    from flowjax_fm.experiments._build import build
    from flowjax_fm.experiments._config import RunConfig, resolve
    from flowjax_fm.experiments._data import file_ref, load_task, task_kind

    if not isinstance(config, RunConfig):
        raise TypeError(
            f"config must be a fm.experiments.RunConfig (RunConfig.from_dict(d) reads a dict, "
            f"load_config(path) a file), got {type(config).__name__}"
        )
    config = _absolute(config)
    kind = task_kind(config.target)
    config = resolve(config, kind)
    task = load_task(config, kind)
    refs = {"source": file_ref(config.source), "target": file_ref(config.target)}
    built = build(config, task.event_shape, task.num_classes, extra=task.extra)
    return config, task, refs, built


def _check_resume(workdir: Path, config, refs) -> dict:
    from flowjax_fm.experiments._rundir import read_record, with_later_keys

    if not workdir.is_dir():
        raise ValueError(f"--resume: {workdir} holds no run")
    record = read_record(workdir)
    saved, now = with_later_keys(record["config"]), config.to_dict()
    saved["steps"] = now["steps"]  # a run may be extended

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "options":
                yield from flat(v, prefix + k + ".")
            else:
                yield prefix + k, v

    a, b = dict(flat(saved)), dict(flat(now))
    differ = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if differ:
        raise ValueError(f"--resume: settings differ from the saved run: {', '.join(differ)}")
    for what in ("source", "target"):
        if record[what].get("sha256") != refs[what].get("sha256"):
            raise ValueError(f"--resume: the {what} file {refs[what]['spec']} changed since the run began")
    return record


def _devices(config, step, state):
    from flowjax_fm import training

    n_dev = jax.device_count() if config.devices is None else config.devices
    if n_dev > jax.device_count():
        raise ValueError(f"asked for {n_dev} devices but {jax.device_count()} are available")
    if config.batch % n_dev:
        raise ValueError(f"the batch {config.batch} is not divisible by the device count {n_dev}")
    if n_dev > 1 or jax.process_count() > 1:
        mesh = training.data_mesh(n_dev)
        step = training.shard_step(step, mesh)
        state = training.replicate(state, mesh)
    return n_dev, step, state


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err)


def train_and_evaluate(
    config, workdir, *, resume: bool = False, progress: bool = True, origin: dict | None = None
) -> dict:
    """Train the run ``config`` describes into ``workdir``, evaluate it, return ``metrics.json``.

    Args:
      config: a :class:`RunConfig` (``None`` fields take the defaults of the run's kind).
      workdir: a new (absent or empty) directory, or with ``resume=True`` the directory of the
        same run to continue (only ``steps`` may differ: a run may be extended).
      progress: show a progress bar.

    Returns:
      the metrics written to ``metrics.json``.

    Raises:
      ValueError: bad settings or data, a directory that is not new (or, resuming, not the
        same run), a damaged checkpoint, out of memory (the batch is named).
      NonFiniteLossError: a non-finite loss; the message names the step saved on disk.
    """
    from flowjax_fm import training
    from flowjax_fm.experiments._evaluate import Evaluator
    from flowjax_fm.experiments._logging import MetricLogger
    from flowjax_fm.experiments._rundir import (
        check_new_directory,
        make_directory,
        run_record,
        write_run_files,
    )

    config, task, refs, built = prepare(config)
    state = training.init_state(built.init, built.optimizer)
    n_dev, step, state = _devices(config, built.step, state)
    workdir = Path(workdir).expanduser().absolute()
    is_main = jax.process_index() == 0
    if resume:
        record = _check_resume(workdir, config, refs)
        ckpt = training.Checkpointer(workdir / "checkpoint")
        if ckpt.latest_step() is not None:
            state = ckpt.restore(state)
        start = int(jax.device_get(state.step))
        if start > config.steps:
            ckpt.close()
            raise ValueError(f"--resume: the run is at step {start}, past steps {config.steps}")
        record["config"] = config.to_dict()
    else:
        check_new_directory(workdir)
        record = run_record(config, task, refs, origin)
        start = 0
    # every check is done: from here on the directory is written
    if is_main:
        make_directory(workdir)
        write_run_files(workdir, record)
    if not resume:
        ckpt = training.Checkpointer(workdir / "checkpoint")
    k_train, k_eval = jax.random.split(jax.random.key(config.seed))
    evaluator = Evaluator(config, task, built.model, k_eval, workdir, is_main=is_main)
    eval_params = (lambda s: s.ema) if config.ema_decay is not None else (lambda s: s.params)
    last = {"state": state}
    history_eval: list[dict] = []

    logger = MetricLogger(workdir, log_every=config.log_every, enabled=is_main,
                          start_step=start if resume else None)
    with logger as log:

        def on_chunk(state, chunk_metrics):
            n = len(chunk_metrics["loss"])
            clock.tick(n)
            s = int(jax.device_get(state.step))
            last["state"] = state
            log.log_chunk(
                s,
                {k: np.asarray(v) for k, v in chunk_metrics.items() if k not in ("step", "epoch")},
                final=s == config.steps,
            )
            if s % config.checkpoint_every < n or s == config.steps:
                ckpt.save(state)
            if config.eval.every and s % config.eval.every < n and s != config.steps:
                scalars = evaluator.scalars(_host(eval_params(state)))
                log.log_scalars(s, scalars, prefix="eval")
                history_eval.append(dict(scalars, step=s))
            clock.restart()

        clock = _Clock()
        try:
            state, history = training.fit(
                step,
                state,
                k_train,
                task.source,
                task.target,
                num_steps=config.steps - start,
                batch_size=config.batch,
                progress=progress and is_main,
                chunk_size=config.chunk,
                on_chunk=on_chunk,
                pairing=config.pairing,
                prefetch=config.prefetch,
                workers=config.pairing_workers,
            )
        except training.NonFiniteLossError as err:
            kept = _save_last(ckpt, err.state)
            raise training.NonFiniteLossError(
                f"training stopped: {err}; {kept}", step=err.step, state=err.state
            ) from None
        except KeyboardInterrupt:
            _save_last(ckpt, last["state"])
            raise
        except Exception as err:
            if _out_of_memory(err):
                ckpt.close()
                raise ValueError(
                    f"out of memory at batch {config.batch} ({n_dev} device(s)): lower --batch, "
                    "or use --accumulate to split each batch"
                ) from None
            raise
        if ckpt.latest_step() != int(jax.device_get(state.step)):
            ckpt.save(state)
        ckpt.close()

        params = _host(eval_params(state))
        result = {
            "loss": _tail_mean(history.get("loss")),
            **clock.summary(),
            "steps": int(jax.device_get(state.step)),
        }
        if task.kind == "images":
            result["images_per_s"] = result["steps_per_s"] * config.batch
        result.update(evaluator.final(params, workdir if is_main else None))
        if history_eval:
            result["history"] = history_eval
        result.update(
            device=jax.devices()[0].device_kind,
            devices=n_dev,
            processes=jax.process_count(),
            jax_version=jax.__version__,
        )
        log.log_scalars(
            result["steps"],
            {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)},
            prefix="final",
        )
    if is_main:
        training.write_json_atomic(workdir / "metrics.json", result)
    return result


def _host(tree):
    """Parameters replicated over devices (or processes) as arrays on this process's device."""
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), tree)


def _tail_mean(losses) -> float:
    if losses is None or len(losses) == 0:
        return float("nan")
    losses = np.asarray(losses)
    return float(np.mean(losses[-min(len(losses), 200) :]))


def _save_last(ckpt, state) -> str:
    """Save ``state`` unless it is already on disk; say which step is kept."""
    step = int(jax.device_get(state.step))
    latest = ckpt.latest_step()
    if latest is None or latest < step:
        ckpt.save(state)
        latest = step
    ckpt.close()
    return f"the state of step {latest} (the last with finite losses) is saved in {ckpt.directory}"
