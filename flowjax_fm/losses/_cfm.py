r"""The conditional flow-matching regression loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime

__all__ = [
    "ConditionalSample",
    "call_field",
    "cfm_loss",
    "pair_batch",
    "paired_cfm_loss",
    "per_example_keys",
    "regress",
    "sample_conditional",
]


_ACCEPTED = {
    "path": (AbstractPath, "fm.paths.AbstractPath", "fm.paths.CondOTPath()"),
    "coupling": (AbstractCoupling, "fm.couplings.AbstractCoupling", "fm.couplings.ExactOTCoupling()"),
    "time_sampler": (AbstractTime, "fm.time_sampling.AbstractTime", "fm.time_sampling.UniformTime()"),
}


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_parts(**parts) -> None:
    """TypeError for a path / coupling / time sampler that is not of its kind, a
    ``vector_field`` or ``weight`` that is not a function."""
    for name, value in parts.items():
        if name in _ACCEPTED:
            base, accepted, example = _ACCEPTED[name]
            if not isinstance(value, base):
                raise TypeError(
                    f"{name} must be an instance of {accepted} (e.g. {example}), got "
                    f"{_describe(value)}"
                )
        elif name == "weight":
            if value is not None and not callable(value):
                raise TypeError(
                    f"weight must be None or a function t -> (B,) weights, got {_describe(value)}"
                )
        elif not callable(value):  # vector_field
            raise TypeError(f"{name} must be a function v(x, t[, cond=c]), got {_describe(value)}")


def call_field(vector_field, x, t, cond=None):
    """Call ``vector_field(x, t)``, passing ``cond=`` only when a condition is given.

    Raises:
      TypeError: if ``vector_field`` is not callable.
    """
    _check_parts(vector_field=vector_field)
    return vector_field(x, t) if cond is None else vector_field(x, t, cond=cond)


def pair_batch(key, x0, x1, *, coupling: AbstractCoupling, cond=None):
    """Pair a batch with ``coupling``; ``cond`` (data-row conditions) follows the data rows.

    The source rows are given the data rows' conditions (``cond0 = cond1 = cond``): integer
    labels make the coupling pair within labels, float conditions enter an OT coupling's cost
    through its ``cond_weight`` (C2OT). Returns ``(x0, x1, cond)`` re-ordered by pairs.

    Raises:
      TypeError: ``coupling`` not an :class:`~flowjax_fm.couplings.AbstractCoupling`.
      ValueError: ``x0`` / ``x1`` not equal-shaped float batches ``(B, *event)``; a ``cond``
        leaf without leading axis ``B``, integer labels not of shape ``(B,)`` or a leaf
        neither integer nor float.
    """
    _check_parts(coupling=coupling)
    check_batch(x0, x1, cond, cond)
    if cond is None:
        pairing = coupling(key, x0, x1)
    else:
        pairing = coupling(key, x0, x1, cond0=cond, cond1=cond)
    x0, x1 = pairing.apply(x0, x1)
    if cond is not None:
        cond = pairing.apply_target(cond)
    return x0, x1, cond


def per_example_keys(key: jax.Array, index: jax.Array) -> jax.Array:
    """One key per example: ``fold_in(key, index[i])``.

    Deriving per-example randomness from the *global* example index (not from the device or
    the position in a shard) is what makes training give the same result on any number of
    devices.

    Raises:
      ValueError: if ``index`` is not a 1-D integer array.
    """
    _check_index(index, None)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


class ConditionalSample(NamedTuple):
    """What :func:`sample_conditional` returns: points on the path and their targets.

    Attributes:
      t: ``(B,)`` times; x_t: ``(B, *event)`` points on the path; u_t: ``(B, *event)`` the
      conditional target velocities; noise: the path's ``(B, *event)`` noise (``None`` for a
      deterministic path); x0, x1: the paired rows; cond: the data rows' conditions,
      reordered with the pairs (``None`` if none were given).
    """

    t: jax.Array
    x_t: jax.Array
    u_t: jax.Array
    noise: jax.Array | None
    x0: jax.Array
    x1: jax.Array
    cond: Any


def _check_index(index, batch: int | None) -> None:
    shape, dtype = jnp.shape(index), jnp.result_type(index)
    if len(shape) != 1 or (batch is not None and shape[0] != batch) or not jnp.issubdtype(
        dtype, jnp.integer
    ):
        expected = "(B,)" if batch is None else f"({batch},)"
        raise ValueError(
            f"index must be integer example positions of shape {expected}, got shape {shape} "
            f"and dtype {dtype}"
        )


def _draw_on_path(key, x0, x1, path, time_sampler, index, cond) -> ConditionalSample:
    """Times, noise, points and targets for rows that are already paired."""
    _check_parts(path=path, time_sampler=time_sampler)
    batch = check_batch(x0, x1, cond, cond)
    if index is None:
        index = jnp.arange(batch, dtype=jnp.int32)
    else:
        _check_index(index, batch)
    k_t, k_noise = jax.random.split(key)
    t = jax.vmap(lambda k: time_sampler(k, 1, x0.dtype)[0])(per_example_keys(k_t, index))
    noise = None
    if path.stochastic:
        noise = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(
            per_example_keys(k_noise, index)
        )
    x_t, u_t = jax.vmap(path.sample_and_target)(x0, x1, t, noise)
    return ConditionalSample(t, x_t, u_t, noise, x0, x1, cond)


def sample_conditional(
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    cond=None,
    index: jax.Array | None = None,
) -> ConditionalSample:
    r"""Pair a batch, draw times (and noise) and return points on the path with their targets.

    The batched primitive under :func:`cfm_loss` (torchcfm's
    ``sample_location_and_conditional_flow``): with :math:`(x_0, x_1) \sim \pi`, the pairing
    of ``coupling``, and :math:`t \sim` ``time_sampler``,

    .. math:: x_t = \psi_t(x_0, x_1, \epsilon), \qquad u_t = \partial_t \psi_t(x_0, x_1, \epsilon)

    for the ``path``'s interpolant :math:`\psi`. Write your own objective on top of it
    (x1- or noise-prediction, per-pixel weights): the randomness is the same as
    :func:`cfm_loss`'s for the same ``key``.

    Args:
      key: a ``jax.random.key``, split into a coupling key and a key for times and noise.
      x0: source batch ``(B, *event)``; x1: data batch of the same shape.
      path, coupling, time_sampler: as :func:`cfm_loss`.
      cond: optional condition of the data rows (a pytree with leading axis ``B``); it
        follows the pairing.
      index: optional ``(B,)`` global positions of the examples (time and noise of example
        ``i`` come from ``fold_in(key, index[i])``; default ``arange(B)``).

    Returns:
      A :class:`ConditionalSample` ``(t, x_t, u_t, noise, x0, x1, cond)``.

    Raises:
      TypeError: ``path``, ``coupling`` or ``time_sampler`` not an instance of its base class
        (:class:`~flowjax_fm.paths.AbstractPath`, ...).
      ValueError: on mismatched shapes, an empty batch, non-float data, a ``cond`` leaf
        without leading axis ``B`` (integer labels must be ``(B,)``) or an ``index`` that is
        not ``(B,)`` integers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> x0 = jnp.zeros((4, 2)); x1 = jnp.ones((4, 2))
      >>> t, x_t, u_t = fm.losses.sample_conditional(
      ...     jax.random.key(0), x0, x1, path=fm.paths.CondOTPath())[:3]
      >>> bool(jnp.allclose(x_t, t[:, None])), bool(jnp.allclose(u_t, 1.0))
      (True, True)
    """
    _check_parts(path=path, time_sampler=time_sampler)
    k_pair, k_loss = jax.random.split(key)
    x0, x1, cond = pair_batch(k_pair, x0, x1, coupling=coupling, cond=cond)
    return _draw_on_path(k_loss, x0, x1, path, time_sampler, index, cond)


def regress(vector_field, sample: ConditionalSample, weight=None):
    """The weighted squared error of ``vector_field`` against ``sample.u_t``: ``(loss, aux)``.

    Raises:
      TypeError: ``vector_field`` or ``weight`` not a function, or ``sample`` not a
        :class:`ConditionalSample`.
      ValueError: the field's output not of the shape of ``sample.u_t``, or ``weight(t)``
        not of shape ``(B,)``.
    """
    _check_parts(vector_field=vector_field, weight=weight)
    if not isinstance(sample, ConditionalSample):
        raise TypeError(
            "sample must be a ConditionalSample (what fm.losses.sample_conditional returns), got "
            f"{_describe(sample)}"
        )
    batch = sample.x_t.shape[0]
    v_t = call_field(vector_field, sample.x_t, sample.t, sample.cond)
    if jnp.shape(v_t) != jnp.shape(sample.u_t):
        raise ValueError(
            f"the vector field returned shape {jnp.shape(v_t)}, expected {jnp.shape(sample.u_t)}"
        )
    per_example = jnp.mean(jnp.square(v_t - sample.u_t).reshape(batch, -1), axis=1)
    if weight is not None:
        w = weight(sample.t)
        if jnp.shape(w) != (batch,):
            raise ValueError(f"weight(t) must return shape ({batch},), got {jnp.shape(w)}")
        per_example = w * per_example
    return per_example.mean(), {"per_example": per_example, "t": sample.t}


def paired_cfm_loss(
    vector_field: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    time_sampler: AbstractTime = UniformTime(),
    weight: Callable[[jax.Array], jax.Array] | None = None,
    cond=None,
    index: jax.Array | None = None,
):
    r"""The CFM loss on rows that are already paired (row ``i`` of ``x0`` with row ``i`` of ``x1``).

    :func:`cfm_loss` is :func:`pair_batch` followed by this. Example ``i`` draws its time and
    noise from ``fold_in(key_t, index[i])`` and ``fold_in(key_noise, index[i])``, where
    ``index`` (default ``arange(B)``) holds the examples' global positions in the batch.

    Raises:
      TypeError, ValueError: as :func:`sample_conditional` and :func:`regress`.
    """
    _check_parts(vector_field=vector_field, weight=weight)
    sample = _draw_on_path(key, x0, x1, path, time_sampler, index, cond)
    return regress(vector_field, sample, weight)


def cfm_loss(
    vector_field: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    weight: Callable[[jax.Array], jax.Array] | None = None,
    cond=None,
):
    r"""Conditional flow-matching loss on one minibatch.

    Pairs the batch with ``coupling``, draws :math:`t` from ``time_sampler`` (and
    :math:`\epsilon \sim N(0, I)` for stochastic paths) per example, and regresses the field
    onto the path's conditional target:

    .. math::
       \mathcal{L} = \frac{1}{B} \sum_{k} w(t_k)\, \frac{1}{D}
       \big\| v_\theta(x_{t_k}, t_k) - u_{t_k}(x_0^{(k)}, x_1^{(k)}) \big\|^2

    with :math:`D` the event size (a mean over event elements, so the scale does not grow
    with the image size; the minimiser is the same as with the sum of the seed document).

    Args:
      vector_field: ``v(x, t) -> (B, *event)`` (``v(x, t, cond=c)`` when ``cond`` is given).
      key: a ``jax.random.key``; split into a coupling key and a key for times and noise.
      x0: source batch ``(B, *event)``; x1: data batch of the same shape.
      path: an :class:`~flowjax_fm.paths.AbstractPath`.
      coupling: an :class:`~flowjax_fm.couplings.AbstractCoupling`.
      time_sampler: an :class:`~flowjax_fm.time_sampling.AbstractTime`.
      weight: optional ``w(t) -> (B,)`` time weighting.
      cond: optional condition of the **data** rows (a pytree with leading axis ``B``). It
        follows the pairing (``cond[target]``). The noise rows are given the same conditions:
        integer labels ``(B,)`` make the coupling pair within labels; float conditions enter
        an OT coupling's cost through its ``cond_weight`` (an OT coupling without one refuses
        them).

    Returns:
      ``(loss, aux)``: the scalar loss and a dict with ``per_example`` ``(B,)`` and ``t`` ``(B,)``.

    Raises:
      TypeError: ``path``, ``coupling`` or ``time_sampler`` not an instance of its base class
        (the message names it), ``vector_field`` or ``weight`` not a function.
      ValueError: on mismatched shapes, an empty batch, non-float data, a ``cond`` leaf
        without leading axis ``B`` (integer labels must be ``(B,)``) or a weight of the
        wrong shape.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> field = lambda x, t: jnp.zeros_like(x)
      >>> x0 = jnp.zeros((4, 2)); x1 = jnp.ones((4, 2))
      >>> loss, aux = fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, path=fm.paths.CondOTPath())
      >>> float(loss), aux["per_example"].shape
      (1.0, (4,))
    """
    _check_parts(vector_field=vector_field, weight=weight)
    sample = sample_conditional(
        key, x0, x1, path=path, coupling=coupling, time_sampler=time_sampler, cond=cond
    )
    return regress(vector_field, sample, weight)
