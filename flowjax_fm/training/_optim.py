"""Optimiser factory: Adam(W) with warm-up, cosine decay and gradient clipping (all optax)."""

from __future__ import annotations

import optax

__all__ = ["make_optimizer"]

_SCHEDULES = ("constant", "cosine")


def make_optimizer(
    lr: float = 1e-3,
    *,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int | None = None,
    end_lr_factor: float = 0.0,
    clip_norm: float | None = None,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    r"""Adam (AdamW when ``weight_decay > 0``) with an optional warm-up/cosine schedule and clipping.

    The learning rate rises linearly from 0 over ``warmup_steps`` and then stays at ``lr``
    (``schedule="constant"``) or follows a cosine to ``end_lr_factor * lr`` at ``total_steps``:

    .. math:: \eta_s = \eta\,\big(f + (1 - f)\tfrac12(1 + \cos(\pi\,\tfrac{s - w}{S - w}))\big)

    ``clip_norm`` clips the global gradient norm before the update. With gradient
    accumulation (``make_train_step(accumulate=k)``) the schedule counts optimiser steps.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> opt = make_optimizer(1e-3, schedule="cosine", warmup_steps=10, total_steps=100, clip_norm=1.0)
      >>> state = opt.init({"w": jnp.zeros(2)})
      >>> updates, _ = opt.update({"w": jnp.full(2, 10.0)}, state, {"w": jnp.zeros(2)})
      >>> float(updates["w"][0])  # first step: warm-up learning rate 0
      -0.0
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {_SCHEDULES}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if schedule == "cosine":
        if total_steps is None or total_steps <= warmup_steps:
            raise ValueError(
                f"a cosine schedule needs total_steps > warmup_steps, got {total_steps} and "
                f"{warmup_steps}"
            )
        if warmup_steps:
            rate = optax.warmup_cosine_decay_schedule(
                0.0, lr, warmup_steps, total_steps, end_value=end_lr_factor * lr
            )
        else:
            rate = optax.cosine_decay_schedule(lr, total_steps, alpha=end_lr_factor)
    elif warmup_steps:
        rate = optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)],
            [warmup_steps],
        )
    else:
        rate = lr
    if weight_decay:
        opt = optax.adamw(rate, b1=b1, b2=b2, weight_decay=weight_decay)
    else:
        opt = optax.adam(rate, b1=b1, b2=b2)
    if clip_norm is not None:
        if clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {clip_norm}")
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt
