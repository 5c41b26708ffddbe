r"""The unit sphere :math:`S^{d-1} \subset \mathbb R^d` in ambient coordinates."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_int
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.manifolds._base import (
    SERIES_BELOW,
    AbstractManifold,
    cos_sinc,
    float_dtype,
    safe_norm,
)

__all__ = ["Sphere"]


@pytree_dataclass
class Sphere(AbstractManifold):
    r"""The unit sphere :math:`S^{d-1} = \{x \in \mathbb R^d : \|x\| = 1\}`, any :math:`d \ge 2`.

    A point is a vector of shape ``(d,)`` (ambient coordinates); ``d`` is read from it.

    .. math::
       \mathrm{projx}(x) = \frac{x}{\|x\|},\qquad
       \mathrm{proju}(x, u) = u - \langle x, u\rangle x,\qquad
       \exp_x(u) = \cos\|u\|\, x + \frac{\sin\|u\|}{\|u\|}\, u,

    .. math::
       \log_x(y) = \frac{\theta}{\sin\theta}\, (y - \langle x, y\rangle x),\qquad
       d(x, y) = \theta = 2 \operatorname{atan2}(\|x - y\|, \|x + y\|).

    Numerics: :math:`\sin r / r` and :math:`\theta / \sin\theta` switch to their series
    in :math:`r^2` (resp. :math:`\sin^2\theta`) near 0 behind a double ``where``, so values,
    gradients and ``jax.jvp`` are finite at ``u = 0`` and ``y = x``; the distance uses
    Kahan's :math:`\operatorname{atan2}` form, accurate at every angle (``arccos`` of the dot
    product loses half the digits near 0 and :math:`\pi`). At the cut locus ``y = -x`` the
    logarithm is not unique: a fixed tangent direction of length :math:`\pi` is returned
    (towards the coordinate axis least aligned with ``x``), so that
    :math:`\exp_x(\log_x y) = y` still holds and nothing is NaN. :meth:`expmap` normalises its
    result, so points stay on the sphere to rounding. :meth:`projx` maps the zero vector, which
    has no nearest point, to itself.

    Raises:
      ValueError: (from every method) a point that is not a floating vector ``(d,)`` with
        ``d >= 2``, or two arguments of different shapes.

    Examples:
      >>> import jax.numpy as jnp
      >>> S = Sphere()
      >>> x, y = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.0])
      >>> r4 = lambda a: [round(float(v), 4) + 0.0 for v in a]
      >>> u = S.logmap(x, y); r4(u)
      [0.0, 1.5708, 0.0]
      >>> r4(S.expmap(x, u)), round(float(S.dist(x, y)), 4)
      ([0.0, 1.0, 0.0], 1.5708)
      >>> S.proju(x, jnp.array([3.0, 1.0, 0.0])).tolist()
      [0.0, 1.0, 0.0]

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries.
    """

    def _check_shape(self, name, shape):
        if len(shape) != 1 or shape[0] < 2:
            raise ValueError(
                f"Sphere: {name} must be one point of shape (d,) with d >= 2 (ambient "
                f"coordinates of the unit sphere in R^d; batch with jax.vmap), got shape {tuple(shape)}"
            )

    def projx(self, x):
        """``x / |x|`` (the zero vector stays zero)."""
        x = self._point("x", x)
        norm = safe_norm(x)
        return x / jnp.where(norm > 0, norm, 1.0).astype(x.dtype)

    def proju(self, x, u):
        r""":math:`u - \langle x, u\rangle x`."""
        x, u = self._pair("x", x, "u", u)
        return u - jnp.vdot(x, u) * x

    def expmap(self, x, u):
        r""":math:`\cos\|u\| x + \operatorname{sinc}\|u\|\, u`, normalised."""
        x, u = self._pair("x", x, "u", u)
        cos, sinc = cos_sinc(jnp.vdot(u, u))
        return self.projx(cos * x + sinc * u)

    def logmap(self, x, y):
        r""":math:`\theta / \sin\theta\ (y - \langle x, y\rangle x)` (a fixed direction at ``y = -x``)."""
        x, y = self._pair("x", x, "y", y)
        d = y - x
        w = d - jnp.vdot(x, d) * x  # proju(x, y), written through y - x: no cancellation near x
        sq = jnp.vdot(w, w)  # sin^2(theta)
        c = jnp.vdot(x, y)  # cos(theta)
        near = (sq < SERIES_BELOW) & (c > 0)
        tiny = jnp.finfo(x.dtype).eps ** 2
        antipodal = (sq <= tiny) & (c <= 0)
        general = ~near & ~antipodal
        s = jnp.sqrt(jnp.where(general, sq, 1.0))
        factor = jnp.where(
            near,
            1.0 + sq / 6.0 + 3.0 * sq * sq / 40.0,  # arcsin(s) / s in s^2
            jnp.arctan2(s, c) / s,
        )
        # cut locus: pi times the unit tangent towards the axis least aligned with x
        k = jnp.argmin(jnp.abs(x))
        e = jnp.zeros_like(x).at[k].set(1.0) - x[k] * x
        e = e / jnp.sqrt(jnp.maximum(jnp.vdot(e, e), 0.25))  # |e|^2 = 1 - x_k^2 >= 1/2
        return jnp.where(antipodal, jnp.asarray(math.pi, x.dtype) * e, factor * w).astype(x.dtype)

    def dist(self, x, y):
        r""":math:`2 \operatorname{atan2}(\|x - y\|, \|x + y\|)`, in :math:`[0, \pi]`."""
        x, y = self._pair("x", x, "y", y)
        return 2.0 * jnp.arctan2(safe_norm(x - y), safe_norm(x + y))

    def belongs(self, x, atol=1e-5):
        """``| |x| - 1 | <= atol`` (and finite)."""
        x = self._point("x", x)
        return jnp.abs(safe_norm(x) - 1.0) <= atol

    def squared_distances(self, x0, x1):
        r"""Squared geodesic distances :math:`C_{ij} = \theta_{ij}^2`, ``(n, m)``, from the
        chord lengths: :math:`\theta = 2\operatorname{atan2}(\|x_0^i - x_1^j\|, \|x_0^i + x_1^j\|)`."""
        from flowjax_fm.couplings._base import squared_distances  # couplings import manifolds

        x0, x1 = self._batches(x0, x1)
        chord = lambda sq: jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)  # safe sqrt
        minus, plus = squared_distances(x0, x1), squared_distances(x0, -x1)
        return (2.0 * jnp.arctan2(chord(minus), chord(plus))) ** 2

    def random_uniform(self, key, n, dim, dtype=jnp.float32):
        """``n`` uniform points on :math:`S^{dim-1}` (normalised standard normals), ``(n, dim)``.

        Raises:
          ValueError: ``n < 1`` or ``dim < 2`` (the sphere of ``R^1`` is two points), or a
            dtype that is not floating.

        Examples:
          >>> import jax, jax.numpy as jnp
          >>> x = Sphere().random_uniform(jax.random.key(0), 4, 3)
          >>> x.shape, bool(jnp.allclose(jnp.linalg.norm(x, axis=1), 1.0))
          ((4, 3), True)
        """
        n, dim = check_int("n", n, 1), check_int("dim", dim, 2)
        z = jax.random.normal(key, (n, dim), float_dtype(dtype))
        return jax.vmap(self.projx)(z)
