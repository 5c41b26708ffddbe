"""The run directory: one format for every run, guarded so that nothing is lost or mixed.

A run directory holds::

    run.json        format, version, kind, event shape, conditions, source and target
                    (name; files by absolute path and sha256), the resolved config, origin
    config.json     the resolved config alone: a valid ``--config``
    checkpoint/     orbax checkpoints of the TrainState, checksummed
    metrics.json    the final evaluation;  metrics.jsonl + tensorboard/: the training log
    samples.npy, samples.png, trajectories.png (points), classifier.npz (images)

Rules: a command writes into an existing directory only when asked to continue it
(``--resume``); outputs of ``sample`` / ``loglik`` / ``reflow`` go to their own ``--out`` or
a fresh numbered sub-directory of the run; every check is done before the first write.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Run", "load_run", "fresh_directory", "check_new_directory", "RUN_FORMAT"]

RUN_FORMAT = "flowjax_fm.run"
RUN_VERSION = 1


def _one_line(err: OSError) -> str:
    return err.strerror or " ".join(str(err).split()) or type(err).__name__


def check_new_directory(path: str | os.PathLike, what: str = "--out") -> Path:
    """An absolute path that may become a new directory: absent or empty, creatable, writable.

    Creates nothing that is not already needed (parents are checked, not made).
    """
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise ValueError(
            f"{what} {path} already exists and is not empty: choose another {what}"
            + (", or pass --resume to continue the run in it" if what == "--out" else "")
        )
    parent = path if path.is_dir() else next((p for p in path.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ValueError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {parent} is not writable")
    return path


def make_directory(path: Path, what: str = "--out") -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot write there ({_one_line(err)})") from None
    return path


def fresh_directory(run_dir: Path, out, prefix: str) -> Path:
    """``out`` checked as a new directory, or the next free ``run_dir/prefix-NNN``."""
    if out is not None:
        return check_new_directory(out)
    for i in range(1, 10_000):
        candidate = Path(run_dir) / f"{prefix}-{i:03d}"
        if not candidate.exists():
            return check_new_directory(candidate)
    raise ValueError(f"{run_dir} holds 9,999 {prefix} outputs already: give --out")


def run_record(config, task, refs: dict, origin: dict | None = None) -> dict:
    import flowjax_fm

    conditions = None
    if task.num_classes is not None:
        conditions = {"type": "classes", "num_classes": task.num_classes, "null_label": task.num_classes}
    return {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "kind": task.kind,
        "event_shape": list(task.event_shape),
        "conditions": conditions,
        "source": refs["source"],
        "target": refs["target"],
        "config": config.to_dict(),
        "origin": origin or {"command": "train"},
        "flowjax_fm": getattr(flowjax_fm, "__version__", "0"),
    }


def read_record(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        legacy = (Path(run_dir) / "config.json").is_file()
        raise ValueError(
            f"{run_dir} is not a run directory: no run.json"
            + (" (written by flowjax_fm before 2026-12-02: retrain it)" if legacy else "")
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged: {err}") from None
    missing = [
        k
        for k in ("format", "kind", "event_shape", "conditions", "source", "target", "config")
        if k not in record
    ]
    if record.get("format") != RUN_FORMAT or missing:
        raise ValueError(f"{path} is damaged or not a flowjax_fm run: missing {missing or ['format']}")
    if record.get("version", 0) > RUN_VERSION:
        raise ValueError(
            f"{path} has format version {record['version']}; this flowjax_fm reads {RUN_VERSION}"
        )
    return record


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run, rebuilt from its directory by :func:`load_run`.

    Attributes:
      directory: the run directory (absolute).
      config: the resolved :class:`RunConfig`.
      kind: ``"points"`` or ``"images"``; event_shape; num_classes (``None``: unconditional).
      model, optimizer, step: what :func:`flowjax_fm.experiments.build` makes of the config.
      state: the restored :class:`~flowjax_fm.training.TrainState`; checkpoint_step its step.
      source: the run's source (sampler, array or ``None`` for N(0, I)).
    """

    directory: Path
    config: Any
    kind: str
    event_shape: tuple[int, ...]
    num_classes: int | None
    model: Any
    optimizer: Any
    step: Any
    state: Any
    checkpoint_step: int
    source: Any
    record: dict
    extra: dict | None = None

    @property
    def has_ema(self) -> bool:
        return self.config.ema_decay is not None

    def params(self, ema: bool = False):
        if ema and not self.has_ema:
            raise ValueError(f"{self.directory} was trained without an EMA (no ema_decay): drop --ema")
        return self.state.ema if ema else self.state.params

    def field(self, ema: bool = False):
        """The vector field ``v(x, t, cond=None)`` of the run's params (or EMA); for a model of
        two times its instantaneous velocity (a consistency model has none: ValueError)."""
        from flowjax_fm.experiments._generate import velocity_field

        return velocity_field(self.model, self.params(ema), self.config.objective)

    def draw_source(self, key, n: int):
        from flowjax_fm.experiments._data import draw

        return draw(self.source, key, n, self.event_shape)


def _missing_keys(full: dict, saved: dict, prefix: str = "") -> list[str]:
    """Keys of a complete config dict that a saved one lacks (a saved run records them all)."""
    out = []
    for k, v in full.items():
        if k not in saved:
            out.append(prefix + k)
        elif isinstance(v, dict) and k != "options" and isinstance(saved[k], dict):
            out += _missing_keys(v, saved[k], prefix + k + ".")
    return out


# config keys added after runs were first recorded: a run.json without one is read with the
# field's default, which is what such a run used (load_run and train --resume both fill them;
# any other missing key is damage)
LATER_KEYS = ("pairing", "prefetch", "pairing_workers", "objective", "objective_options", "guidance_scale")


def with_later_keys(saved: dict) -> dict:
    """A copy of a recorded config dict with the :data:`LATER_KEYS` it lacks at their defaults."""
    from flowjax_fm.experiments._config import _default

    out = dict(saved)
    for name in LATER_KEYS:
        out.setdefault(name, _default(name))
    return out


def _none_keys(saved: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in saved.items():
        if v is None:
            out.append(prefix + k)
        elif isinstance(v, dict) and k != "options":
            out += _none_keys(v, prefix + k + ".")
    return out


def _as_recorded(resolved, saved: dict):
    """The resolved config with the recorded ``None`` values put back.

    ``run.json`` holds the config as resolved when the run was trained, so a ``None`` in it is
    what the run used (no EMA, no guidance, ...), not a gap: filling it with today's defaults
    would describe another run (a MeanFlow run trained before the EMA default would sample
    from an EMA it never trained)."""
    from flowjax_fm.experiments._config import _get, override

    back = {k: None for k in _none_keys(saved) if _get(resolved, k) is not None}
    return override(resolved, back) if back else resolved


def load_run(run_dir: str | os.PathLike, *, step: int | None = None) -> Run:
    """Rebuild a run from its directory: config, model, optimiser, restored state, source.

    Raises:
      ValueError: not a run directory, a damaged ``run.json`` or checkpoint, or a data file
        that is gone or changed since training.
      FileNotFoundError: no complete checkpoint.
    """
    from flowjax_fm import training
    from flowjax_fm.experiments._build import build
    from flowjax_fm.experiments._config import RunConfig, resolve
    from flowjax_fm.experiments._data import _load_source, check_ref

    run_dir = Path(run_dir).expanduser().absolute()
    record = read_record(run_dir)
    try:
        saved = with_later_keys(record["config"])
        config = RunConfig.from_dict(saved)
        missing = _missing_keys(config.to_dict(), saved)
        if missing:
            raise ValueError(f"the config lacks {', '.join(missing)}")
        config = _as_recorded(resolve(config, record["kind"]), saved)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{run_dir / 'run.json'} is damaged: {err}") from None
    check_ref(record["source"], "source")
    event_shape = tuple(record["event_shape"])
    conditions = record["conditions"]
    num_classes = None if conditions is None else int(conditions["num_classes"])
    from flowjax_fm.experiments._families import FAMILY_KINDS, load_family

    family = load_family(config, record["kind"]) if record["kind"] in FAMILY_KINDS else None
    extra = None if family is None else family.extra
    built = build(config, event_shape, num_classes, extra=extra)
    like = training.init_state(built.init, built.optimizer)
    ckpt = training.Checkpointer(run_dir / "checkpoint")
    try:
        state = ckpt.restore(like, step)
        loaded = int(state.step)
    finally:
        ckpt.close()
    return Run(
        run_dir,
        config,
        record["kind"],
        event_shape,
        num_classes,
        built.model,
        built.optimizer,
        built.step,
        state,
        loaded,
        family.source if family is not None else _load_source(config.source, event_shape),
        record,
        extra,
    )


def write_run_files(out: Path, record: dict) -> None:
    from flowjax_fm.training import write_json_atomic

    write_json_atomic(out / "run.json", record)
    write_json_atomic(out / "config.json", record["config"])
