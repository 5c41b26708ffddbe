r"""Affine probability paths :math:`x_t = \alpha_t x_1 + \sigma_t x_0` and their schedules.

With a Gaussian source :math:`x_0 \sim N(0, I)` an affine path lets a model predict any of four
equivalent quantities; the conversions below map between them at a point :math:`(x_t, t)`:

* velocity :math:`v = \dot\alpha_t \hat x_1 + \dot\sigma_t \hat x_0`,
* data (x1) prediction :math:`\hat x_1 = (\sigma_t v - \dot\sigma_t x_t) / (\sigma_t\dot\alpha_t - \dot\sigma_t\alpha_t)`,
* noise (x0) prediction :math:`\hat x_0 = (\alpha_t v - \dot\alpha_t x_t) / (\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t)`,
* score :math:`\nabla \log p_t(x_t) = -\hat x_0 / \sigma_t` (Tweedie, Gaussian source).
"""

from __future__ import annotations

import abc
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_real, is_concrete
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.paths._base import AbstractPath, check_example

__all__ = [
    "AbstractSchedule",
    "CondOTSchedule",
    "PolynomialSchedule",
    "CosineSchedule",
    "VPSchedule",
    "LinearVPSchedule",
    "AbstractAffinePath",
    "AffinePath",
    "CondOTPath",
    "VPPath",
]

def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt that is 0 for ``x <= 0`` with a finite (zero) derivative there, not inf or NaN."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


class AbstractSchedule(abc.ABC):
    r"""A schedule :math:`t \mapsto (\alpha_t, \sigma_t, \dot\alpha_t, \dot\sigma_t)`.

    ``alpha`` multiplies data, ``sigma`` multiplies the source; a valid schedule has
    :math:`(\alpha_0, \sigma_0) = (0, 1)` and :math:`(\alpha_1, \sigma_1) = (1, 0)`.
    """

    @abc.abstractmethod
    def __call__(self, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Return ``(alpha, sigma, d_alpha, d_sigma)`` at ``t``."""


@pytree_dataclass
class CondOTSchedule(AbstractSchedule):
    r"""Straight line: :math:`\alpha_t = t,\ \sigma_t = 1 - t`.

    Examples:
      >>> import jax.numpy as jnp
      >>> [float(v) for v in CondOTSchedule()(jnp.float32(0.25))]
      [0.25, 0.75, 1.0, -1.0]
    """

    def __call__(self, t):
        one = jnp.ones_like(t)
        return t, 1.0 - t, one, -one


@pytree_dataclass
class PolynomialSchedule(AbstractSchedule):
    r"""Polynomial: :math:`\alpha_t = t^n,\ \sigma_t = 1 - t^n` (``n = 1`` is :class:`CondOTSchedule`).

    ``n`` is a pytree leaf: changing it does not recompile. For ``n < 1``,
    :math:`\dot\alpha_t = n t^{n-1}` is infinite at ``t = 0``; it is evaluated with ``t``
    clipped at 1e-6 there, so that it stays finite.

    Args:
      n: the exponent, a finite number in ``(0, inf)``.

    Raises:
      ValueError: if ``n`` is not a finite number > 0 (checked when concrete).

    Examples:
      >>> import jax.numpy as jnp
      >>> [round(float(v), 4) for v in PolynomialSchedule(2.0)(jnp.float32(0.5))]
      [0.25, 0.75, 1.0, -1.0]
    """

    n: float = 2.0

    def __post_init__(self):
        check_real("n", self.n, 0.0, low_open=True)

    def __call__(self, t):
        alpha = t**self.n
        base = jnp.where(self.n < 1.0, jnp.maximum(t, 1e-6), t)  # n t^(n-1) is infinite at 0 for n < 1
        d_alpha = self.n * base ** (self.n - 1.0)
        return alpha, 1.0 - alpha, d_alpha, -d_alpha


@pytree_dataclass
class CosineSchedule(AbstractSchedule):
    r"""Trigonometric: :math:`\alpha_t = \sin(\pi t / 2),\ \sigma_t = \cos(\pi t / 2)`.

    Examples:
      >>> import jax.numpy as jnp
      >>> a, s, da, ds = CosineSchedule()(jnp.float32(1.0))
      >>> round(float(a), 6), round(float(s), 6)
      (1.0, -0.0)
    """

    def __call__(self, t):
        h = 0.5 * math.pi
        return jnp.sin(h * t), jnp.cos(h * t), h * jnp.cos(h * t), -h * jnp.sin(h * t)


@pytree_dataclass
class VPSchedule(AbstractSchedule):
    r"""Variance preserving (score SDE, reversed time so that ``t = 1`` is data).

    .. math::
       T(t) = \tfrac12 (1-t)^2 (\beta_{max} - \beta_{min}) + (1-t)\beta_{min},\quad
       \alpha_t = e^{-T(t)/2},\quad \sigma_t = \sqrt{1 - \alpha_t^2}.

    :math:`\alpha_0 = e^{-(\beta_{min}+\beta_{max})/4}` is small but not zero. At ``t = 1``
    :math:`\dot\sigma_t` is infinite; it is evaluated with :math:`\sigma_t` clipped at 1e-6 so
    that it stays finite.

    Args:
      beta_min: the noise rate at the data end, a finite number in ``[0, inf)``.
      beta_max: the noise rate at the source end, a finite number in ``(0, inf)`` with
        ``beta_max >= beta_min``.

    Raises:
      ValueError: for a value out of its range or ``beta_max < beta_min`` (checked when
        concrete).

    Examples:
      >>> import jax.numpy as jnp
      >>> a, s, _, _ = VPSchedule()(jnp.float32(1.0))
      >>> float(a), float(s)
      (1.0, 0.0)
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        check_real("beta_min", self.beta_min, 0.0)
        check_real("beta_max", self.beta_max, 0.0, low_open=True)
        if is_concrete((self.beta_min, self.beta_max)) and not np.all(
            np.asarray(self.beta_max, np.float64) >= np.asarray(self.beta_min, np.float64)
        ):
            raise ValueError(
                f"beta_max must be >= beta_min, got beta_min={self.beta_min!r} and "
                f"beta_max={self.beta_max!r}"
            )

    def __call__(self, t):
        r = 1.0 - t
        big_t = 0.5 * r**2 * (self.beta_max - self.beta_min) + r * self.beta_min
        d_big_t = -r * (self.beta_max - self.beta_min) - self.beta_min
        alpha = jnp.exp(-0.5 * big_t)
        d_alpha = -0.5 * d_big_t * alpha
        sigma = _safe_sqrt(-jnp.expm1(-big_t))
        d_sigma = -alpha * d_alpha / jnp.maximum(sigma, 1e-6)
        return alpha, sigma, d_alpha, d_sigma


@pytree_dataclass
class LinearVPSchedule(AbstractSchedule):
    r"""Linear variance preserving: :math:`\alpha_t = t,\ \sigma_t = \sqrt{1 - t^2}`.

    :math:`\dot\sigma_t = -t / \sigma_t` is evaluated with :math:`\sigma_t` clipped at 1e-6.

    Examples:
      >>> import jax.numpy as jnp
      >>> a, s, da, ds = LinearVPSchedule()(jnp.float32(0.6))
      >>> round(float(s), 4), round(float(ds), 4)
      (0.8, -0.75)
    """

    def __call__(self, t):
        sigma = _safe_sqrt(1.0 - t**2)
        return t, sigma, jnp.ones_like(t), -t / jnp.maximum(sigma, 1e-6)


class AbstractAffinePath(AbstractPath):
    r"""Deterministic affine path :math:`x_t = \alpha_t x_1 + \sigma_t x_0`, :math:`u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0`.

    Subclasses provide ``schedule(t) -> (alpha, sigma, d_alpha, d_sigma)``. With a Gaussian
    source the conversion methods map a model output between the velocity, data (x1),
    noise (x0) and score parameterisations at a point ``(x_t, t)``; they work per example
    (``t`` of shape ``()``) or batched (``t`` of shape ``(B,)``).
    """

    stochastic = False

    def schedule(self, t):  # pragma: no cover - replaced by a field or a method
        raise NotImplementedError

    def sample(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        alpha, sigma, _, _ = self.schedule(t)
        return (alpha * x1 + sigma * x0).astype(x0.dtype)

    def target_velocity(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        _, _, d_alpha, d_sigma = self.schedule(t)
        return (d_alpha * x1 + d_sigma * x0).astype(x0.dtype)

    # -- conversions -------------------------------------------------------------------
    def _coeffs(self, x_t, t):
        t = jnp.asarray(t)
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape[0] != jnp.shape(x_t)[0]):
            raise ValueError(
                f"t must have shape () or (B,) = ({jnp.shape(x_t)[0]},), got {t.shape}"
            )
        coeffs = self.schedule(t)
        if t.ndim == 1:  # broadcast (B,) over the event dimensions
            extra = (1,) * (jnp.ndim(x_t) - 1)
            coeffs = tuple(jnp.reshape(c, c.shape + extra) for c in coeffs)
        return coeffs

    def velocity_to_x1(self, velocity, x_t, t):
        r""":math:`\hat x_1 = (\sigma_t v - \dot\sigma_t x_t) / (\sigma_t\dot\alpha_t - \dot\sigma_t\alpha_t)`."""
        a, s, da, ds = self._coeffs(x_t, t)
        return (s * velocity - ds * x_t) / (s * da - ds * a)

    def velocity_to_x0(self, velocity, x_t, t):
        r""":math:`\hat x_0 = (\alpha_t v - \dot\alpha_t x_t) / (\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t)`."""
        a, s, da, ds = self._coeffs(x_t, t)
        return (a * velocity - da * x_t) / (a * ds - da * s)

    def x1_to_velocity(self, x1_pred, x_t, t):
        r""":math:`v = \dot\alpha_t \hat x_1 + \dot\sigma_t (x_t - \alpha_t \hat x_1)/\sigma_t`."""
        a, s, da, ds = self._coeffs(x_t, t)
        return da * x1_pred + ds * (x_t - a * x1_pred) / s

    def x0_to_velocity(self, x0_pred, x_t, t):
        r""":math:`v = \dot\alpha_t (x_t - \sigma_t \hat x_0)/\alpha_t + \dot\sigma_t \hat x_0`."""
        a, s, da, ds = self._coeffs(x_t, t)
        return da * (x_t - s * x0_pred) / a + ds * x0_pred

    def velocity_to_score(self, velocity, x_t, t):
        r"""Score of :math:`p_t` for a standard normal source: :math:`-\hat x_0 / \sigma_t`."""
        _, s, _, _ = self._coeffs(x_t, t)
        return -self.velocity_to_x0(velocity, x_t, t) / s

    def score_to_velocity(self, score, x_t, t):
        r"""Inverse of :meth:`velocity_to_score`: :math:`\hat x_0 = -\sigma_t \nabla\log p_t`."""
        _, s, _, _ = self._coeffs(x_t, t)
        return self.x0_to_velocity(-s * score, x_t, t)


@pytree_dataclass
class AffinePath(AbstractAffinePath):
    r"""Affine path built from any schedule: :math:`x_t = \alpha_t x_1 + \sigma_t x_0`.

    Args:
      schedule: an :class:`AbstractSchedule` (``CondOTSchedule()``, ``CosineSchedule()``, ...).

    Raises:
      TypeError: if ``schedule`` is not an :class:`AbstractSchedule`.

    Examples:
      >>> import jax.numpy as jnp
      >>> path = AffinePath(CosineSchedule())
      >>> x0, x1 = jnp.zeros(2), jnp.ones(2)
      >>> path.sample(x0, x1, jnp.float32(1.0)).round(6).tolist()
      [1.0, 1.0]
    """

    schedule: AbstractSchedule = CondOTSchedule()

    def __post_init__(self):
        if not isinstance(self.schedule, AbstractSchedule):
            raise TypeError(
                "schedule must be an instance of fm.paths.AbstractSchedule (e.g. "
                f"fm.paths.CosineSchedule()), got {type(self.schedule).__name__}"
            )


@pytree_dataclass
class CondOTPath(AbstractAffinePath):
    r"""Conditional OT path of Lipman et al. (rectified flow when ``sigma_min = 0``).

    .. math::
       x_t = (1 - (1 - \sigma_{min}) t)\, x_0 + t\, x_1,\qquad
       u_t = x_1 - (1 - \sigma_{min})\, x_0

    Args:
      sigma_min: the width left at the data end, a finite number in ``[0, 1)`` (``1`` would
        not move the source at all).

    Raises:
      ValueError: if ``sigma_min`` is out of ``[0, 1)`` or not finite (checked when concrete).

    Examples:
      >>> import jax.numpy as jnp
      >>> path = CondOTPath(sigma_min=0.0)
      >>> x0, x1 = jnp.array([0.0, 2.0]), jnp.array([4.0, 2.0])
      >>> path.sample(x0, x1, jnp.float32(0.25)).tolist(), path.target_velocity(x0, x1, jnp.float32(0.25)).tolist()
      ([1.0, 2.0], [4.0, 0.0])

    References:
      Lipman et al. 2023, Flow Matching for Generative Modeling; Liu et al. 2023, Flow Straight
      and Fast.
    """

    sigma_min: float = 0.0

    def __post_init__(self):
        check_real("sigma_min", self.sigma_min, 0.0, 1.0, high_open=True)

    def schedule(self, t):
        one = jnp.ones_like(t)
        return t, 1.0 - (1.0 - self.sigma_min) * t, one, -(1.0 - self.sigma_min) * one


@pytree_dataclass
class VPPath(AbstractAffinePath):
    r"""Trigonometric (variance preserving for independent unit-variance ends) interpolant.

    .. math:: x_t = \cos(\pi t / 2)\, x_0 + \sin(\pi t / 2)\, x_1

    Examples:
      >>> import jax.numpy as jnp
      >>> VPPath().sample(jnp.ones(1), jnp.zeros(1), jnp.float32(0.0)).tolist()
      [1.0]

    References:
      Albergo & Vanden-Eijnden 2023, Building Normalizing Flows with Stochastic Interpolants.
    """

    def schedule(self, t):
        return CosineSchedule()(t)
