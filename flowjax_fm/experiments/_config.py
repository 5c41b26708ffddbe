"""The run config: one for point and image runs, with a model and an evaluation sub-config.

Every default lives here. A field left ``None`` where :data:`TASK_DEFAULTS` names it takes the
default of the run's kind (``"points"`` or ``"images"``, decided by the target's data):
:func:`resolve` fills it in, and the run directory stores the resolved config, so a run's own
``config.json`` given back as ``--config`` reproduces it exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from flowjax_fm._checks import check_choice, check_int, check_positive_int, check_real

__all__ = [
    "EvalConfig",
    "ModelConfig",
    "RunConfig",
    "TASK_DEFAULTS",
    "load_config",
    "override",
    "resolve",
]

KINDS = ("points", "images", "sphere", "torus", "tokens")
FIXED_STEP_SOLVERS = ("euler",)  # no error estimate: a fixed number of steps only


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: ``"mlp"`` (points), ``"unet"`` (images) or a name given to :func:`register_model`.

    ``hidden`` / ``activation`` are the MLP's, ``channels`` / ``channel_mult`` /
    ``num_res_blocks`` the UNet's; ``options`` are keyword arguments for a registered model.
    The MLP's defaults depend on the objective (:data:`OBJECTIVE_DEFAULTS`).
    """

    name: str | None = None
    hidden: tuple[int, ...] | None = None
    activation: str | None = None
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a run is evaluated after training (and every ``every`` steps when ``every > 0``).

    Points: ``samples`` generated points against as many fresh target points (W2, NFE).
    Images: ``per_class`` samples per class at each of ``guidance_scales``, scored by a
    classifier trained for ``classifier_steps`` on the training split (accuracy, Frechet
    distance); ``test_fraction`` of the images is held out for that.
    """

    solver: str | None = None
    num_steps: int | None = None
    rtol: float = 1e-4
    atol: float = 1e-4
    samples: int = 2000
    every: int = 0
    guidance_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    per_class: int = 50
    classifier_steps: int = 600
    test_fraction: float = 0.15


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a training run (saved as ``config.json`` in its directory).

    ``source`` / ``target``: a toy name of :mod:`flowjax_fm.data`, ``"digits"`` (target),
    ``"normal"`` (source: N(0, I) shaped like the target) or a ``.npy`` / ``.npz`` file (stored
    as an absolute path; the run directory records its sha256).

    ``objective``: ``cfm`` (flow matching, sampled with an ODE solver) or a few-step
    objective of :data:`flowjax_fm.losses.OBJECTIVES` (``meanflow``, ``shortcut``,
    ``consistency``: evaluated with ``eval.solver = "few-step"`` and ``eval.num_steps``
    jumps). ``objective_options`` are the objective's keyword arguments (``{"ratio": 0.5}``;
    default per objective in :data:`OBJECTIVE_DEFAULTS`). ``guidance_scale`` is MeanFlow's
    classifier-free guidance folded into training (conditional runs only).
    """

    source: str | None = None
    target: str = "moons"
    objective: str = "cfm"
    objective_options: dict | None = None
    guidance_scale: float | None = None
    model: ModelConfig = ModelConfig()
    coupling: str | None = None
    path: str | None = None
    sigma: float | None = None
    epsilon: float | None = None
    cond_dropout: float | None = None
    steps: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int = 0
    ema_decay: float | None = None
    schedule: str = "constant"
    warmup: int = 0
    clip: float | None = None
    weight_decay: float = 0.0
    accumulate: int = 1
    devices: int | None = None
    coupling_scope: str = "global"
    pairing: str = "auto"
    prefetch: int = 2
    pairing_workers: int | None = None
    chunk: int | None = None
    checkpoint_every: int | None = None
    log_every: int = 100
    eval: EvalConfig = EvalConfig()

    # -- conversions -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-able dict (tuples as lists) that :meth:`from_dict` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build from a (possibly partial) dict; unknown keys are an error naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"a run config is a JSON object, got {type(d).__name__}")
        return _build(cls, d, "")


_SUB = {"model": ModelConfig, "eval": EvalConfig}

# flows on manifolds: geodesic paths from the uniform law, geodesic exact OT, projected rk4
_MANIFOLD_DEFAULTS = {
    "source": "uniform",
    "model.name": "mlp",
    "coupling": "exact-ot",
    "path": "geodesic",
    "cond_dropout": 0.0,
    "steps": 5000,
    "batch": 256,
    "lr": 1e-3,
    "chunk": 500,
    "checkpoint_every": 5000,
    "eval.solver": "rk4",
    "eval.num_steps": 20,
}

# the defaults that depend on the run's kind: the only place they are stated
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "points": {
        "source": "8gaussians",
        "model.name": "mlp",
        "coupling": "exact-ot",
        "path": "gaussian",
        "cond_dropout": 0.0,
        "steps": 20_000,
        "batch": 256,
        "lr": 1e-3,
        "chunk": 500,
        "checkpoint_every": 5000,
        "eval.solver": "dopri5",
    },
    "images": {
        "source": "normal",
        "model.name": "unet",
        "coupling": "independent",
        "path": "condot",
        "cond_dropout": 0.1,
        "steps": 2000,
        "batch": 128,
        "lr": 2e-3,
        "chunk": 250,
        "checkpoint_every": 1000,
        "eval.solver": "midpoint",
        "eval.num_steps": 10,
    },
    # flows on manifolds: geodesic paths from the uniform law, geodesic exact OT, projected rk4
    "sphere": _MANIFOLD_DEFAULTS,
    "torus": _MANIFOLD_DEFAULTS,
    # discrete flows: the mixture path from uniform tokens, CTMC Euler steps
    "tokens": {
        "source": "uniform",
        "model.name": "token-mlp",
        "coupling": "independent",
        "path": "mixture",
        "cond_dropout": 0.0,
        "steps": 5000,
        "batch": 256,
        "lr": 1e-3,
        "chunk": 500,
        "checkpoint_every": 5000,
        "eval.solver": "ctmc",
        "eval.num_steps": 64,
    },
}
FAMILY_PATHS = {"sphere": "geodesic", "torus": "geodesic", "tokens": "mixture"}

FEW_STEP = "few-step"  # eval.solver of the few-step objectives: jumps of the average velocity

# defaults that depend on the objective, applied before the kind's (for a few-step objective the
# MLP is wider, as in the MeanFlow calibration of issue 14, and evaluation is one jump)
# MeanFlow on the 2D tasks (issue 14's calibration, 5k steps, 8gaussians -> moons, one seed):
# 1-NFE W2 0.400 with the paper's adaptive power 1 and no EMA; 0.319 with EMA 0.999; 0.274 with
# EMA 0.999 and power 0.5 (OT-CFM, same network and steps, EMA: 0.218 with dopri5)
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cfm": {"objective_options": {}},
    "meanflow": {"eval.solver": FEW_STEP, "eval.num_steps": 1, "ema_decay": 0.999,
                 "objective_options": {"power": 0.5}},
    "shortcut": {"eval.solver": FEW_STEP, "eval.num_steps": 1, "ema_decay": 0.999,
                 "objective_options": {}},
    "consistency": {"eval.solver": FEW_STEP, "eval.num_steps": 1, "ema_decay": 0.999,
                    "objective_options": {}},
    "discrete": {"objective_options": {}},
}
MLP_DEFAULTS = {
    "cfm": {"model.hidden": (64, 64, 64), "model.activation": "selu"},
    "few-step": {"model.hidden": (256, 256, 256), "model.activation": "silu"},
}

# fields that only mean something for one kind or one model: a non-default value elsewhere is refused
_ONLY = {
    "eval.samples": ("kind", "points"),
    "eval.guidance_scales": ("kind", "images"),
    "eval.per_class": ("kind", "images"),
    "eval.classifier_steps": ("kind", "images"),
    "eval.test_fraction": ("kind", "images"),
    "model.hidden": ("model", "mlp"),
    "model.activation": ("model", "mlp"),
    "model.channels": ("model", "unet"),
    "model.channel_mult": ("model", "unet"),
    "model.num_res_blocks": ("model", "unet"),
}


def _field_types(cls) -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(name: str, value, default):
    """JSON values into the field's Python form (lists into tuples); type errors named."""
    if name in ("model.options", "objective_options"):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a JSON object, got {value!r}")
        return dict(value)
    if isinstance(default, tuple) or name in ("model.hidden", "model.channel_mult", "eval.guidance_scales"):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls, d: dict, prefix: str):
    fields = _field_types(cls)
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in d.items():
        full = prefix + name
        if name in _SUB and cls is RunConfig:
            if not isinstance(value, dict):
                raise ValueError(f"{full} must be a JSON object, got {value!r}")
            kwargs[name] = _build(_SUB[name], value, full + ".")
        else:
            f = fields[name]
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs[name] = None if value is None else _coerce(full, value, default)
    return cls(**kwargs)


def override(config: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """A copy of ``config`` with dotted keys replaced: ``override(c, {"model.hidden": [8]})``."""
    d = config.to_dict()
    for key, value in changes.items():
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise ValueError(f"unknown config key {key!r}")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(f"unknown config key {key!r}")
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return RunConfig.from_dict(d)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a config file: a ``config.json`` / ``run.json`` of a run, or a file of ``configs/``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"--config {path}: cannot read it ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--config {path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if isinstance(d, dict) and d.get("format") == "flowjax_fm.run":  # a run.json
        d = d.get("config")
    d = {k: v for k, v in d.items() if not k.startswith("_")} if isinstance(d, dict) else d
    try:
        return RunConfig.from_dict(d)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--config {path}: {err}") from None


def _get(config: RunConfig, key: str):
    node = config
    for p in key.split("."):
        node = getattr(node, p)
    return node


def _default(key: str):
    cls, name = (RunConfig, key) if "." not in key else (_SUB[key.split(".")[0]], key.split(".")[1])
    f = _field_types(cls)[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def resolve(config: RunConfig, kind: str) -> RunConfig:
    """Fill the kind's defaults into ``None`` fields and check every value.

    Raises:
      ValueError: a bad value, or a field set for a kind or model it does not apply to.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    from flowjax_fm.losses import OBJECTIVES

    _choice("objective", config.objective, (*OBJECTIVES, "discrete"))
    if kind == "tokens" and config.objective == "cfm":
        config = override(config, {"objective": "discrete"})
    if (kind == "tokens") != (config.objective == "discrete"):
        raise ValueError(
            f"objective 'discrete' trains on tokens and a tokens run trains with it; this run's "
            f"target is of kind {kind!r} and its objective {config.objective!r}"
        )
    defaults = {**TASK_DEFAULTS[kind], **OBJECTIVE_DEFAULTS[config.objective]}
    changes = {k: v for k, v in defaults.items() if _get(config, k) is None}
    config = override(config, changes) if changes else config
    if config.model.name in ("mlp", "token-mlp"):
        mlp = MLP_DEFAULTS["cfm" if config.objective in ("cfm", "discrete") else "few-step"]
        changes = {k: v for k, v in mlp.items() if _get(config, k) is None}
        config = override(config, changes) if changes else config
    for key, (what, value) in _ONLY.items():
        actual = kind if what == "kind" else config.model.name
        if actual in ("mlp", "unet", "points", "images") and actual != value:
            if _get(config, key) != _default(key):
                raise ValueError(f"{key} applies to {what} {value!r} only; this run's {what} is {actual!r}")
    _validate(config, kind)
    return config


def _number(name: str, value, *, low=None, high=None, open_low=False) -> None:
    check_real(name, value, low, high, low_open=open_low)


def _choice(name: str, value, choices) -> None:
    check_choice(name, value, tuple(choices))


def _validate(c: RunConfig, kind: str) -> None:
    from flowjax_fm import couplings, paths, sampling
    from flowjax_fm.experiments._build import model_names

    _choice("coupling", c.coupling, couplings.COUPLINGS)
    if kind in FAMILY_PATHS:
        if c.path != FAMILY_PATHS[kind]:
            raise ValueError(f"a {kind} run's path is {FAMILY_PATHS[kind]!r}, got {c.path!r}")
        if kind == "tokens" and c.coupling != "independent":
            raise ValueError(
                f"a tokens run pairs nothing: coupling must be 'independent', got {c.coupling!r}"
            )
        if kind != "tokens" and c.coupling not in ("exact-ot", "independent"):
            raise ValueError(
                f"a {kind} run pairs with the geodesic cost: coupling 'exact-ot' or 'independent', "
                f"got {c.coupling!r}"
            )
        if kind == "tokens" and c.eval.solver != "ctmc":
            raise ValueError(
                f"a tokens run samples with CTMC steps: eval.solver must be 'ctmc', got {c.eval.solver!r}"
            )
    else:
        _choice("path", c.path, paths.PATHS)
        if c.eval.solver == "ctmc":
            raise ValueError("eval.solver 'ctmc' samples tokens; this run's target is continuous")
    _choice("eval.solver", c.eval.solver, (*sampling.SOLVER_NAMES, FEW_STEP, "ctmc"))
    if c.objective == "consistency" and c.eval.solver != FEW_STEP:
        raise ValueError(
            "a consistency model predicts the jump to t = 1, not a velocity: eval.solver must be "
            f"{FEW_STEP!r}"
        )
    if c.objective_options and c.objective == "discrete":
        raise ValueError("the discrete objective takes no objective_options")
    if c.guidance_scale is not None:
        check_real("guidance_scale", c.guidance_scale)
        if not c.cond_dropout:
            raise ValueError("guidance_scale trains with condition dropout: set cond_dropout > 0")
        if c.objective != "meanflow":
            raise ValueError(
                f"guidance_scale is MeanFlow's guidance in training; this run's objective is "
                f"{c.objective!r} (guide at sampling time with --guidance)"
            )
    _choice("model", c.model.name, model_names())
    _choice("schedule", c.schedule, ("constant", "cosine"))
    _choice("coupling scope", c.coupling_scope, ("global", "per_shard"))
    _choice("pairing", c.pairing, ("auto", "in_step", "prefetch"))
    check_positive_int("prefetch", c.prefetch)
    if c.pairing_workers is not None:
        check_positive_int("pairing_workers", c.pairing_workers)
    for name in ("steps", "batch", "chunk", "checkpoint_every", "accumulate", "log_every"):
        check_positive_int(name, getattr(c, name))
    for name in ("eval.samples", "eval.per_class", "model.channels", "model.num_res_blocks"):
        check_positive_int(name, _get(c, name))
    check_int("eval.classifier_steps", c.eval.classifier_steps, 0)
    check_int("seed", c.seed, 0, 2**32 - 1)
    check_int("warmup", c.warmup, 0)
    check_int("eval.every", c.eval.every, 0)
    if c.devices is not None:
        check_positive_int("devices", c.devices)
    _number("lr", c.lr, low=0.0, open_low=True)
    _number("weight_decay", c.weight_decay, low=0.0)
    _number("cond_dropout", c.cond_dropout, low=0.0, high=1.0)
    _number("eval.rtol", c.eval.rtol, low=0.0, open_low=True)
    _number("eval.atol", c.eval.atol, low=0.0, open_low=True)
    check_real("eval.test_fraction", c.eval.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    for name in ("sigma", "epsilon", "clip"):
        if getattr(c, name) is not None:
            _number(name, getattr(c, name), low=0.0, open_low=name != "sigma")
    if c.ema_decay is not None:
        _number("ema_decay", c.ema_decay, low=0.0, high=1.0)
    if c.epsilon is not None and c.coupling not in ("sinkhorn", "large-sinkhorn"):
        raise ValueError(f"epsilon is the Sinkhorn regularisation; this run's coupling is {c.coupling!r}")
    if c.sigma is not None and c.path == "vp":
        raise ValueError("the vp path has no width: drop sigma")
    if c.eval.solver in (*FIXED_STEP_SOLVERS, FEW_STEP, "ctmc") and c.eval.num_steps is None:
        raise ValueError(
            f"eval.solver {c.eval.solver!r} takes a fixed number of steps: give eval.num_steps "
            "(--eval-num-steps), or choose an adaptive solver (dopri5, tsit5, ...)"
        )
    if c.eval.num_steps is not None:
        check_positive_int("eval.num_steps", c.eval.num_steps)
    if (
        not all(
            isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
            for w in c.eval.guidance_scales
        )
        or not c.eval.guidance_scales
    ):
        raise ValueError(f"eval.guidance_scales must be finite numbers, got {list(c.eval.guidance_scales)}")
    if c.model.name == "mlp":
        if not c.model.hidden or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in c.model.hidden
        ):
            raise ValueError(f"model.hidden must be positive integers, got {list(c.model.hidden)}")
    if c.model.name == "unet":
        if not c.model.channel_mult or not all(isinstance(w, int) and w >= 1 for w in c.model.channel_mult):
            raise ValueError(
                f"model.channel_mult must be positive integers, got {list(c.model.channel_mult)}"
            )
