r"""Euclidean space :math:`\mathbb R^d` as a manifold: the straight-line special case."""

from __future__ import annotations

import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.manifolds._base import AbstractManifold, safe_norm

__all__ = ["Euclidean"]


@pytree_dataclass
class Euclidean(AbstractManifold):
    r"""Euclidean space, where geodesics are straight lines.

    A point is an array of any shape.

    .. math::
       \mathrm{projx}(x) = x,\quad \mathrm{proju}(x, u) = u,\quad \exp_x(u) = x + u,\quad
       \log_x(y) = y - x,\quad d(x, y) = \|y - x\|.

    With it, :class:`~flowjax_fm.paths.GeodesicPath` is the straight path
    (:class:`~flowjax_fm.paths.CondOTPath` with ``sigma_min = 0``), and a geodesic OT coupling
    is the plain one, bit for bit. :math:`\mathbb R^d` has no uniform distribution:
    :meth:`random_uniform` raises, and ``random_wrapped_normal(key, n, zeros, 1.0)`` is the
    standard normal source.

    Raises:
      ValueError: (from every method) an argument that is not floating, or two arguments of
        different shapes; :meth:`random_uniform` always.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> E = Euclidean()
      >>> x, y = jnp.array([1.0, 1.0]), jnp.array([4.0, 5.0])
      >>> E.logmap(x, y).tolist(), float(E.dist(x, y))
      ([3.0, 4.0], 5.0)
      >>> E.random_wrapped_normal(jax.random.key(0), 8, jnp.zeros(2), 1.0).shape
      (8, 2)

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries.
    """

    def projx(self, x):
        """``x``."""
        return self._point("x", x)

    def proju(self, x, u):
        """``u``."""
        x, u = self._pair("x", x, "u", u)
        return u

    def expmap(self, x, u):
        """``x + u``."""
        x, u = self._pair("x", x, "u", u)
        return x + u

    def logmap(self, x, y):
        """``y - x``."""
        x, y = self._pair("x", x, "y", y)
        return y - x

    def dist(self, x, y):
        """``|y - x|``."""
        x, y = self._pair("x", x, "y", y)
        return safe_norm(y - x)

    def belongs(self, x, atol=1e-5):
        """Every coordinate finite."""
        return jnp.all(jnp.isfinite(self._point("x", x)))

    def squared_distances(self, x0, x1):
        """:func:`flowjax_fm.couplings.squared_distances` (the plain OT cost)."""
        from flowjax_fm.couplings._base import squared_distances  # couplings import manifolds

        x0, x1 = self._batches(x0, x1)
        return squared_distances(x0, x1)

    def random_uniform(self, key, n, dim, dtype=jnp.float32):
        """Refused: ``R^d`` has no uniform distribution.

        Raises:
          ValueError: always; use ``random_wrapped_normal(key, n, jnp.zeros(dim), 1.0)`` (a
            standard normal) as the source instead.
        """
        raise ValueError(
            "Euclidean space R^d has no uniform distribution: random_uniform is defined on compact "
            f"manifolds (Sphere, FlatTorus) only; for a standard normal source of dim={dim!r} use "
            "random_wrapped_normal(key, n, jnp.zeros(dim), 1.0)"
        )
