r"""Classifier-free guidance: mix a conditional and an unconditional velocity in one forward."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

__all__ = ["guided_field"]


def guided_field(vector_field: Callable, scale, null_label: int) -> Callable:
    r"""Classifier-free guided field ``v(x, t, cond)`` of a class-conditional field.

    .. math::
       \tilde v(x, t, y) = v(x, t, \varnothing) + w\,\big(v(x, t, y) - v(x, t, \varnothing)\big)

    so ``w = 1`` is the conditional field, ``w = 0`` the unconditional one and ``w > 1``
    extrapolates away from the unconditional velocity (sharper, more class-typical samples).
    Both velocities come from **one** call of ``vector_field`` on the doubled batch
    ``[x; x]`` with labels ``[y; null]``, so one guided evaluation is one (twice as wide)
    network evaluation.

    Args:
      vector_field: ``v(x, t, cond=labels)`` with ``x: (B, *event)``, ``t: (B,)`` and integer
        labels ``(B,)``; ``null_label`` must select its unconditional mode (for
        :class:`~flowjax_fm.models.UNet` and :class:`~flowjax_fm.models.MLP`, ``num_classes``).
      scale: guidance weight ``w`` (a float or a scalar array; it may be traced).
      null_label: the label of the null (unconditional) class.

    Returns:
      ``field(x, t, cond)`` returning ``(B, *event)``; use it as
      ``fm.sampling.sample(field, x0, cond=labels)``.

    Raises:
      ValueError: (when the field is called) if ``cond`` is missing or not ``(B,)`` labels.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> v = lambda x, t, cond: x * 0 + jnp.where(cond == 9, 0.0, 1.0)[:, None]
      >>> g = fm.sampling.guided_field(v, 2.0, null_label=9)
      >>> g(jnp.zeros((2, 1)), jnp.zeros(2), jnp.array([0, 1])).tolist()  # 0 + 2 (1 - 0)
      [[2.0], [2.0]]

    References:
      Ho and Salimans 2022, Classifier-Free Diffusion Guidance; Zheng et al. 2023, Guided
      Flows for Generative Modeling and Decision Making.
    """

    def field(x, t, cond=None):
        batch = jnp.shape(x)[0]
        if cond is None:
            raise ValueError("a guided field needs class labels: call it with cond=labels")
        if jnp.shape(cond) != (batch,) or not jnp.issubdtype(jnp.result_type(cond), jnp.integer):
            raise ValueError(
                f"cond must be integer labels of shape ({batch},), got shape {jnp.shape(cond)} "
                f"and dtype {jnp.result_type(cond)}"
            )
        labels = jnp.concatenate([cond, jnp.full((batch,), null_label, jnp.result_type(cond))])
        both = vector_field(
            jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), cond=labels
        )
        v_cond, v_uncond = both[:batch], both[batch:]
        w = jnp.asarray(scale, dtype=v_cond.dtype)
        return v_uncond + w * (v_cond - v_uncond)

    return field
