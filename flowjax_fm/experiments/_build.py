"""One build for every run: model, optimiser and train step from a resolved config.

Models are found by name: ``"mlp"`` and ``"unet"`` are built in, and :func:`register_model`
adds a user's. A builder is ``builder(model_config, event_shape, num_classes, seed) -> model``
where the model is an ``nnx.Module``, an ``equinox.Module`` or a pair ``(apply, params)`` with
``apply(params, x, t, cond=None)`` (what :func:`flowjax_fm.training.make_train_step` takes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Built", "build", "model_names", "register_model"]

_MODELS: dict[str, Callable] = {}


def register_model(name: str, builder: Callable) -> None:
    """Make ``builder`` available as ``model.name = name`` in run configs (``--model name``).

    Examples:
      >>> import equinox as eqx, jax
      >>> import flowjax_fm as fm
      >>> def tiny(cfg, event_shape, num_classes, seed):
      ...     return eqx.nn.MLP(event_shape[0] + 1, event_shape[0], 8, 1, key=jax.random.key(seed))
      >>> fm.experiments.register_model("tiny-eqx", tiny)
      >>> "tiny-eqx" in fm.experiments.model_names()
      True
    """
    if not isinstance(name, str) or not name or name in ("mlp", "unet", "token-mlp", "token-transformer"):
        raise ValueError(f"a model name must be a new non-empty string, got {name!r}")
    if not callable(builder):
        raise TypeError(f"builder must be callable, got {type(builder).__name__}")
    _MODELS[name] = builder


def model_names() -> tuple[str, ...]:
    return ("mlp", "unet", "token-mlp", "token-transformer", *sorted(_MODELS))


def _mlp(cfg, event_shape, num_classes, seed, two_time=False, periodic=False):
    from flax import nnx

    from flowjax_fm import models

    return models.MLP(
        int(np.prod(event_shape)),
        cfg.hidden,
        activation=cfg.activation,
        num_classes=num_classes,
        two_time=two_time,
        periodic=periodic,
        rngs=nnx.Rngs(seed),
    )


def _unet(cfg, event_shape, num_classes, seed, two_time=False):
    from flax import nnx

    from flowjax_fm import models

    if len(event_shape) != 3:
        raise ValueError(f"the unet model takes images (H, W, C); this run's events are {event_shape}")
    return models.UNet(
        event_shape[-1],
        channels=cfg.channels,
        channel_mult=cfg.channel_mult,
        num_res_blocks=cfg.num_res_blocks,
        num_classes=num_classes,
        two_time=two_time,
        rngs=nnx.Rngs(seed),
    )


@dataclasses.dataclass(frozen=True)
class Built:
    """What a config builds: ``model`` (as given to the training functions), its ``params``
    template, the ``optimizer`` and the train ``step``."""

    model: Any
    init: Any  # what init_state takes: the module, or the params of an (apply, params) model
    optimizer: Any
    step: Any


def _token_model(cfg, length, extra, num_classes, seed):
    from flax import nnx

    from flowjax_fm import models

    if cfg.name == "token-mlp":
        return models.TokenMLP(extra["model_vocab"], length, hidden=cfg.hidden, num_classes=num_classes,
                               mask_token=extra["mask"], rngs=nnx.Rngs(seed))
    return models.TokenTransformer(extra["model_vocab"], length, num_classes=num_classes,
                                   mask_token=extra["mask"], rngs=nnx.Rngs(seed))


def build(config, event_shape, num_classes: int | None, *, extra: dict | None = None) -> Built:
    """Model, optimiser (:func:`~flowjax_fm.training.make_optimizer`) and step of a resolved config.

    ``extra``: a manifold or tokens run's manifold or vocabulary (the task's ``extra``).
    """
    from flowjax_fm import couplings, discrete, losses, paths, training

    name = config.model.name
    if name is None or config.path is None or config.coupling is None or config.steps is None:
        raise ValueError(
            "build takes a resolved config (every kind default filled in): call "
            "fm.experiments.resolve(config, kind) first"
        )
    objective_kwargs = dict(config.objective_options or {})
    if config.guidance_scale is not None:
        objective_kwargs["guidance_scale"] = config.guidance_scale
    if config.objective == "discrete":
        objective = discrete.DiscreteObjective()
    else:
        try:
            objective = losses.get_objective(config.objective, **objective_kwargs)
        except TypeError as err:  # an option the objective does not take
            raise ValueError(f"objective_options for {config.objective!r}: {err}") from None
    manifold = None if extra is None else extra.get("manifold")
    if name in ("token-mlp", "token-transformer"):
        if extra is None or "vocab" not in extra:
            raise ValueError(f"model {name!r} generates tokens: train it on a tokens target")
        model = _token_model(config.model, event_shape[0], extra, num_classes, config.seed)
    elif name == "mlp":
        if config.model.options:
            raise ValueError("model.options are for registered models; the mlp takes hidden, activation")
        from flowjax_fm.manifolds import FlatTorus

        periodic = isinstance(manifold, FlatTorus)  # angles in: (cos, sin) features
        model = _mlp(config.model, event_shape, num_classes, config.seed, objective.two_time,
                     periodic)
    elif name == "unet":
        if config.model.options:
            raise ValueError("model.options are for registered models; the unet takes channels, ...")
        model = _unet(config.model, event_shape, num_classes, config.seed, objective.two_time)
    else:
        made = _MODELS[name](config.model, tuple(event_shape), num_classes, config.seed)
        model = made
    init = model
    if isinstance(model, tuple):
        model, init = model
    path_kwargs = {}
    if config.sigma is not None:
        path_kwargs = {"sigma_min" if config.path == "condot" else "sigma": config.sigma}
    if config.path == "geodesic":
        path = paths.GeodesicPath(manifold)
    elif config.path == "mixture":
        path = discrete.MixtureDiscretePath(paths.CondOTSchedule())
    else:
        path = paths.get_path(config.path, **path_kwargs)
    coupling_kwargs = {}
    if manifold is not None and config.coupling == "exact-ot":
        coupling_kwargs = {"manifold": manifold}
    if config.coupling in ("sinkhorn", "large-sinkhorn"):
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
    conditional = num_classes is not None
    step = training.make_train_step(
        model,
        optimizer=optimizer,
        path=path,
        coupling=coupling,
        ema_decay=config.ema_decay,
        coupling_scope=config.coupling_scope,
        accumulate=config.accumulate,
        cond_dropout=config.cond_dropout if conditional and config.cond_dropout else None,
        null_cond=np.int32(num_classes) if conditional else None,
        objective=objective,
    )
    return Built(model, init, optimizer, step)
