r"""The flat torus :math:`\mathbb T^d = (\mathbb R / 2\pi\mathbb Z)^d` in angle coordinates."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_int
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.manifolds._base import AbstractManifold, float_dtype, safe_norm

__all__ = ["FlatTorus"]

_TWO_PI = 2.0 * math.pi
_BROADCAST_CELLS = 2**24  # above this many (n, m, d) cells the cost matrix is built row by row


def _wrap(a: jax.Array) -> jax.Array:
    r"""The angle difference :math:`a` wrapped into :math:`[-\pi, \pi)`."""
    return jnp.mod(a + math.pi, _TWO_PI) - math.pi


@pytree_dataclass
class FlatTorus(AbstractManifold):
    r"""The flat torus: every coordinate an angle in :math:`[0, 2\pi)`, with the flat metric.

    A point is an array of angles of any shape (``(d,)`` for :math:`\mathbb T^d`; a scalar is
    the circle). The ambient coordinates are the angles themselves; differences are wrapped:

    .. math::
       \mathrm{projx}(x) = x \bmod 2\pi,\qquad \mathrm{proju}(x, u) = u,\qquad
       \exp_x(u) = (x + u) \bmod 2\pi,

    .. math::
       \log_x(y) = \mathrm{wrap}(y - x),\qquad d(x, y) = \|\mathrm{wrap}(y - x)\|,\qquad
       \mathrm{wrap}(a) = ((a + \pi) \bmod 2\pi) - \pi \in [-\pi, \pi).

    So angles near 0 and near :math:`2\pi` are close. Where a coordinate differs by exactly
    :math:`\pi` (the cut locus) the logarithm takes :math:`-\pi`. Rounding that would give
    exactly :math:`2\pi` in :meth:`projx` gives 0, so results lie in :math:`[0, 2\pi)`.

    Raises:
      ValueError: (from every method) an argument that is not floating, or two arguments of
        different shapes.

    Examples:
      >>> import jax.numpy as jnp
      >>> T = FlatTorus()
      >>> x, y = jnp.array([0.1, 3.0]), jnp.array([6.2, 3.5])
      >>> r4 = lambda a: [round(float(v), 4) for v in a]
      >>> r4(T.logmap(x, y))  # 6.2 is 0.183 below 0.1, through 0
      [-0.1832, 0.5]
      >>> r4(T.expmap(x, T.logmap(x, y)))
      [6.2, 3.5]

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries.
    """

    def projx(self, x):
        r""":math:`x \bmod 2\pi`, in :math:`[0, 2\pi)`."""
        x = self._point("x", x)
        r = jnp.mod(x, _TWO_PI)
        return jnp.where(r >= _TWO_PI, r - _TWO_PI, r).astype(x.dtype)

    def proju(self, x, u):
        """``u`` (every vector is tangent)."""
        x, u = self._pair("x", x, "u", u)
        return u

    def expmap(self, x, u):
        r""":math:`(x + u) \bmod 2\pi`."""
        x, u = self._pair("x", x, "u", u)
        return self.projx(x + u)

    def logmap(self, x, y):
        r""":math:`\mathrm{wrap}(y - x)`."""
        x, y = self._pair("x", x, "y", y)
        return _wrap(y - x).astype(x.dtype)

    def dist(self, x, y):
        r""":math:`\|\mathrm{wrap}(y - x)\|`."""
        x, y = self._pair("x", x, "y", y)
        return safe_norm(_wrap(y - x))

    def belongs(self, x, atol=1e-5):
        r"""Every angle finite and in :math:`[-atol, 2\pi + atol)`."""
        x = self._point("x", x)
        return jnp.all(jnp.isfinite(x) & (x >= -atol) & (x < _TWO_PI + atol))

    def squared_distances(self, x0, x1):
        r"""Wrapped squared distances :math:`C_{ij} = \|\mathrm{wrap}(x_1^j - x_0^i)\|^2`, ``(n, m)``."""
        x0, x1 = self._batches(x0, x1)
        a = x0.reshape(x0.shape[0], -1)
        b = x1.reshape(x1.shape[0], -1)
        row = lambda p: jnp.sum(_wrap(b - p) ** 2, axis=-1)
        if a.shape[0] * b.shape[0] * a.shape[1] <= _BROADCAST_CELLS:
            return jax.vmap(row)(a)
        return jax.lax.map(row, a)

    def random_uniform(self, key, n, dim, dtype=jnp.float32):
        r"""``n`` uniform points of :math:`\mathbb T^{dim}`, ``(n, dim)`` angles in :math:`[0, 2\pi)`.

        Raises:
          ValueError: ``n < 1``, ``dim < 1``, or a dtype that is not floating.

        Examples:
          >>> import jax
          >>> x = FlatTorus().random_uniform(jax.random.key(0), 5, 2)
          >>> x.shape, bool((x >= 0).all() and (x < 2 * 3.1415927).all())
          ((5, 2), True)
        """
        n, dim = check_int("n", n, 1), check_int("dim", dim, 1)
        x = jax.random.uniform(key, (n, dim), float_dtype(dtype), 0.0, _TWO_PI)
        return jax.vmap(self.projx)(x)
