r"""Classifier-free guidance: mix a conditional and an unconditional velocity in one forward."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_int, check_real

__all__ = ["guided_field"]


def _check_labels(cond, batch):
    if cond is None:
        raise ValueError("a guided field needs class labels: call it with cond=labels")
    if jnp.shape(cond) != (batch,) or not jnp.issubdtype(jnp.result_type(cond), jnp.integer):
        raise ValueError(
            f"cond must be integer labels of shape ({batch},), got shape {jnp.shape(cond)} "
            f"and dtype {jnp.result_type(cond)}"
        )


def _broadcast_null(cond, null, batch):
    """``null`` (one example's condition, a batch of one, or a batch) broadcast to ``cond``."""
    if jax.tree.structure(cond) != jax.tree.structure(null):
        raise ValueError(
            f"null_cond must have the pytree structure of cond: {jax.tree.structure(null)} vs "
            f"{jax.tree.structure(cond)}"
        )

    def one(c, n):
        c_shape, n_shape = jnp.shape(c), jnp.shape(n)
        if not c_shape or c_shape[0] != batch:
            raise ValueError(
                f"every leaf of cond must have leading dimension {batch} (x has {batch} rows), "
                f"got a leaf of shape {c_shape}"
            )
        if n_shape not in (c_shape[1:], (1, *c_shape[1:]), c_shape):
            raise ValueError(
                f"a null_cond leaf must have shape {c_shape[1:]} (one example), "
                f"{(1, *c_shape[1:])} or {c_shape}, matching the cond leaf of shape {c_shape}; "
                f"got {n_shape}"
            )
        return jnp.broadcast_to(jnp.asarray(n, jnp.result_type(c)), c_shape)

    return jax.tree.map(one, cond, null)


def guided_field(vector_field: Callable, scale, null_label: int | None = None, *,
                 null_cond=None) -> Callable:
    r"""Classifier-free guided field ``v(x, t, cond)`` of a conditional field.

    .. math::
       \tilde v(x, t, c) = v(x, t, \varnothing) + w\,\big(v(x, t, c) - v(x, t, \varnothing)\big)

    so ``w = 1`` is the conditional field, ``w = 0`` the unconditional one and ``w > 1``
    extrapolates away from the unconditional velocity (sharper, more condition-typical
    samples). Both velocities come from **one** call of ``vector_field`` on the doubled batch
    ``[x; x]`` with conditions ``[c; null]``, so one guided evaluation is one (twice as wide)
    network evaluation.

    The condition may be any pytree whose leaves have leading dimension ``B``: integer labels
    (give ``null_label``, the null class), float vectors ``(B, k)``, or a dict / tuple mixing
    them (give ``null_cond``, the same structure).

    Args:
      vector_field: ``v(x, t, cond=c)`` with ``x: (B, *event)``, ``t: (B,)`` and ``c`` a
        condition pytree with leading dimension ``B``; the null condition must select its
        unconditional mode.
      scale: guidance weight ``w``, a finite real (a float or a scalar array; it may be
        traced, and is then not checked).
      null_label: the label of the null class, an int >= 0, for integer labels ``(B,)`` (for
        :class:`~flowjax_fm.models.UNet` and :class:`~flowjax_fm.models.MLP`, ``num_classes``).
      null_cond: the null condition for any condition pytree: one example's condition (each
        leaf shaped like a row of ``c``'s leaf, broadcast to the batch), a batch of one, or a
        full batch; or a callable ``batch -> null condition`` such as a model's ``null_cond``
        method (:meth:`fm.models.MLP.null_cond`: NaN rows for ``cond_dim`` models).

    Returns:
      ``field(x, t, cond)`` returning ``(B, *event)``; use it as
      ``fm.sampling.sample(field, x0, cond=c)``.

    Raises:
      TypeError: ``vector_field`` is not callable.
      ValueError: ``scale`` not a finite real; ``null_label`` not an int >= 0; neither or
        both of ``null_label`` / ``null_cond``; when the field is called,
        a missing ``cond``, labels not ``(B,)`` integers (``null_label``), or a ``null_cond``
        whose structure or leaf shapes do not fit ``cond`` (quoting the shapes).

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> v = lambda x, t, cond: x * 0 + jnp.where(cond == 9, 0.0, 1.0)[:, None]
      >>> g = fm.sampling.guided_field(v, 2.0, null_label=9)
      >>> g(jnp.zeros((2, 1)), jnp.zeros(2), jnp.array([0, 1])).tolist()  # 0 + 2 (1 - 0)
      [[2.0], [2.0]]
      >>> u = lambda x, t, cond: x * 0 + cond.sum(-1, keepdims=True)  # float conditions (B, 2)
      >>> g = fm.sampling.guided_field(u, 2.0, null_cond=jnp.zeros(2))
      >>> g(jnp.zeros((2, 1)), jnp.zeros(2), jnp.ones((2, 2))).tolist()  # 0 + 2 (2 - 0)
      [[4.0], [4.0]]

    References:
      Ho and Salimans 2022, Classifier-Free Diffusion Guidance; Zheng et al. 2023, Guided
      Flows for Generative Modeling and Decision Making.
    """
    if not callable(vector_field):
        raise TypeError(
            f"vector_field must be callable as v(x, t, cond=c), got {type(vector_field).__name__}"
        )
    check_real("scale", scale)
    if null_label is not None:
        null_label = check_int("null_label", null_label, 0)
    if (null_label is None) == (null_cond is None):
        raise ValueError(
            "guided_field needs exactly one of null_label (integer labels) and null_cond "
            f"(any condition pytree), got null_label={null_label!r} and null_cond={null_cond!r}"
        )

    def field(x, t, cond=None):
        batch = jnp.shape(x)[0]
        if null_label is not None:
            _check_labels(cond, batch)
            null = jnp.full((batch,), null_label, jnp.result_type(cond))
        else:
            if cond is None or not jax.tree.leaves(cond):
                raise ValueError("a guided field needs a condition: call it with cond=c")
            null = _broadcast_null(cond, null_cond(batch) if callable(null_cond) else null_cond, batch)
        both_cond = jax.tree.map(lambda c, n: jnp.concatenate([c, n], axis=0), cond, null)
        both = vector_field(
            jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), cond=both_cond
        )
        v_cond, v_uncond = both[:batch], both[batch:]
        w = jnp.asarray(scale, dtype=v_cond.dtype)
        return v_uncond + w * (v_cond - v_uncond)

    return field
