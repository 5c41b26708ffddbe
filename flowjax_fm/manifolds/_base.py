r"""The manifold interface of Riemannian flow matching, and the safe scalar functions it uses.

A manifold :math:`\mathcal M` is embedded in an ambient space (points are arrays there) and
provides the maps a geodesic flow needs: the projection onto :math:`\mathcal M`, the projection
onto a tangent space, the exponential and logarithm maps and the geodesic distance.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import as_floating, check_batched, check_choice, check_int, check_real

__all__ = ["AbstractManifold", "project_step"]

# Below this squared norm the series of cos(sqrt(s)), sin(sqrt(s)) / sqrt(s) and
# arcsin(sqrt(s)) / sqrt(s) replace the closed forms: their first dropped term is below 1e-14
# there, and a series in s (not in sqrt(s)) has finite derivatives of every order at s = 0.
SERIES_BELOW = 1e-4


def safe_norm(v: jax.Array) -> jax.Array:
    r""":math:`\|v\|` over all axes, with a zero (not NaN) derivative at :math:`v = 0`."""
    sq = jnp.sum(v * v)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def cos_sinc(sq: jax.Array) -> tuple[jax.Array, jax.Array]:
    r""":math:`(\cos\theta, \sin\theta / \theta)` at :math:`\theta = \sqrt{sq}`, smooth at ``sq = 0``.

    The double-``where`` keeps both the value and every derivative finite: the closed forms
    never see the small ``sq`` that the series handle.
    """
    small = sq < SERIES_BELOW
    theta = jnp.sqrt(jnp.where(small, 1.0, sq))
    cos = jnp.where(small, 1.0 - sq / 2.0 + sq * sq / 24.0, jnp.cos(theta))
    sinc = jnp.where(small, 1.0 - sq / 6.0 + sq * sq / 120.0, jnp.sin(theta) / theta)
    return cos, sinc


def float_dtype(dtype) -> jnp.dtype:
    """``dtype`` as a NumPy dtype if it is floating; a ValueError naming it if not."""
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (jnp.float32, ...), got {dtype!r}")
    return resolved


class AbstractManifold(abc.ABC):
    r"""A Riemannian manifold :math:`\mathcal M` embedded in an ambient space.

    Every method except the ``random_*`` draws and :meth:`squared_distances` takes **one
    point** (one example; batch with ``jax.vmap``):

    * :meth:`projx` ``(x)``: the point of :math:`\mathcal M` nearest ``x``;
    * :meth:`proju` ``(x, u)``: ``u`` projected onto the tangent space :math:`T_x\mathcal M`;
    * :meth:`expmap` ``(x, u)``: :math:`\exp_x(u)`, the end of the geodesic from ``x`` with
      initial velocity ``u`` run for unit time;
    * :meth:`logmap` ``(x, y)``: :math:`\log_x(y)`, the tangent vector with
      :math:`\exp_x(\log_x y) = y` of least norm;
    * :meth:`dist` ``(x, y)``: the geodesic distance :math:`d(x, y) = \|\log_x y\|`;
    * :meth:`belongs` ``(x, atol)``: whether ``x`` lies on :math:`\mathcal M`.

    They check shapes and dtypes at trace time (a ``ValueError`` quoting them) and keep the
    floating dtype of their input. Manifolds are frozen pytrees without leaves: pass them
    through ``jax.jit`` as arguments or close over them.

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries (Riemannian Flow Matching).
    """

    # -- the point shape -----------------------------------------------------------------
    def _check_shape(self, name: str, shape: tuple) -> None:  # noqa: B027 - a hook, any shape here
        """A ``ValueError`` quoting ``shape`` if it is not the shape of one point (any shape
        here; subclasses narrow it)."""

    def _point(self, name: str, x) -> jax.Array:
        """``x`` as a floating array, checked to be one point."""
        x = as_floating(name, x)
        self._check_shape(name, x.shape)
        return x

    def _pair(self, name_a: str, a, name_b: str, b) -> tuple[jax.Array, jax.Array]:
        a, b = self._point(name_a, a), self._point(name_b, b)
        if a.shape != b.shape:
            raise ValueError(
                f"{type(self).__name__}: {name_a} and {name_b} must have the same shape, got "
                f"{a.shape} and {b.shape}"
            )
        return a, b

    # -- the maps --------------------------------------------------------------------------
    @abc.abstractmethod
    def projx(self, x: jax.Array) -> jax.Array:
        """The point of the manifold nearest ``x`` (one point)."""

    @abc.abstractmethod
    def proju(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """``u`` projected onto the tangent space at ``x`` (one point)."""

    @abc.abstractmethod
    def expmap(self, x: jax.Array, u: jax.Array) -> jax.Array:
        r""":math:`\exp_x(u)` (one point)."""

    @abc.abstractmethod
    def logmap(self, x: jax.Array, y: jax.Array) -> jax.Array:
        r""":math:`\log_x(y)` (one point)."""

    def dist(self, x: jax.Array, y: jax.Array) -> jax.Array:
        r"""Geodesic distance :math:`\|\log_x y\|`, shape ``()``, with a zero (not NaN)
        derivative at ``x = y``."""
        x, y = self._pair("x", x, "y", y)
        return safe_norm(self.logmap(x, y))

    @abc.abstractmethod
    def belongs(self, x: jax.Array, atol: float = 1e-5) -> jax.Array:
        """Whether ``x`` lies on the manifold to ``atol`` (a ``()`` bool array; one point)."""

    # -- batched -----------------------------------------------------------------------------
    def squared_distances(self, x0: jax.Array, x1: jax.Array) -> jax.Array:
        r"""Squared geodesic distances between two batches, :math:`C_{ij} = d(x_0^i, x_1^j)^2`.

        Args:
          x0: points ``(n, *point)``.
          x1: points ``(m, *point)``.

        Returns:
          ``(n, m)``, the cost matrix of a geodesic OT coupling.

        Raises:
          ValueError: if ``x0`` / ``x1`` are not batches of points of this manifold of the
            same shape.
        """
        x0, x1 = self._batches(x0, x1)
        row = lambda a: jax.vmap(lambda b: self.dist(a, b) ** 2)(x1)
        return jax.vmap(row)(x0)

    def _batches(self, x0, x1) -> tuple[jax.Array, jax.Array]:
        name = type(self).__name__
        x0, x1 = as_floating("x0", x0), as_floating("x1", x1)
        for label, x in (("x0", x0), ("x1", x1)):
            if x.ndim < 1:
                raise ValueError(
                    f"{name}: {label} must be a batch of points (B, *point), got shape {x.shape}"
                )
        if x0.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"{name}: x0 and x1 must be batches of points of the same shape, got {x0.shape} "
                f"and {x1.shape}"
            )
        self._check_shape("a row of x0", x0.shape[1:])
        return x0, x1

    # -- sources -------------------------------------------------------------------------------
    def random_uniform(self, key: jax.Array, n: int, dim: int, dtype=jnp.float32) -> jax.Array:
        """``n`` points drawn uniformly from the manifold of ambient dimension ``dim``."""
        raise NotImplementedError  # pragma: no cover - every concrete manifold overrides it

    def random_wrapped_normal(self, key: jax.Array, n: int, mean: jax.Array, scale) -> jax.Array:
        r"""Wrapped normal draws :math:`\exp_\mu(\mathrm{proju}(\mu, s\,z))`, :math:`z \sim N(0, I)`.

        The tangent normal at ``mean`` (projected onto :math:`\mathcal M` first) of standard
        deviation ``scale``, pushed onto the manifold by the exponential map.

        Args:
          key: a ``jax.random.key``.
          n: the number of points, an int ``>= 1``.
          mean: one point (it is projected onto the manifold).
          scale: the standard deviation, a finite number ``>= 0`` or an array of them that
            broadcasts to ``mean``'s shape.

        Returns:
          ``(n, *mean.shape)`` points on the manifold, of ``mean``'s floating dtype.

        Raises:
          ValueError: a bad ``n``, ``mean`` not one point of this manifold, or a ``scale``
            that is negative, not finite or does not broadcast to ``mean``.
        """
        n = check_int("n", n, 1)
        mean = self.projx(self._point("mean", mean))
        check_real("scale", scale, 0.0)
        scale_shape = np.shape(scale)
        try:
            np.broadcast_shapes(scale_shape, mean.shape)
        except ValueError:
            raise ValueError(
                f"scale must broadcast to mean's shape {mean.shape}, got shape {scale_shape}"
            ) from None
        scale = jnp.asarray(scale, mean.dtype)
        z = jax.random.normal(key, (n, *mean.shape), mean.dtype)
        one = lambda z: self.expmap(mean, self.proju(mean, scale * z))
        return jax.vmap(one)(z)


def project_step(
    manifold: AbstractManifold,
    x: jax.Array,
    v: jax.Array,
    dt,
    *,
    retraction: str = "expmap",
) -> jax.Array:
    r"""One projected Euler step on a manifold, for a batch: the building block of manifold ODE solvers.

    .. math::
       x' = R_x\big(\Delta t\, \mathrm{proju}(x, v)\big),\qquad
       R_x(u) = \exp_x(u)\ \ (\texttt{"expmap"})\quad\text{or}\quad
       R_x(u) = \mathrm{projx}(x + u)\ \ (\texttt{"projx"})

    The velocity is first made tangent, so a model whose output leaves the tangent space (or a
    point that drifted off the manifold by rounding) still gives a point on :math:`\mathcal M`.
    Both retractions agree with the exponential map to second order in :math:`\Delta t`; on
    the flat torus and Euclidean space they are the same map.

    Args:
      manifold: an :class:`AbstractManifold`.
      x: points ``(B, *point)`` on the manifold.
      v: velocities ``(B, *point)`` (projected onto the tangent spaces here).
      dt: the step, a scalar or ``(B,)`` (one per row).
      retraction: ``"expmap"`` (default) or ``"projx"``.

    Returns:
      ``(B, *point)``: the points after the step, on the manifold.

    Raises:
      TypeError: if ``manifold`` is not an :class:`AbstractManifold`.
      ValueError: ``x`` / ``v`` not equal-shaped batches of points, a ``dt`` that is neither a
        scalar nor ``(B,)``, or an unknown ``retraction``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flowjax_fm.manifolds import Sphere
      >>> x = jnp.array([[1.0, 0.0, 0.0]]); v = jnp.array([[5.0, jnp.pi / 2, 0.0]])
      >>> [round(float(c), 4) + 0.0 for c in project_step(Sphere(), x, v, 1.0)[0]]  # radial 5.0 dropped
      [0.0, 1.0, 0.0]

    References:
      Chen & Lipman 2024, Flow Matching on General Geometries.
    """
    if not isinstance(manifold, AbstractManifold):
        raise TypeError(
            "manifold must be an instance of fm.manifolds.AbstractManifold (e.g. "
            f"fm.manifolds.Sphere()), got {type(manifold).__name__}"
        )
    check_choice("retraction", retraction, ("expmap", "projx"))
    x, v = as_floating("x", x), as_floating("v", v)
    check_batched("x", x, min_ndim=1, what="(B, *point)")
    if x.shape != v.shape:
        raise ValueError(f"x and v must have the same shape, got {x.shape} and {v.shape}")
    manifold._check_shape("a row of x", x.shape[1:])
    dt = jnp.asarray(dt)
    if dt.shape not in ((), (x.shape[0],)):
        raise ValueError(f"dt must be a scalar or have shape ({x.shape[0]},), got shape {dt.shape}")
    dt = jnp.broadcast_to(dt, (x.shape[0],))

    def one(x, v, dt):
        u = (dt * manifold.proju(x, v)).astype(x.dtype)
        if retraction == "expmap":
            return manifold.expmap(x, u)
        return manifold.projx(x + u)

    return jax.vmap(one)(x, v, dt)
