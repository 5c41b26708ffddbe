"""The main job: train a flow between two point sets, evaluate it, write the run directory.

``train_and_evaluate(config, workdir)`` is what ``flowjax-fm train`` runs; the command line
only parses flags into a :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["TrainConfig", "train_and_evaluate", "load_run", "build_source"]


@dataclasses.dataclass
class TrainConfig:
    """Settings of one run (saved as ``config.json`` in the run directory)."""

    source: str = "8gaussians"
    target: str = "moons"
    coupling: str = "exact-ot"
    path: str = "gaussian"
    # path width; None: the path's default (0.1 gaussian, 1.0 bridge)
    sigma: float | None = None
    # Sinkhorn regularisation; None: 2 sigma^2 for the bridge, else 0.05
    epsilon: float | None = None
    steps: int = 20_000
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0
    hidden: tuple[int, ...] = (64, 64, 64)
    activation: str = "selu"
    ema_decay: float | None = None
    eval_samples: int = 2000
    solver: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-4
    chunk: int = 500
    checkpoint_every: int = 5000
    devices: int | None = None  # None: every device (of every process)
    coupling_scope: str = "global"
    schedule: str = "constant"
    warmup: int = 0
    clip: float | None = None
    weight_decay: float = 0.0
    accumulate: int = 1

    def validate(self) -> None:
        from flowjax_fm import couplings, paths, sampling

        if self.coupling not in couplings.COUPLINGS:
            raise ValueError(
                f"unknown coupling {self.coupling!r}; choose one of {sorted(couplings.COUPLINGS)}"
            )
        if self.path not in paths.PATHS:
            raise ValueError(f"unknown path {self.path!r}; choose one of {sorted(paths.PATHS)}")
        if self.solver not in sampling.SOLVER_NAMES:
            raise ValueError(
                f"unknown solver {self.solver!r}; choose one of {sorted(sampling.SOLVER_NAMES)}"
            )
        for name in ("steps", "batch", "eval_samples", "chunk", "checkpoint_every", "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.coupling_scope not in ("global", "per_shard"):
            raise ValueError(
                f"coupling scope must be 'global' or 'per_shard', got {self.coupling_scope!r}"
            )
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices must be at least 1, got {self.devices}")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def build_source(spec: str, name: str):
    """A toy sampler ``(key, n) -> (n, 2)`` for a toy name, or the points of a ``.npy`` file."""
    from flowjax_fm import data

    if spec.endswith(".npy"):
        return data.load_points(spec)
    if spec not in data.TOY_NAMES:
        raise ValueError(
            f"unknown {name} {spec!r}: give a .npy file or one of {sorted(data.TOY_NAMES)}"
        )
    return data.make_sampler(spec)


def _draw(source, key, n):
    if callable(source):
        return np.asarray(source(key, n))
    count = min(n, source.shape[0])
    idx = np.asarray(jax.random.choice(key, source.shape[0], (count,), replace=False))
    return np.asarray(source[idx])


def _build(config: TrainConfig, event_size: int):
    from flowjax_fm import couplings, models, paths, training

    model = models.MLP(
        event_size, config.hidden, activation=config.activation, rngs=nnx.Rngs(config.seed)
    )
    path_kwargs = {}
    if config.sigma is not None and config.path in ("gaussian", "bridge"):
        path_kwargs = {"sigma": config.sigma}
    elif config.sigma is not None and config.path == "condot":
        path_kwargs = {"sigma_min": config.sigma}
    path = paths.get_path(config.path, **path_kwargs)
    coupling_kwargs = {}
    if config.coupling == "sinkhorn":
        eps = config.epsilon
        if eps is None:
            eps = 2.0 * float(getattr(path, "sigma", 0.1)) ** 2 if config.path == "bridge" else 0.05
        coupling_kwargs = {"epsilon": eps}
    coupling = couplings.get_coupling(config.coupling, **coupling_kwargs)
    optimizer = training.make_optimizer(
        config.lr,
        schedule=config.schedule,
        warmup_steps=config.warmup,
        total_steps=config.steps,
        clip_norm=config.clip,
        weight_decay=config.weight_decay,
    )
    step = training.make_train_step(
        model,
        optimizer=optimizer,
        path=path,
        coupling=coupling,
        ema_decay=config.ema_decay,
        coupling_scope=config.coupling_scope,
        accumulate=config.accumulate,
    )
    return model, optimizer, step


def load_run(run_dir: str | Path, *, use_ema: bool = False):
    """Rebuild ``(config, model, field, source)`` from a run directory written by the trainer."""
    from flowjax_fm import training

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{run_dir} is not a run directory: no config.json")
    config = TrainConfig.from_json(json.loads(cfg_path.read_text()))
    event_shape = tuple(json.loads((run_dir / "event_shape.json").read_text()))
    model, optimizer, _ = _build(config, int(np.prod(event_shape)))
    like = training.init_state(model, optimizer)
    state = training.Checkpointer(run_dir / "checkpoint").restore(like)
    params = state.ema if use_ema else state.params
    field = training.make_vector_field(model, params)
    return config, model, field, build_source(config.source, "source"), event_shape


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_samples(path: Path, x) -> None:
    """Scatter of the first two coordinates of ``x``."""
    plt = _pyplot()
    x = np.asarray(x).reshape(len(x), -1)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x[:, 0], x[:, 1 if x.shape[1] > 1 else 0], s=2, c="tab:blue")
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot(run_dir: Path, x0, x_gen, x_ref, traj):
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x_ref[:, 0], x_ref[:, 1], s=2, c="0.6", label="target")
    ax.scatter(x_gen[:, 0], x_gen[:, 1], s=2, c="tab:blue", label="generated")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(run_dir / "samples.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    traj = np.asarray(traj)
    ax.plot(traj[:, :, 0], traj[:, :, 1], c="olive", alpha=0.15, lw=0.6)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=3, c="black", label="x0 (t=0)")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=3, c="tab:blue", label="x1 (t=1)")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(run_dir / "trajectories.png", dpi=120)
    plt.close(fig)


def train_and_evaluate(
    config: TrainConfig, workdir: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Train, checkpoint, evaluate (W2, NFE), plot; return the metrics written to ``metrics.json``."""
    from flowjax_fm import metrics, sampling, training

    config.validate()
    workdir = Path(workdir)
    source = build_source(config.source, "source")
    target = build_source(config.target, "target")
    key = jax.random.key(config.seed)
    k_train, k_eval0, k_eval1 = jax.random.split(key, 3)
    probe0 = _draw(source, jax.random.key(1), 2)
    probe1 = _draw(target, jax.random.key(1), 2)
    if probe0.shape[1:] != probe1.shape[1:]:
        raise ValueError(
            f"source and target events differ: {probe0.shape[1:]} and {probe1.shape[1:]}"
        )
    event_shape = probe0.shape[1:]
    model, optimizer, step = _build(config, int(np.prod(event_shape)))
    state = training.init_state(model, optimizer)

    n_dev = jax.device_count() if config.devices is None else config.devices
    if n_dev > jax.device_count():
        raise ValueError(f"asked for {n_dev} devices but {jax.device_count()} are available")
    if config.batch % n_dev:
        raise ValueError(f"the batch {config.batch} is not divisible by the device count {n_dev}")
    if n_dev > 1 or jax.process_count() > 1:
        mesh = training.data_mesh(n_dev)
        step = training.shard_step(step, mesh)
        state = training.replicate(state, mesh)

    if resume:
        cfg_path = workdir / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"--resume: {workdir} holds no run (no config.json)")
        saved = TrainConfig.from_json(json.loads(cfg_path.read_text()))
        saved = dataclasses.replace(saved, steps=config.steps)  # a run may be extended
        differ = [
            f"{f.name} {getattr(saved, f.name)!r} -> {getattr(config, f.name)!r}"
            for f in dataclasses.fields(config)
            if getattr(saved, f.name) != getattr(config, f.name)
        ]
        if differ:
            raise ValueError(f"--resume: settings differ from the saved run: {', '.join(differ)}")
    elif (workdir / "checkpoint").is_dir() and any((workdir / "checkpoint").iterdir()):
        raise ValueError(f"{workdir} already holds a run: pass --resume, or choose another --out")
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if is_main:
        training.write_json_atomic(workdir / "config.json", config.to_json())
        training.write_json_atomic(workdir / "event_shape.json", list(event_shape))
    ckpt = training.Checkpointer(workdir / "checkpoint")
    if resume and ckpt.latest_step() is not None:
        state = ckpt.restore(state)
    start_step = int(jax.device_get(state.step))
    if start_step > config.steps:
        raise ValueError(f"--resume: the run is at step {start_step}, past --steps {config.steps}")

    chunk_times: list[tuple[float, int]] = []
    last = [time.perf_counter()]

    def on_chunk(state, chunk_metrics):
        now = time.perf_counter()
        chunk_times.append((now - last[0], len(chunk_metrics["loss"])))
        s = int(jax.device_get(state.step))
        if s % config.checkpoint_every < len(chunk_metrics["loss"]) or s == config.steps:
            ckpt.save(state)
        last[0] = time.perf_counter()

    try:
        state, history = training.fit(
            step,
            state,
            k_train,
            source,
            target,
            num_steps=config.steps - start_step,
            batch_size=config.batch,
            progress=progress and is_main,
            chunk_size=config.chunk,
            on_chunk=on_chunk,
        )
    except training.NonFiniteLossError as err:
        kept = ckpt.latest_step()
        ckpt.close()
        where = (
            f"the last good checkpoint (step {kept}) is kept in {ckpt.directory}"
            if kept is not None
            else "no checkpoint had been written yet"
        )
        raise training.NonFiniteLossError(
            f"training stopped: {err}; {where}", step=err.step, state=err.state
        ) from None
    if ckpt.latest_step() != int(jax.device_get(state.step)):
        ckpt.save(state)
    ckpt.close()

    if len(chunk_times) > 1:
        steady = sum(t for t, _ in chunk_times[1:]) / sum(n for _, n in chunk_times[1:])
        compile_s = max(chunk_times[0][0] - steady * chunk_times[0][1], 0.0)
        steps_per_s = 1.0 / steady
    elif chunk_times:
        compile_s, steps_per_s = float("nan"), chunk_times[0][1] / chunk_times[0][0]
    else:
        compile_s, steps_per_s = float("nan"), float("nan")

    # evaluation, on this process's own device: parameters are replicated, so every process
    # holds them all; only process 0 writes files
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state.params)
    final_step = int(jax.device_get(state.step))
    field = training.make_vector_field(model, params)
    x0 = jnp.asarray(_draw(source, k_eval0, config.eval_samples))
    x_ref = _draw(target, k_eval1, config.eval_samples)
    res = sampling.sample(field, x0, solver=config.solver, rtol=config.rtol, atol=config.atol)
    x_gen = np.asarray(res.x)
    n = min(len(x_gen), len(x_ref))
    w2 = float(metrics.wasserstein(x_gen[:n].reshape(n, -1), x_ref[:n].reshape(n, -1), p=2))
    traj = sampling.sample(
        field, x0[:300], solver=config.solver, rtol=config.rtol, atol=config.atol,
        save_trajectory=True,
    ).trajectory
    flat = lambda a: np.asarray(a).reshape(*np.shape(a)[: -len(event_shape)], -1)
    if is_main:
        _plot(workdir, flat(x0), flat(x_gen), flat(x_ref), flat(traj))
        np.save(workdir / "samples.npy", x_gen)

    losses = history.get("loss", np.array([np.nan]))
    result = {
        "w2": w2,
        "nfe": int(res.nfe),
        "loss": float(np.mean(losses[-min(len(losses), 200):])),
        "steps_per_s": float(steps_per_s),
        "compile_s": float(compile_s),
        "train_s": float(sum(t for t, _ in chunk_times)),
        "steps": final_step,
        "eval_samples": int(n),
        "device": jax.devices()[0].device_kind,
        "devices": n_dev,
        "processes": jax.process_count(),
        "jax_version": jax.__version__,
    }
    if is_main:
        training.write_json_atomic(workdir / "metrics.json", result)
    return result
