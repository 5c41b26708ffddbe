r"""Two-dimensional toy distributions, drawn with :mod:`jax.random` only.

Every sampler but ``moons`` (see below) draws ``n`` i.i.d. points: a point's mixture
component (which Gaussian, circle, spiral arm or checkerboard row) is drawn independently per
point, so any slice of a sample is itself a sample. All samplers are pure functions of
``key`` and are traced once per ``(name, n)``; they can be called inside :func:`jax.jit`,
:func:`jax.lax.scan` and :func:`jax.vmap` (over keys).

Definitions (``u ~ U[0, 1)``, ``z ~ N(0, 1)``, fresh for each use):

* ``gaussian``: :math:`N(0, I_2)`.
* ``8gaussians``: centres :math:`5 (\cos(k\pi/4), \sin(k\pi/4))`, ``k`` uniform on
  ``0..7``, plus :math:`N(0, s^2 I)` with :math:`s = 0.1^{1/4} \approx 0.562`. This is
  torchcfm's ``sample_8gaussians`` in distribution: it passes ``sqrt(var)`` with ``var = 0.1``
  as the *covariance*, so its per-coordinate std is ``0.1 ** 0.25``, not ``0.1``.
* ``moons``: torchcfm's ``sample_moons`` (torchdyn's ``generate_moons(noise=0.2)``, then
  ``3 x - 1``), not scikit-learn's. Outer arc :math:`(\cos s, \sin s)`, inner arc
  :math:`(1 - \cos s, 1/2 - \sin s)`, :math:`s \in [0, \pi]`, one noise draw
  :math:`0.2 u` added to *both* coordinates (so the noise lies along the diagonal), then
  :math:`3 x - 1`. As in torchdyn, the arc positions are *not* random: ``n // 2`` points are
  evenly spaced on the outer arc and the rest on the inner arc (possible under ``jit``
  because ``n`` is static); only the noise is random, and the rows are then shuffled so that
  a slice is not one arc. This stratified sample is much closer to the continuous moons
  than an i.i.d. one: two independent 2,000-point samples are about 0.08 apart in
  :math:`W_2` (torchcfm's noise floor), against about 0.19 for i.i.d. arc positions, so it
  matters for comparisons with torchcfm's published :math:`W_2`. Unlike the other sets,
  the points of one call are therefore not independent.
* ``circles``: scikit-learn's ``make_circles(factor=0.5, noise=0.08)`` scaled by 3 (the
  FFJORD toy set): radius 3 or 1.5 with equal probability, uniform angle, plus
  :math:`N(0, 0.24^2 I)`.
* ``checkerboard``: the FFJORD checkerboard on :math:`[-4, 4]^2`: 8 of the 16 squares of side
  2, uniform on their union.
* ``scurve``: scikit-learn's ``make_s_curve(noise=0.1)`` projected on coordinates 0 and 2:
  :math:`t = 3\pi(u - 1/2)`, point :math:`(\sin t, \operatorname{sign}(t)(\cos t - 1))`
  plus :math:`N(0, 0.1^2 I)`; range about :math:`[-1, 1] \times [-2, 2]`. (The third,
  uniform "height" coordinate is dropped, as torchcfm's research harness does.)
* ``swissroll``: scikit-learn's ``make_swiss_roll(noise=1.0)`` projected on coordinates 0 and
  2 and divided by 5 (the FFJORD convention): :math:`t = \tfrac{3\pi}{2}(1 + 2u)`, point
  :math:`(t \cos t, t \sin t) / 5` plus :math:`N(0, 0.2^2 I)`; range about
  :math:`[-2.8, 2.8]^2`.
* ``2spirals``: the FFJORD two spirals: :math:`m = 3\pi\sqrt{u}`, arm
  :math:`(-m \cos m + 0.5 u', m \sin m + 0.5 u'')`, negated for the second arm (a fair coin),
  divided by 3, plus :math:`N(0, 0.1^2 I)`; range about :math:`[-3.5, 3.5]^2`.

References:
  Tong et al. 2023 (torchcfm), Improving and generalizing flow-based generative models with
  minibatch optimal transport. Grathwohl et al. 2019, FFJORD (toy data sets).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_positive_int

__all__ = ["TOY_NAMES", "sample_toy", "make_sampler", "toy_log_prob"]

_F32 = jnp.float32


def _gaussian(key, n):
    return jax.random.normal(key, (n, 2), _F32)


def _eight_gaussians(key, n):
    key_centre, key_noise = jax.random.split(key)
    angle = jax.random.randint(key_centre, (n,), 0, 8).astype(_F32) * (math.pi / 4)
    centres = 5.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centres + 0.1**0.25 * jax.random.normal(key_noise, (n, 2), _F32)


def _moons(key, n):
    # torchdyn's construction: n // 2 points evenly spaced on the outer arc, the rest on the
    # inner arc (n is static, so this is fixed), then the rows shuffled.
    key_perm, key_noise = jax.random.split(key)
    n_out = n // 2
    s = jnp.concatenate([_linspace_pi(n_out), _linspace_pi(n - n_out)])
    inner = jnp.arange(n) >= n_out
    x = jnp.where(inner, 1.0 - jnp.cos(s), jnp.cos(s))
    y = jnp.where(inner, 0.5 - jnp.sin(s), jnp.sin(s))
    shift = jax.random.uniform(key_noise, (n, 1), _F32, 0.0, 0.2)  # one draw for x and y
    points = 3.0 * (jnp.stack([x, y], axis=-1) + shift) - 1.0
    return jax.random.permutation(key_perm, points)


def _linspace_pi(k):
    return jnp.linspace(0.0, math.pi, k, dtype=_F32)


def _circles(key, n):
    key_ring, key_angle, key_noise = jax.random.split(key, 3)
    radius = jnp.where(jax.random.bernoulli(key_ring, 0.5, (n,)), 1.5, 3.0)
    angle = jax.random.uniform(key_angle, (n,), _F32, 0.0, 2 * math.pi)
    points = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return points + 0.24 * jax.random.normal(key_noise, (n, 2), _F32)


def _checkerboard(key, n):
    key_x, key_y, key_row = jax.random.split(key, 3)
    x = jax.random.uniform(key_x, (n,), _F32, -2.0, 2.0)
    row = 2.0 * jax.random.bernoulli(key_row, 0.5, (n,)).astype(_F32)
    y = jax.random.uniform(key_y, (n,), _F32) - row + jnp.mod(jnp.floor(x), 2.0)
    return 2.0 * jnp.stack([x, y], axis=-1)


def _scurve(key, n):
    key_t, key_noise = jax.random.split(key)
    t = 3 * math.pi * (jax.random.uniform(key_t, (n,), _F32) - 0.5)
    points = jnp.stack([jnp.sin(t), jnp.sign(t) * (jnp.cos(t) - 1.0)], axis=-1)
    return points + 0.1 * jax.random.normal(key_noise, (n, 2), _F32)


def _swissroll(key, n):
    key_t, key_noise = jax.random.split(key)
    t = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(key_t, (n,), _F32))
    points = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) / 5.0
    return points + 0.2 * jax.random.normal(key_noise, (n, 2), _F32)


def _two_spirals(key, n):
    key_m, key_jitter, key_arm, key_noise = jax.random.split(key, 4)
    m = 3 * math.pi * jnp.sqrt(jax.random.uniform(key_m, (n,), _F32))
    jitter = 0.5 * jax.random.uniform(key_jitter, (n, 2), _F32)
    arm = jnp.stack([-m * jnp.cos(m), m * jnp.sin(m)], axis=-1) + jitter
    sign = jnp.where(jax.random.bernoulli(key_arm, 0.5, (n, 1)), -1.0, 1.0)
    return sign * arm / 3.0 + 0.1 * jax.random.normal(key_noise, (n, 2), _F32)


_SAMPLERS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "gaussian": _gaussian,
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "circles": _circles,
    "checkerboard": _checkerboard,
    "scurve": _scurve,
    "swissroll": _swissroll,
    "2spirals": _two_spirals,
}

TOY_NAMES: tuple[str, ...] = tuple(_SAMPLERS)
"""Names accepted by :func:`sample_toy` and :func:`make_sampler`."""


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise ValueError(f"unknown toy data set {name!r}; valid names: {', '.join(TOY_NAMES)}")
    return name


def _check_n(n) -> int:
    try:
        return check_positive_int("n", n)
    except ValueError:
        raise ValueError(f"n must be an int >= 1 (a static sample size), got {n!r}") from None


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(name: str, key: jax.Array, n: int) -> jax.Array:
    return _SAMPLERS[name](key, n).astype(_F32)


def sample_toy(name: str, key: jax.Array, n: int) -> jax.Array:
    r"""Draws ``n`` points from a named 2D toy distribution.

    .. math:: x_i \sim p_{\text{name}}, \quad i = 1, \dots, n,

    independently, except for ``moons``, whose arc positions are evenly spaced as in
    torchcfm (only its noise is random).

    The distributions and their scales are defined in :mod:`flowjax_fm.data._toy` (module
    docstring); ``8gaussians`` and ``moons`` match torchcfm's samplers in distribution.
    Compiled once per ``(name, n)``; callable inside :func:`jax.jit` with ``name`` and ``n``
    static.

    Args:
      name: one of :data:`TOY_NAMES`: ``"gaussian"``, ``"8gaussians"``, ``"moons"``,
        ``"circles"``, ``"checkerboard"``, ``"scurve"``, ``"swissroll"``, ``"2spirals"``.
      key: a :func:`jax.random.key` (or legacy ``PRNGKey``).
      n: number of points, an int ``>= 1`` (static under ``jit``).

    Returns:
      ``float32`` array of shape ``(n, 2)``.

    Raises:
      ValueError: if ``name`` is unknown (the message lists the valid names) or ``n`` is not an
        int ``>= 1`` (a bool is refused; NumPy ints are accepted).

    Examples:
      >>> import jax
      >>> from flowjax_fm.data import sample_toy
      >>> x = sample_toy("moons", jax.random.key(0), 512)
      >>> x.shape, x.dtype
      ((512, 2), dtype('float32'))
      >>> jax.jit(sample_toy, static_argnums=(0, 2))("8gaussians", jax.random.key(1), 3).shape
      (3, 2)
    """
    return _sample(_check_name(name), key, _check_n(n))


def make_sampler(name: str) -> Callable[[jax.Array, int], jax.Array]:
    """Returns the sampler ``(key, n) -> (n, 2)`` of a named toy distribution.

    The form :func:`flowjax_fm.training.fit` accepts as ``source`` / ``target``.

    Args:
      name: one of :data:`TOY_NAMES`.

    Returns:
      ``sampler(key, n)``, equal to ``sample_toy(name, key, n)``.

    Raises:
      ValueError: if ``name`` is unknown (checked now, not at the first call).

    Examples:
      >>> import jax
      >>> from flowjax_fm.data import make_sampler
      >>> make_sampler("checkerboard")(jax.random.key(0), 5).shape
      (5, 2)
    """
    _check_name(name)

    def sampler(key: jax.Array, n: int) -> jax.Array:
        return sample_toy(name, key, n)

    sampler.__name__ = sampler.__qualname__ = f"sample_{name}"
    sampler.__doc__ = f"Draws ``n`` points of the {name!r} toy distribution: ``(n, 2)`` float32."
    return sampler


# --- closed-form densities ----------------------------------------------------------------


_LOG_2PI = math.log(2 * math.pi)
_EIGHT_VAR = 0.1**0.5  # per-coordinate variance of an 8gaussians component: (0.1 ** 0.25) ** 2


def _eight_centres(dtype) -> jax.Array:
    # the centres as _eight_gaussians computes them (float32 angles), then cast
    angle = jnp.arange(8).astype(_F32) * (math.pi / 4)
    return (5.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)).astype(dtype)


def _gaussian_log_prob(x: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(x**2) - _LOG_2PI


def _eight_gaussians_log_prob(x: jax.Array) -> jax.Array:
    sq = jnp.sum((x - _eight_centres(x.dtype)) ** 2, axis=-1)  # (8,)
    log_norm = math.log(8.0) + _LOG_2PI + math.log(_EIGHT_VAR)
    return jax.nn.logsumexp(-0.5 * sq / _EIGHT_VAR) - log_norm


_LOG_PROBS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gaussian": _gaussian_log_prob,
    "8gaussians": _eight_gaussians_log_prob,
}


def toy_log_prob(name: str) -> Callable[[jax.Array], jax.Array]:
    r"""Returns the exact log density ``x: (B, 2) -> (B,)`` of a toy distribution with a closed form.

    Two toys have one (the others are supported on curves or squares blurred by noise, or
    sampled deterministically, and have none):

    .. math::

        \log p_{\text{gaussian}}(x) = -\tfrac12 \lVert x \rVert^2 - \log 2\pi,

        \log p_{\text{8gaussians}}(x) = \operatorname{logsumexp}_{k=0}^{7}
            \Bigl(-\frac{\lVert x - c_k \rVert^2}{2 s^2}\Bigr) - \log 8 - \log(2\pi s^2),

    with centres :math:`c_k = 5 (\cos(k\pi/4), \sin(k\pi/4))` and :math:`s^2 = 0.1^{1/2}`
    (per-coordinate std :math:`0.1^{1/4}`), the mixture :func:`sample_toy` draws from.
    A source ``"gaussian"`` with this density gives exact likelihoods of a trained flow; an
    ``"8gaussians"`` target gives the reference negative log-likelihood.

    Args:
      name: ``"gaussian"`` or ``"8gaussians"``.

    Returns:
      ``log_prob(x)``: points ``(B, 2)`` to log densities ``(B,)``, in ``x``'s floating
      dtype (integers are computed in float32). Pure; already jitted, and callable inside
      :func:`jax.jit`, :func:`jax.grad` and :func:`jax.vmap`.

    Raises:
      ValueError: if ``name`` is not a toy data set, or is one without a closed-form
        density; ``log_prob`` raises (at trace time) if ``x`` is not of shape ``(B, 2)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flowjax_fm.data import toy_log_prob
      >>> log_p = toy_log_prob("gaussian")
      >>> float(log_p(jnp.zeros((1, 2)))[0])  # -log(2 pi)
      -1.8378770...
      >>> toy_log_prob("8gaussians")(jnp.array([[5.0, 0.0], [0.0, 0.0]])).shape
      (2,)
      >>> toy_log_prob("moons")
      Traceback (most recent call last):
      ...
      ValueError: toy data set 'moons' has no closed-form density; toy_log_prob knows gaussian, 8gaussians
    """
    _check_name(name)
    if name not in _LOG_PROBS:
        raise ValueError(
            f"toy data set {name!r} has no closed-form density; toy_log_prob knows {', '.join(_LOG_PROBS)}"
        )
    per_point = _LOG_PROBS[name]

    def log_prob(x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"toy_log_prob({name!r}) takes points of shape (B, 2), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(_F32)
        return jax.vmap(per_point)(x)

    log_prob.__name__ = log_prob.__qualname__ = f"log_prob_{name}"
    log_prob.__doc__ = f"Exact log density of the {name!r} toy distribution: ``(B, 2) -> (B,)``."
    return jax.jit(log_prob)  # one compile per input shape when called eagerly
