"""Optimiser factory: Adam(W) with warm-up, cosine decay and gradient clipping (all optax)."""

from __future__ import annotations

import optax

from flowjax_fm._checks import check_choice, check_int, check_real

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

    Args:
      lr: peak learning rate :math:`\eta`, a finite number in ``(0, inf)``.
      schedule: ``"constant"`` or ``"cosine"``.
      warmup_steps: linear warm-up length :math:`w`, an int ``>= 0``.
      total_steps: the cosine's end :math:`S`, an int ``> warmup_steps`` (required for
        ``"cosine"``; ``None`` or an int ``>= 0`` otherwise, where it is unused).
      end_lr_factor: :math:`f`, the final learning rate as a fraction of ``lr``, in ``[0, 1]``.
      clip_norm: ``None`` (no clipping) or the maximal global gradient norm, finite in
        ``(0, inf)``.
      weight_decay: decoupled weight decay (AdamW), finite in ``[0, inf)``; ``0`` is Adam.
      b1, b2: Adam's moment decays, each in ``[0, 1)``.

    Raises:
      ValueError: any argument outside its range (the message names it, the range and the
        value), an unknown ``schedule``, or a cosine schedule without
        ``total_steps > warmup_steps``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> opt = make_optimizer(1e-3, schedule="cosine", warmup_steps=10, total_steps=100, clip_norm=1.0)
      >>> state = opt.init({"w": jnp.zeros(2)})
      >>> updates, _ = opt.update({"w": jnp.full(2, 10.0)}, state, {"w": jnp.zeros(2)})
      >>> float(updates["w"][0])  # first step: warm-up learning rate 0
      -0.0
      >>> make_optimizer(clip_norm=float("nan"))
      Traceback (most recent call last):
      ...
      ValueError: clip_norm must be a finite number in (0, inf), got nan
    """
    check_real("lr", lr, 0.0, low_open=True)
    check_choice("schedule", schedule, _SCHEDULES)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    if total_steps is not None:
        total_steps = check_int("total_steps", total_steps, 0)
    check_real("end_lr_factor", end_lr_factor, 0.0, 1.0)
    check_real("clip_norm", clip_norm, 0.0, low_open=True, none_ok=True)
    check_real("weight_decay", weight_decay, 0.0)
    check_real("b1", b1, 0.0, 1.0, high_open=True)
    check_real("b2", b2, 0.0, 1.0, high_open=True)
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
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt
