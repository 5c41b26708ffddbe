"""Bad inputs of Riemannian flow matching: ``fm.manifolds``, ``fm.paths.GeodesicPath`` and the
``manifold=`` option of the OT couplings (shapes quoted, wrong kinds refused)."""

# ruff: noqa: E501  (a table: one case per line reads better than wrapped calls)
from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

MF, P, C = fm.manifolds, fm.paths, fm.couplings
S, T, E = MF.Sphere(), MF.FlatTorus(), MF.Euclidean()
KEY = jax.random.key(0)
V3, V2, ONE = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0]), jnp.float32(0.5)
B3 = jnp.tile(V3, (4, 1))
SPHERE_POINT = r"Sphere: {} must be one point of shape \(d,\) with d >= 2 .* got shape {}"

CASES = [
    # -- Sphere: one point (d,), d >= 2
    Case("manifolds.Sphere", "projx-batched", lambda: S.projx(B3), ValueError, SPHERE_POINT.format("x", r"\(4, 3\)")),
    Case("manifolds.Sphere", "projx-d=1", lambda: S.projx(jnp.ones(1)), ValueError, SPHERE_POINT.format("x", r"\(1,\)")),
    Case("manifolds.Sphere", "projx-scalar", lambda: S.projx(jnp.float32(1.0)), ValueError, SPHERE_POINT.format("x", r"\(\)")),
    Case("manifolds.Sphere", "proju-shapes", lambda: S.proju(V3, V2), ValueError, r"x and u must have the same shape, got \(3,\) and \(2,\)"),
    Case("manifolds.Sphere", "expmap-shapes", lambda: S.expmap(V3, jnp.zeros(4)), ValueError, r"x and u must have the same shape, got \(3,\) and \(4,\)"),
    Case("manifolds.Sphere", "logmap-shapes", lambda: S.logmap(V3, V2), ValueError, r"x and y must have the same shape, got \(3,\) and \(2,\)"),
    Case("manifolds.Sphere", "dist-batched", lambda: S.dist(B3, B3), ValueError, SPHERE_POINT.format("x", r"\(4, 3\)")),
    Case("manifolds.Sphere", "logmap-int", lambda: S.logmap(jnp.array([1, 0]), jnp.array([0, 1])), ValueError, r"x must be a floating-point array, got dtype int32 and shape \(2,\)"),
    Case("manifolds.Sphere", "belongs-d=1", lambda: S.belongs(jnp.ones(1)), ValueError, SPHERE_POINT.format("x", r"\(1,\)")),
    Case("manifolds.Sphere", "uniform-dim=1", lambda: S.random_uniform(KEY, 4, 1), ValueError, r"dim must be an int >= 2, got 1"),
    Case("manifolds.Sphere", "uniform-n=0", lambda: S.random_uniform(KEY, 0, 3), ValueError, r"n must be an int >= 1, got 0"),
    Case("manifolds.Sphere", "uniform-int-dtype", lambda: S.random_uniform(KEY, 4, 3, dtype=jnp.int32), ValueError, r"dtype must be a floating dtype"),
    Case("manifolds.Sphere", "wrapped-mean-batched", lambda: S.random_wrapped_normal(KEY, 4, B3, 0.1), ValueError, SPHERE_POINT.format("mean", r"\(4, 3\)")),
    Case("manifolds.Sphere", "wrapped-scale<0", lambda: S.random_wrapped_normal(KEY, 4, V3, -0.1), ValueError, r"scale must be a finite number in \[0, inf\), got -0.1"),
    Case("manifolds.Sphere", "wrapped-scale-shape", lambda: S.random_wrapped_normal(KEY, 4, V3, jnp.ones(2)), ValueError, r"scale must broadcast to mean's shape \(3,\), got shape \(2,\)"),
    Case("manifolds.Sphere", "squared_distances-rows", lambda: S.squared_distances(jnp.ones((4, 1)), jnp.ones((4, 1))), ValueError, SPHERE_POINT.format("a row of x0", r"\(1,\)")),
    Case("manifolds.Sphere", "squared_distances-shapes", lambda: S.squared_distances(B3, jnp.ones((4, 2))), ValueError, r"same shape, got \(4, 3\) and \(4, 2\)"),
    # -- FlatTorus and Euclidean: any point shape, equal shapes, floats
    Case("manifolds.FlatTorus", "logmap-shapes", lambda: T.logmap(V3, V2), ValueError, r"FlatTorus: x and y must have the same shape, got \(3,\) and \(2,\)"),
    Case("manifolds.FlatTorus", "expmap-int", lambda: T.expmap(jnp.zeros(2, jnp.int32), V2), ValueError, r"x must be a floating-point array, got dtype int32"),
    Case("manifolds.FlatTorus", "uniform-dim=0", lambda: T.random_uniform(KEY, 4, 0), ValueError, r"dim must be an int >= 1, got 0"),
    Case("manifolds.FlatTorus", "uniform-n=1.5", lambda: T.random_uniform(KEY, 1.5, 2), ValueError, r"n must be an int >= 1, got 1.5"),
    Case("manifolds.FlatTorus", "wrapped-scale=nan", lambda: T.random_wrapped_normal(KEY, 4, V2, float("nan")), ValueError, r"scale must be a finite number in \[0, inf\), got nan"),
    Case("manifolds.FlatTorus", "squared_distances-unbatched", lambda: T.squared_distances(jnp.float32(1.0), V2), ValueError, r"x0 must be a batch of points \(B, \*point\), got shape \(\)"),
    Case("manifolds.Euclidean", "dist-shapes", lambda: E.dist(V3, V2), ValueError, r"Euclidean: x and y must have the same shape, got \(3,\) and \(2,\)"),
    Case("manifolds.Euclidean", "uniform", lambda: E.random_uniform(KEY, 4, 2), ValueError, r"no uniform distribution.*random_wrapped_normal"),
    Case("manifolds.Euclidean", "wrapped-n=0", lambda: E.random_wrapped_normal(KEY, 0, V2, 1.0), ValueError, r"n must be an int >= 1, got 0"),
    # -- project_step
    Case("manifolds.project_step", "not-a-manifold", lambda: MF.project_step("sphere", B3, B3, 0.1), TypeError, r"manifold must be an instance of fm.manifolds.AbstractManifold .*got str"),
    Case("manifolds.project_step", "shapes", lambda: MF.project_step(S, B3, B3[:2], 0.1), ValueError, r"x and v must have the same shape, got \(4, 3\) and \(2, 3\)"),
    Case("manifolds.project_step", "dt-shape", lambda: MF.project_step(S, B3, B3, jnp.ones(3)), ValueError, r"dt must be a scalar or have shape \(4,\), got shape \(3,\)"),
    Case("manifolds.project_step", "retraction", lambda: MF.project_step(S, B3, B3, 0.1, retraction="exp"), ValueError, r"unknown retraction 'exp'; choose one of 'expmap', 'projx'"),
    Case("manifolds.project_step", "sphere-rows", lambda: MF.project_step(S, jnp.ones((4, 1)), jnp.ones((4, 1)), 0.1), ValueError, SPHERE_POINT.format("a row of x", r"\(1,\)")),
    Case("manifolds.project_step", "unbatched", lambda: MF.project_step(T, jnp.float32(1.0), jnp.float32(1.0), 0.1), ValueError, r"x must be batched with shape \(B, \*point\)"),
    # -- GeodesicPath
    Case("paths.GeodesicPath", "not-a-manifold", lambda: P.GeodesicPath("sphere"), TypeError, r"manifold must be an instance of fm.manifolds.AbstractManifold .*got str"),
    Case("paths.GeodesicPath", "a-path-as-manifold", lambda: P.GeodesicPath(P.CondOTPath()), TypeError, r"got CondOTPath"),
    Case("paths.GeodesicPath", "x0-x1-shapes", lambda: P.GeodesicPath(S).sample(V3, V2, ONE), ValueError, r"x0 and x1 must have the same shape, got \(3,\) and \(2,\)"),
    Case("paths.GeodesicPath", "t-batched", lambda: P.GeodesicPath(S).sample_and_target(V3, V3, jnp.zeros(2)), ValueError, r"t must be a scalar \(shape \(\)\), got shape \(2,\)"),
    Case("paths.GeodesicPath", "sphere-batched", lambda: P.GeodesicPath(S).target_velocity(B3, B3, ONE), ValueError, SPHERE_POINT.format("x", r"\(4, 3\)")),
    Case("paths.GeodesicPath", "int-points", lambda: P.GeodesicPath(T).sample(jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32), ONE), ValueError, r"x0 must be floating point, got dtype int32"),
    # -- the manifold option of the OT couplings
    Case("couplings.ExactOTCoupling", "manifold=str", lambda: C.ExactOTCoupling(manifold="torus"), TypeError, r"manifold must be None .* or an instance of fm.manifolds.AbstractManifold .*got str"),
    Case("couplings.ExactOTCoupling", "sphere-rows-(B,1)", lambda: C.ExactOTCoupling(manifold=S)(KEY, jnp.ones((4, 1)), jnp.ones((4, 1))), ValueError, SPHERE_POINT.format("a row of x0", r"\(1,\)")),
    Case("couplings.SinkhornCoupling", "manifold=class", lambda: C.SinkhornCoupling(manifold=MF.Sphere), TypeError, r"manifold must be None .*got ABCMeta"),
]

EXEMPT = {
    "manifolds.AbstractManifold": "an abstract base class (no constructor values); its methods are covered through Sphere, FlatTorus and Euclidean",
}
