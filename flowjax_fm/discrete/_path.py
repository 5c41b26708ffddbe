r"""The mixture probability path over integer tokens, and its sources.

A sequence of ``L`` tokens from a vocabulary ``[0, V)`` is noised *per token*: at time
:math:`t` each token equals its data value :math:`x_1^i` with probability :math:`\kappa_t` and
its source value :math:`x_0^i` otherwise,

.. math::
   p_t(x_t^i \mid x_0, x_1) = \kappa_t\, \delta_{x_1^i}(x_t^i) + (1 - \kappa_t)\, \delta_{x_0^i}(x_t^i).

Everything here is **batched** (tokens ``(B, *event)``, usually ``(B, L)``, and times ``(B,)``):
discrete flow matching works on whole sequences, whose posterior couples the positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_int, check_positive_int, check_real, is_concrete, is_int
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.paths._affine import AbstractSchedule

__all__ = ["MixtureDiscretePath", "uniform_source", "mask_source"]

# 1 - kappa_t and kappa_t are clipped at this value where they divide (t -> 1, t -> 0).
_EPS = 1e-6


# -- shared checks -----------------------------------------------------------------------
def check_tokens(name: str, x, *, vocab_size: int | None = None, shape=None) -> tuple:
    """The shape of the integer tokens ``x`` ``(B, *event)``; a ValueError naming ``name`` if not.

    The range (``[0, vocab_size)``, or ``>= 0`` without a vocabulary) is checked when ``x`` is
    concrete; traced tokens pass.
    """
    x_shape, dtype = tuple(np.shape(x)), jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer) or len(x_shape) < 2 or x_shape[0] == 0:
        raise ValueError(
            f"{name} must be integer tokens of shape (B, L) (or (B, *event)), got dtype {dtype} "
            f"and shape {x_shape}"
        )
    if shape is not None and x_shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {x_shape}")
    if is_concrete(x):
        v = np.asarray(x)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            span = f"[0, {vocab_size})" if vocab_size is not None else "[0, V)"
            raise ValueError(f"{name} must lie in {span}, got tokens from {lo} to {hi}")
    return x_shape


def check_times(t, batch: int) -> None:
    """A ValueError unless ``t`` is a float array of shape ``(batch,)`` (values in [0, 1] when concrete)."""
    shape, dtype = tuple(np.shape(t)), jnp.result_type(t)
    if shape != (batch,) or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"t must be a float array of shape ({batch},) (one time per row), got shape {shape} "
            f"and dtype {dtype}"
        )
    check_real("t", t, 0.0, 1.0)


def _per_row(c: jax.Array, ndim: int) -> jax.Array:
    """``(B,)`` coefficients reshaped to broadcast over ``(B, *rest)`` with ``ndim`` axes."""
    return jnp.reshape(c, c.shape + (1,) * (ndim - 1))


@pytree_dataclass
class MixtureDiscretePath:
    r"""Factorised mixture path of discrete flow matching (Gat et al. 2024).

    Given a source sequence :math:`x_0` and a data sequence :math:`x_1`, every position moves
    independently from its source token to its data token at a random time:

    .. math::
       p_t(x_t \mid x_0, x_1) = \prod_i \big[\kappa_t\, \delta_{x_1^i}(x_t^i)
         + (1 - \kappa_t)\, \delta_{x_0^i}(x_t^i)\big],

    with :math:`\kappa_t` the schedule's :math:`\alpha_t` (``CondOTSchedule``: :math:`\kappa_t
    = t`; ``PolynomialSchedule(n)``: :math:`t^n`; ``CosineSchedule``: :math:`\sin(\pi t/2)`)
    and :math:`\dot\kappa_t` its :math:`\dot\alpha_t`. With a source of independent tokens
    :math:`p_0` (uniform, or all a mask token) the marginal of one position given the data is
    :math:`\kappa_t \delta_{x_1^i} + (1-\kappa_t) p_0` (:meth:`conditional_probs`).

    A model predicts the factorised posterior :math:`p_{1|t}(x_1^i \mid x_t)` as logits; the
    probability velocity that generates the marginal path is (:meth:`posterior_to_velocity`)

    .. math::
       u_t^i(y \mid x_t) = \frac{\dot\kappa_t}{1 - \kappa_t}
         \big[p_{1|t}^i(y \mid x_t) - \delta_{x_t^i}(y)\big],

    a rate matrix row: nonnegative off the diagonal, summing to zero over ``y``.

    Args:
      scheduler: an :class:`fm.paths.AbstractSchedule <flowjax_fm.paths.AbstractSchedule>`
        (``CondOTSchedule()``, ``PolynomialSchedule(n)``, ``CosineSchedule()``, ...); its
        ``alpha`` is :math:`\kappa_t` (``VPSchedule``'s :math:`\alpha_0 > 0` leaves a few data
        tokens at ``t = 0``). It is a pytree field: a leaf hyperparameter
        (``PolynomialSchedule``'s ``n``) can be swept without recompiling.

    Raises:
      TypeError: if ``scheduler`` is not an ``AbstractSchedule`` instance.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> path = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())
      >>> x0 = jnp.zeros((2, 4), jnp.int32)
      >>> x1 = jnp.ones((2, 4), jnp.int32)
      >>> path.sample(jax.random.key(0), x0, x1, jnp.array([0.0, 1.0])).tolist()
      [[0, 0, 0, 0], [1, 1, 1, 1]]

    References:
      Gat et al. 2024, Discrete Flow Matching; Lipman et al. 2024, Flow Matching Guide and
      Code (section 7, mixture paths); Campbell et al. 2024, Generative Flows on Discrete
      State-Spaces.
    """

    scheduler: AbstractSchedule

    def __post_init__(self):
        if not isinstance(self.scheduler, AbstractSchedule):
            raise TypeError(
                "scheduler must be an instance of fm.paths.AbstractSchedule (e.g. "
                f"fm.paths.CondOTSchedule()), got {type(self.scheduler).__name__}"
            )

    def kappa(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        r""":math:`(\kappa_t, \dot\kappa_t)`: the schedule's ``alpha`` and ``d_alpha`` at ``t``."""
        alpha, _, d_alpha, _ = self.scheduler(t)
        return alpha, d_alpha

    def jump_rate(self, t: jax.Array) -> jax.Array:
        r""":math:`\dot\kappa_t / (1 - \kappa_t)`, :math:`1 - \kappa_t` clipped at 1e-6 (finite at 1)."""
        kappa, d_kappa = self.kappa(t)
        return d_kappa / jnp.maximum(1.0 - kappa, _EPS)

    def sample(self, key: jax.Array, x0: jax.Array, x1: jax.Array, t: jax.Array) -> jax.Array:
        r"""A draw :math:`x_t \sim p_t(\cdot \mid x_0, x_1)`: each token independently.

        Token ``i`` is :math:`x_1^i` with probability :math:`\kappa_t`, else :math:`x_0^i`.

        Args:
          key: a ``jax.random.key``.
          x0: source tokens, integers of shape ``(B, L)`` (or ``(B, *event)``).
          x1: data tokens, the shape of ``x0``.
          t: times of shape ``(B,)`` in ``[0, 1]``.

        Returns:
          ``x_t``, integer tokens of ``x1``'s shape and dtype.

        Raises:
          ValueError: tokens not integers of one shape ``(B, ...)`` or negative (when
            concrete); ``t`` not a float array ``(B,)`` in ``[0, 1]`` (quoting the shapes).
        """
        shape = check_tokens("x0", x0)
        check_tokens("x1", x1, shape=shape)
        check_times(t, shape[0])
        kappa, _ = self.kappa(t)
        take_data = jax.random.uniform(key, shape, dtype=jnp.result_type(kappa)) < _per_row(kappa, len(shape))
        return jnp.where(take_data, x1, x0).astype(jnp.result_type(x1))

    def conditional_probs(self, x1: jax.Array, t: jax.Array, source_probs: jax.Array) -> jax.Array:
        r"""Per-token marginal :math:`p_t(y \mid x_1^i) = \kappa_t \delta_{x_1^i}(y) + (1 - \kappa_t) p_0(y)`.

        For a source of independent tokens with probabilities :math:`p_0`, this is the law of
        :meth:`sample`'s ``x_t`` given ``x1`` alone (the source integrated out); exact
        posteriors :math:`p(x_1 \mid x_t) \propto q(x_1) \prod_i p_t(x_t^i \mid x_1^i)` of a
        known target :math:`q` follow from it.

        Args:
          x1: data tokens ``(B, *event)`` in ``[0, V)``.
          t: times ``(B,)``.
          source_probs: :math:`p_0`, shape ``(V,)`` (``jnp.full(V, 1 / V)`` for the uniform
            source, ``jax.nn.one_hot(mask_token, V)`` for the mask source).

        Returns:
          Probabilities of shape ``(B, *event, V)``.

        Raises:
          ValueError: for tokens, times or ``source_probs`` of the wrong shape or dtype.

        Examples:
          >>> import jax.numpy as jnp
          >>> import flowjax_fm as fm
          >>> path = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())
          >>> path.conditional_probs(jnp.array([[1]]), jnp.array([0.5]), jnp.full(4, 0.25)).tolist()
          [[[0.125, 0.625, 0.125, 0.125]]]
        """
        p0 = _check_source_probs(source_probs)
        shape = check_tokens("x1", x1, vocab_size=p0.shape[0])
        check_times(t, shape[0])
        kappa, _ = self.kappa(t)
        kappa = _per_row(kappa, len(shape) + 1)
        return kappa * jax.nn.one_hot(x1, p0.shape[0], dtype=kappa.dtype) + (1.0 - kappa) * p0

    def posterior_to_velocity(self, logits: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
        r"""The probability velocity of posterior logits (the rates of the marginal CTMC).

        .. math::
           u_t^i(y \mid x_t) = \frac{\dot\kappa_t}{1-\kappa_t}
             \big[p_{1|t}^i(y \mid x_t) - \delta_{x_t^i}(y)\big]

        Args:
          logits: posterior logits, :math:`p_{1|t} = \mathrm{softmax}(\text{logits})`, shape
            ``(B, *event, V)``.
          x_t: current tokens ``(B, *event)`` in ``[0, V)``.
          t: times ``(B,)``; :math:`1 - \kappa_t` is clipped at 1e-6.

        Returns:
          Rates of shape ``(B, *event, V)``: nonnegative off the current token, each row
          summing to zero.

        Raises:
          ValueError: for shapes that do not fit (quoting them), float tokens or float-less
            logits.

        Examples:
          >>> import jax.numpy as jnp
          >>> import flowjax_fm as fm
          >>> path = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())
          >>> logits = jnp.log(jnp.array([[[0.5, 0.5]]]))
          >>> path.posterior_to_velocity(logits, jnp.array([[0]]), jnp.array([0.5])).tolist()
          [[[-1.0, 1.0]]]
        """
        check_logits(logits, x_t)
        check_times(t, jnp.shape(x_t)[0])
        p = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
        rate = _per_row(self.jump_rate(t).astype(p.dtype), p.ndim)
        return rate * (p - jax.nn.one_hot(x_t, p.shape[-1], dtype=p.dtype))


def check_logits(logits, x, name: str = "x_t") -> int:
    """The vocabulary size ``V`` of float ``logits`` of shape ``(*x.shape, V)``; a ValueError if not.

    Also checks the tokens ``x`` (named ``name``) against ``[0, V)``.
    """
    shape, dtype = tuple(np.shape(logits)), jnp.result_type(logits)
    x_shape = tuple(np.shape(x))
    if not jnp.issubdtype(dtype, jnp.floating) or shape[:-1] != x_shape or len(shape) < 3:
        raise ValueError(
            f"logits must be a float array of shape (*tokens.shape, V) = {x_shape + ('V',)}, got "
            f"shape {shape} and dtype {dtype}"
        )
    vocab = shape[-1]
    check_tokens(name, x, vocab_size=vocab)
    return vocab


def _check_source_probs(source_probs) -> jax.Array:
    """``source_probs`` as a float ``(V,)`` array of probabilities (checked when concrete)."""
    p0 = jnp.asarray(source_probs)
    if p0.ndim != 1 or p0.shape[0] < 1 or not jnp.issubdtype(p0.dtype, jnp.floating):
        raise ValueError(
            f"source_probs must be a float array of shape (V,), got shape {p0.shape} and dtype {p0.dtype}"
        )
    if is_concrete(p0):
        v = np.asarray(p0, np.float64)
        if not (np.all(np.isfinite(v)) and np.all(v >= 0) and abs(v.sum() - 1.0) < 1e-4):
            raise ValueError(
                f"source_probs must be nonnegative and sum to 1, got sum {v.sum():.6g} and minimum "
                f"{v.min():.6g}"
            )
    return p0


# -- sources -----------------------------------------------------------------------------
def uniform_source(key: jax.Array, shape, vocab_size: int) -> jax.Array:
    r"""Source tokens drawn independently and uniformly: :math:`x_0^i \sim U\{0, \dots, V-1\}`.

    With this source the path is the *uniform* (or "random token") discrete flow: every token
    can keep changing until the end. Its :math:`p_0` for the corrector of
    :func:`~flowjax_fm.discrete.sample` is ``jnp.full(V, 1 / V)``.

    Args:
      key: a ``jax.random.key``.
      shape: the token shape, ``(B, L)`` (a tuple of ints >= 1).
      vocab_size: ``V``, an int >= 1.

    Returns:
      ``int32`` tokens of shape ``shape`` in ``[0, V)``.

    Raises:
      ValueError: ``shape`` not a tuple of ints >= 1, ``vocab_size`` not an int >= 1.

    Examples:
      >>> import jax
      >>> import flowjax_fm as fm
      >>> x0 = fm.discrete.uniform_source(jax.random.key(0), (3, 5), 4)
      >>> x0.shape, x0.dtype, bool((x0 >= 0).all() & (x0 < 4).all())
      ((3, 5), dtype('int32'), True)
    """
    shape = _check_shape(shape)
    vocab_size = check_positive_int("vocab_size", vocab_size)
    return jax.random.randint(key, shape, 0, vocab_size, dtype=jnp.int32)


def mask_source(shape, mask_token: int) -> jax.Array:
    r"""Source tokens that are all the mask token: :math:`p_0 = \delta_{m}`.

    With this source the path is the *masked* (absorbing) discrete flow: a token is unmasked
    once, at a random time, and then keeps its value. The mask is an extra vocabulary entry
    (usually ``m = V_data``, so the model's vocabulary is ``V = V_data + 1``). Its :math:`p_0`
    for the corrector of :func:`~flowjax_fm.discrete.sample` is ``jax.nn.one_hot(m, V)``.
    Deterministic: it takes no key.

    Args:
      shape: the token shape, ``(B, L)`` (a tuple of ints >= 1).
      mask_token: ``m``, an int >= 0.

    Returns:
      ``int32`` tokens of shape ``shape``, all equal to ``mask_token``.

    Raises:
      ValueError: ``shape`` not a tuple of ints >= 1, ``mask_token`` not an int >= 0.

    Examples:
      >>> import flowjax_fm as fm
      >>> fm.discrete.mask_source((2, 3), 8).tolist()
      [[8, 8, 8], [8, 8, 8]]
    """
    shape = _check_shape(shape)
    mask_token = check_int("mask_token", mask_token, 0)
    return jnp.full(shape, mask_token, jnp.int32)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if not dims or len(dims) < 2 or not all(is_int(d) and d >= 1 for d in dims):
        raise ValueError(f"shape must be a tuple (B, L) of ints >= 1 (or (B, *event)), got {shape!r}")
    return tuple(int(d) for d in dims)
