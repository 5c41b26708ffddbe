r"""The geodesic path of Riemannian flow matching."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.manifolds._base import AbstractManifold
from flowjax_fm.manifolds._euclidean import Euclidean
from flowjax_fm.paths._base import AbstractPath, check_example

__all__ = ["GeodesicPath"]


@pytree_dataclass
class GeodesicPath(AbstractPath):
    r"""The geodesic from the source point to the data point on a manifold (Riemannian CFM).

    .. math::
       x_t = \exp_{x_0}\big(t \log_{x_0} x_1\big),\qquad
       u_t = \frac{\mathrm d}{\mathrm dt} x_t \in T_{x_t}\mathcal M

    ``u_t`` is the forward-mode derivative (``jax.jvp``) of ``x_t`` in ``t``, so it is the
    exact time derivative of :meth:`sample`, tangent at ``x_t``; :meth:`sample_and_target`
    gets both from one ``jvp``. The path is deterministic (``stochastic = False``: ``noise``
    is accepted and ignored). On :class:`~flowjax_fm.manifolds.Euclidean` it is the straight
    path :math:`x_t = (1 - t) x_0 + t x_1`, :math:`u_t = x_1 - x_0`. ``x0`` and ``x1`` should
    lie on the manifold (draw them from its sources, or ``projx`` them); endpoints are then
    exact to rounding. It plugs into training unchanged:
    ``fm.training.make_train_step(model, optimizer=..., path=GeodesicPath(Sphere()))``; pair
    it with ``fm.couplings.ExactOTCoupling(manifold=...)`` for geodesic OT pairs.

    Args:
      manifold: an :class:`~flowjax_fm.manifolds.AbstractManifold` (``Sphere()``,
        ``FlatTorus()``, ``Euclidean()``); default ``Euclidean()``.

    Raises:
      TypeError: if ``manifold`` is not an :class:`~flowjax_fm.manifolds.AbstractManifold`.
      ValueError: (at call time) ``x0`` / ``x1`` of different shapes or not points of the
        manifold (the sphere takes ``(d,)``, ``d >= 2``), a non-scalar ``t``, or integer inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flowjax_fm.manifolds import Sphere
      >>> path = GeodesicPath(Sphere())
      >>> x0, x1 = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0])
      >>> x_t, u_t = path.sample_and_target(x0, x1, jnp.float32(0.5))
      >>> r4 = lambda a: [round(float(v), 4) + 0.0 for v in a]
      >>> r4(x_t), r4(u_t)  # halfway along the quarter circle
      ([0.7071, 0.0, 0.7071], [-1.1107, 0.0, 1.1107])

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries.
    """

    manifold: AbstractManifold = Euclidean()
    stochastic = False

    def __post_init__(self):
        if not isinstance(self.manifold, AbstractManifold):
            raise TypeError(
                "manifold must be an instance of fm.manifolds.AbstractManifold (e.g. "
                f"fm.manifolds.Sphere()), got {type(self.manifold).__name__}"
            )

    def _curve(self, x0, x1, t, noise):
        check_example(x0, x1, t, noise)
        t = jnp.asarray(t)
        direction = self.manifold.logmap(x0, x1)
        return lambda s: self.manifold.expmap(x0, (s * direction).astype(direction.dtype))

    def sample(self, x0, x1, t, noise=None):
        return self._curve(x0, x1, t, noise)(jnp.asarray(t)).astype(x0.dtype)

    def target_velocity(self, x0, x1, t, noise=None):
        return self.sample_and_target(x0, x1, t, noise)[1]

    def sample_and_target(self, x0, x1, t, noise=None):
        curve = self._curve(x0, x1, t, noise)
        t = jnp.asarray(t)
        x_t, u_t = jax.jvp(curve, (t,), (jnp.ones_like(t),))
        return x_t.astype(x0.dtype), u_t.astype(x0.dtype)
