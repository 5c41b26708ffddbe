r"""Stochastic straight-line paths: Gaussian (I-CFM / OT-CFM) and Brownian bridge (SB-CFM)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_real
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.paths._base import AbstractPath, check_example

__all__ = ["GaussianPath", "BrownianBridgePath"]


@pytree_dataclass
class GaussianPath(AbstractPath):
    r"""Straight line with constant Gaussian width (I-CFM and OT-CFM of Tong et al.).

    .. math::
       x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \epsilon,\qquad u_t = x_1 - x_0

    The width does not depend on ``t``, so the target is the straight-line velocity.
    ``sigma = 0`` is the deterministic straight path (still reads ``noise``).

    Args:
      sigma: width of the Gaussian tube around the line (a pytree leaf), a finite number in
        ``[0, inf)``.

    Raises:
      ValueError: if ``sigma`` is negative, NaN or infinite (checked when concrete: a traced
        ``sigma``, swept under ``vmap``, passes).

    Examples:
      >>> import jax.numpy as jnp
      >>> path = GaussianPath(sigma=0.1)
      >>> x0, x1, eps = jnp.zeros(2), jnp.ones(2), jnp.ones(2)
      >>> path.sample(x0, x1, jnp.float32(0.5), eps).tolist()
      [0.6000000238418579, 0.6000000238418579]
      >>> path.target_velocity(x0, x1, jnp.float32(0.5), eps).tolist()
      [1.0, 1.0]

    References:
      Tong et al. 2023, Improving and Generalizing Flow-Based Generative Models with Minibatch
      Optimal Transport.
    """

    sigma: float = 0.1
    stochastic = True

    def __post_init__(self):
        check_real("sigma", self.sigma, 0.0)

    def sample(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        noise = self._noise(x0, noise)
        return ((1.0 - t) * x0 + t * x1 + self.sigma * noise).astype(x0.dtype)

    def target_velocity(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        return (x1 - x0).astype(x0.dtype)


def _bridge_std_and_rate(t: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Return :math:`\sqrt{t(1-t)}` and its derivative :math:`(1-2t)/(2\sqrt{t(1-t)})`.

    The derivative is infinite at ``t = 0`` and ``t = 1``; there :math:`t(1-t)` is clipped from
    below at 1e-6 (that is, the rate is that of ``t`` about 1e-6 from the end), so values and
    gradients stay finite at the ends while the interior is exact.
    """
    var = t * (1.0 - t)
    std = jnp.sqrt(jnp.maximum(var, 0.0))
    rate = (1.0 - 2.0 * t) / (2.0 * jnp.sqrt(jnp.maximum(var, 1e-6)))
    return std, rate


@pytree_dataclass
class BrownianBridgePath(AbstractPath):
    r"""Brownian bridge between the pair: the conditional path of Schrodinger-bridge CFM.

    .. math::
       x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \sqrt{t(1-t)}\, \epsilon,\qquad
       u_t = x_1 - x_0 + \sigma \frac{1 - 2t}{2\sqrt{t(1-t)}}\, \epsilon

    (the second form is :math:`\frac{1-2t}{2t(1-t)}(x_t - (1-t)x_0 - t x_1) + x_1 - x_0`,
    written through :math:`\epsilon` so that it is exactly :math:`\partial_t x_t`). The
    :math:`1/\sqrt{t(1-t)}` factor is clipped near the ends so that ``t = 0`` and ``t = 1``
    give finite values. Pair with an entropic coupling of regularisation :math:`2\sigma^2`
    (``SinkhornCoupling(epsilon=2 * sigma**2)``) for SB-CFM.

    Args:
      sigma: the bridge's diffusion scale (a pytree leaf), a finite number in ``(0, inf)``.
        ``sigma = 0`` is refused: it is the straight path (:class:`~flowjax_fm.paths.CondOTPath`)
        and would give SB-CFM's coupling a regularisation :math:`2\sigma^2 = 0`.

    Raises:
      ValueError: if ``sigma`` is not a finite number > 0 (checked when concrete: a traced
        ``sigma`` passes).

    Examples:
      >>> import jax.numpy as jnp
      >>> path = BrownianBridgePath(sigma=1.0)
      >>> x0, x1, eps = jnp.zeros(1), jnp.ones(1), jnp.ones(1)
      >>> path.sample(x0, x1, jnp.float32(0.5), eps).tolist()
      [1.0]
      >>> path.target_velocity(x0, x1, jnp.float32(0.5), eps).tolist()
      [1.0]

    References:
      Tong et al. 2024, Simulation-Free Schrodinger Bridges via Score and Flow Matching.
    """

    sigma: float = 1.0
    stochastic = True

    def __post_init__(self):
        try:
            check_real("sigma", self.sigma, 0.0, low_open=True)
        except ValueError as err:
            raise ValueError(
                f"{err} (sigma = 0 is the straight path, CondOTPath; SB-CFM's Sinkhorn "
                "regularisation epsilon = 2 sigma^2 would be 0)"
            ) from None

    def sample(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        noise = self._noise(x0, noise)
        std, _ = _bridge_std_and_rate(t)
        return ((1.0 - t) * x0 + t * x1 + self.sigma * std * noise).astype(x0.dtype)

    def target_velocity(self, x0, x1, t, noise=None):
        check_example(x0, x1, t, noise)
        noise = self._noise(x0, noise)
        _, rate = _bridge_std_and_rate(t)
        return (x1 - x0 + self.sigma * rate * noise).astype(x0.dtype)
