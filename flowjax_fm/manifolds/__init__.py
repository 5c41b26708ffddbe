r"""Riemannian manifolds for flow matching on curved spaces: the sphere, the flat torus, R^d.

A manifold gives the maps of Riemannian flow matching (Chen & Lipman 2024) for **one point**
(batch with ``jax.vmap``): ``projx(x)``, ``proju(x, u)``, ``expmap(x, u)``, ``logmap(x, y)``,
``dist(x, y)``, ``belongs(x, atol)``; batched helpers are ``squared_distances(x0, x1)`` (the
geodesic OT cost), the sources ``random_uniform(key, n, dim)`` and
``random_wrapped_normal(key, n, mean, scale)``, and :func:`project_step` (one projected step
of a manifold ODE solver). Train on a manifold with
``fm.paths.GeodesicPath(M)``, :math:`x_t = \exp_{x_0}(t \log_{x_0} x_1)`, and pair with
``fm.couplings.ExactOTCoupling(manifold=M)``.
"""

from flowjax_fm.manifolds._base import AbstractManifold, project_step
from flowjax_fm.manifolds._euclidean import Euclidean
from flowjax_fm.manifolds._sphere import Sphere
from flowjax_fm.manifolds._torus import FlatTorus

__all__ = [
    "AbstractManifold",
    "Euclidean",
    "FlatTorus",
    "Sphere",
    "project_step",
]
