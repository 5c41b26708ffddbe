"""Manifolds, the geodesic path and the geodesic OT cost (Riemannian flow matching)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment

import flowjax_fm as fm

M = fm.manifolds
TWO_PI = 2.0 * math.pi
MANIFOLDS = {
    "sphere2": (M.Sphere(), 2),
    "sphere5": (M.Sphere(), 5),
    "torus2": (M.FlatTorus(), 2),
    "euclidean": (M.Euclidean(), 3),
}
NAMES = sorted(MANIFOLDS)
FEW = ["euclidean", "sphere5", "torus2"]  # where the circle (sphere2) adds nothing new


def _points(name, n, seed):
    """``n`` points of the manifold (a normal cloud for Euclidean space)."""
    manifold, dim = MANIFOLDS[name]
    key = jax.random.key(seed)
    if isinstance(manifold, M.Euclidean):
        return jax.random.normal(key, (n, dim))
    return manifold.random_uniform(key, n, dim)


def _pairs(name, n=16, seed=0):
    return _points(name, n, seed), _points(name, n, seed + 100)


def _tangents(name, x, scale, seed):
    """Tangent vectors at the rows of ``x`` of norm below ``scale`` (inside the injectivity
    radius for scale < pi on the sphere, per coordinate on the torus)."""
    manifold, _ = MANIFOLDS[name]
    z = jax.random.uniform(jax.random.key(seed), x.shape, minval=-1.0, maxval=1.0)
    u = jax.vmap(manifold.proju)(x, z)
    norm = jnp.linalg.norm(u, axis=1, keepdims=True)
    return scale * u / jnp.maximum(norm, 1.0)


def _close(name, a, b, atol):
    """``a`` and ``b`` agree as points (the torus compares through its wrapped distance)."""
    manifold, _ = MANIFOLDS[name]
    if isinstance(manifold, M.FlatTorus):
        gap = jax.jit(jax.vmap(manifold.dist))(a, b)
        assert float(jnp.max(gap)) <= atol, float(jnp.max(gap))
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)


# -- the maps ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FEW)
def test_draws_lie_on_the_manifold(name):
    manifold, dim = MANIFOLDS[name]

    @jax.jit
    def run():
        x = _points(name, 64, 0)
        w = manifold.random_wrapped_normal(jax.random.key(1), 64, manifold.projx(jnp.ones(dim)), 0.5)
        # projx lands on the manifold from anywhere, and is idempotent there
        on = jax.vmap(manifold.projx)(3.0 * jax.random.normal(jax.random.key(2), (64, dim)))
        belongs = jax.vmap(manifold.belongs)
        tight = jax.vmap(lambda p: manifold.belongs(p, 1e-6))(on)
        return w, belongs(x), belongs(w), tight, on, jax.vmap(manifold.projx)(on)

    w, x_on, w_on, on_on, on, again = run()
    assert w.shape == (64, dim) and w.dtype == jnp.float32
    assert bool(jnp.all(x_on)) and bool(jnp.all(w_on)) and bool(jnp.all(on_on))
    np.testing.assert_allclose(again, on, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_expmap_and_logmap_are_inverse(name):
    manifold, _ = MANIFOLDS[name]
    exp, log = jax.vmap(manifold.expmap), jax.vmap(manifold.logmap)

    @jax.jit
    def run():
        x, y = _pairs(name)
        big, small = _tangents(name, x, 2.5, seed=3), _tangents(name, x, 1e-4, seed=4)
        return y, exp(x, log(x, y)), big, log(x, exp(x, big)), small, log(x, exp(x, small))

    y, y_back, big, big_back, small, small_back = run()
    # exp_x(log_x y) = y for every pair (the sphere's draws are not antipodal)
    _close(name, y_back, y, 2e-5)
    # log_x(exp_x u) = u inside the injectivity radius, small steps too (the series branches)
    np.testing.assert_allclose(big_back, big, atol=5e-5)
    np.testing.assert_allclose(small_back, small, atol=1e-6)


@pytest.mark.parametrize("name", FEW)
def test_dist_is_the_norm_of_logmap_and_symmetric(name):
    manifold, _ = MANIFOLDS[name]
    dist = jax.vmap(manifold.dist)

    @jax.jit
    def run():
        x, y = _pairs(name)
        pairwise = jax.vmap(lambda a: jax.vmap(lambda b: manifold.dist(a, b) ** 2)(y))(x)
        norm = jnp.linalg.norm(jax.vmap(manifold.logmap)(x, y), axis=1)
        return dist(x, y), norm, dist(y, x), dist(x, x), manifold.squared_distances(x, y), pairwise

    d, norm, d_back, d_self, cost, pairwise = run()
    np.testing.assert_allclose(d, norm, atol=2e-5)
    np.testing.assert_allclose(d, d_back, atol=2e-5)
    np.testing.assert_allclose(d_self, 0.0, atol=1e-6)
    # the batched cost matrix is the same distance, squared
    np.testing.assert_allclose(cost, pairwise, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FEW)
def test_proju_is_idempotent_and_tangent(name):
    manifold, _ = MANIFOLDS[name]
    proju = jax.vmap(manifold.proju)

    @jax.jit
    def run():
        x, y = _pairs(name)
        u = proju(x, jax.random.normal(jax.random.key(5), x.shape))
        v = jax.vmap(manifold.logmap)(x, y)  # logmap is tangent
        return x, u, proju(x, u), v, proju(x, v)

    x, u, uu, v, vv = run()
    np.testing.assert_allclose(uu, u, atol=1e-6)
    np.testing.assert_allclose(vv, v, atol=1e-5)
    if isinstance(manifold, M.Sphere):
        np.testing.assert_allclose(jnp.sum(x * u, axis=1), 0.0, atol=1e-6)


def test_sphere_closed_forms():
    S = M.Sphere()
    x, y = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(S.logmap(x, y), [0.0, math.pi / 2, 0.0], atol=1e-6)
    np.testing.assert_allclose(S.dist(x, -x), math.pi, atol=1e-6)
    # tiny angles: the distance keeps its digits (arccos of the dot product would give 0)
    eps = 1e-4
    z = jnp.array([math.cos(eps), math.sin(eps), 0.0])
    np.testing.assert_allclose(S.dist(x, z), eps, rtol=1e-3)
    np.testing.assert_allclose(S.logmap(x, z), [0.0, eps, 0.0], rtol=1e-3, atol=1e-9)
    # the antipode: a tangent vector of length pi that exp maps back onto -x
    for p in (x, jnp.array([0.6, -0.8, 0.0]), jnp.array([0.0, 0.0, -1.0])):
        v = S.logmap(p, -p)
        np.testing.assert_allclose(jnp.linalg.norm(v), math.pi, atol=1e-5)
        np.testing.assert_allclose(jnp.dot(v, p), 0.0, atol=1e-6)
        np.testing.assert_allclose(S.expmap(p, v), -p, atol=1e-6)


def test_torus_wraps():
    T = M.FlatTorus()
    a, b = jnp.array([0.01]), jnp.array([TWO_PI - 0.01])
    np.testing.assert_allclose(T.dist(a, b), 0.02, atol=1e-5)
    np.testing.assert_allclose(T.logmap(a, b), [-0.02], atol=1e-5)
    np.testing.assert_allclose(T.logmap(b, a), [0.02], atol=1e-5)
    # projx wraps into [0, 2 pi), including values that round onto 2 pi
    got = T.projx(jnp.array([-0.5, TWO_PI + 0.5, 7 * TWO_PI + 1.0, -1e-9, TWO_PI]))
    np.testing.assert_allclose(got, [TWO_PI - 0.5, 0.5, 1.0, 0.0, 0.0], atol=2e-5)
    assert bool(jnp.all((got >= 0) & (got < TWO_PI)))
    # the geodesic from 0.1 to 6.2 runs through 0, not across the middle
    path = fm.paths.GeodesicPath(T)
    x0, x1 = jnp.array([0.1]), jnp.array([6.2])
    x_t, u_t = path.sample_and_target(x0, x1, jnp.float32(0.75))
    np.testing.assert_allclose(u_t, [6.2 - 0.1 - TWO_PI], atol=1e-5)
    np.testing.assert_allclose(x_t, [0.1 + 0.75 * (6.2 - 0.1 - TWO_PI) + TWO_PI], atol=1e-5)


# -- the geodesic path ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_geodesic_velocity_is_the_time_derivative_and_tangent(name):
    manifold, _ = MANIFOLDS[name]
    path = fm.paths.GeodesicPath(manifold)
    x0, x1 = _pairs(name, n=6)
    ts = jnp.array([0.0, 0.1, 0.5, 0.83, 1.0])
    # every (pair, t) combination in one batch
    x0, x1 = (jnp.repeat(a, len(ts), axis=0) for a in (x0, x1))
    tb = jnp.tile(ts, 6)
    h = 1e-2

    @jax.jit
    def run(x0, x1, tb):
        x_t, u_t = jax.vmap(path.sample_and_target)(x0, x1, tb)
        jvp = jax.vmap(lambda a, b, s: jax.jvp(lambda r: path.sample(a, b, r), (s,), (jnp.ones_like(s),))[1])(
            x0, x1, tb
        )
        # a central finite difference, taken in the manifold (log at x_t of the neighbours)
        lo, hi = (jax.vmap(path.sample)(x0, x1, tb + s) for s in (-h, h))
        fd = (jax.vmap(manifold.logmap)(x_t, hi) - jax.vmap(manifold.logmap)(x_t, lo)) / (2 * h)
        return dict(
            x_t=x_t, u_t=u_t, sample=jax.vmap(path.sample)(x0, x1, tb),
            target=jax.vmap(path.target_velocity)(x0, x1, tb), jvp=jvp, fd=fd,
            on=jax.vmap(manifold.belongs)(x_t), tangent=jax.vmap(manifold.proju)(x_t, u_t),
            speed=jnp.linalg.norm(u_t, axis=1), dist=jax.vmap(manifold.dist)(x0, x1),
        )

    r = run(x0, x1, tb)
    u_t = r["u_t"]
    np.testing.assert_allclose(r["sample"], r["x_t"], atol=1e-6)
    np.testing.assert_allclose(r["target"], u_t, atol=1e-6)
    np.testing.assert_allclose(u_t, r["jvp"], atol=1e-5)  # jax.jvp of sample in t
    np.testing.assert_allclose(u_t, r["fd"], atol=2e-3 * (1.0 + float(jnp.max(jnp.abs(u_t)))))
    # on the manifold, tangent there, at constant speed d(x0, x1)
    assert bool(jnp.all(r["on"]))
    np.testing.assert_allclose(r["tangent"], u_t, atol=1e-5)
    np.testing.assert_allclose(r["speed"], r["dist"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_geodesic_endpoints_are_exact(name):
    manifold, _ = MANIFOLDS[name]
    path = fm.paths.GeodesicPath(manifold)
    x0, x1 = _pairs(name, n=32, seed=7)
    at = jax.jit(lambda t: jax.vmap(path.sample)(x0, x1, jnp.full(32, t, jnp.float32)))
    _close(name, at(0.0), x0, 1e-5)
    _close(name, at(1.0), x1, 1e-5)


def test_geodesic_euclidean_is_the_straight_path():
    x0, x1 = _pairs("euclidean")
    t = jnp.linspace(0.0, 1.0, 16)
    both = lambda path: jax.jit(jax.vmap(path.sample_and_target))(x0, x1, t)
    got, want = both(fm.paths.GeodesicPath(M.Euclidean())), both(fm.paths.CondOTPath())
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_geodesic_keeps_the_dtype(dtype):
    path = fm.paths.GeodesicPath(M.Sphere())
    x0, x1 = (a.astype(dtype) for a in _pairs("sphere5", n=1))
    x_t, u_t = jax.jit(path.sample_and_target)(x0[0], x1[0], jnp.asarray(0.3, dtype))
    assert x_t.dtype == dtype and u_t.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(x_t.astype(jnp.float32))))


# -- no NaN at the special points ------------------------------------------------------------------
def _unit(v):
    v = jnp.asarray(v, jnp.float32)
    return v / jnp.linalg.norm(v)


# pairs (x, y) at the special points of each manifold: identical, antipodal (on a coordinate
# axis too), and just off both; the torus at a half turn and across 0 / 2 pi
P3 = _unit([0.6, 0.0, 0.8])
SPECIAL = {
    "sphere": (M.Sphere(), [
        (P3, P3), (P3, -P3), (_unit([1.0, 0, 0]), _unit([-1.0, 0, 0])),
        (P3, _unit(P3 + jnp.array([1e-4, 0, 0]))), (P3, _unit(-P3 + jnp.array([0, 1e-4, 0]))),
    ]),
    "torus": (M.FlatTorus(), [
        (jnp.array([0.0, 3.0]), jnp.array([0.0, 3.0])),
        (jnp.array([0.0, 3.0]), jnp.array([math.pi, 3.0 + math.pi])),
        (jnp.array([1e-7, 0.0]), jnp.array([TWO_PI - 1e-6, 0.0])),
    ]),
    "euclidean": (M.Euclidean(), [(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0]))]),
}


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_no_nan_in_value_grad_or_jvp(case):
    manifold, pairs = SPECIAL[case]
    x = jnp.stack([a for a, _ in pairs])
    y = jnp.stack([b for _, b in pairs])
    path = fm.paths.GeodesicPath(manifold)
    ts = jnp.array([0.0, 0.3, 1.0])

    def one(x, y):
        zero, ones = jnp.zeros_like(x), jnp.ones_like(x)
        out = {}
        # the maps, their gradients and their jvps
        for fn, args in (
            (manifold.logmap, (x, y)),
            (manifold.expmap, (x, zero)),
            (manifold.dist, (x, y)),
            (manifold.proju, (x, y)),
            (manifold.projx, (x,)),
        ):
            grad = jax.grad(lambda *a, fn=fn: jnp.sum(fn(*a)), argnums=tuple(range(len(args))))(*args)
            out[fn.__name__] = (fn(*args), grad, jax.jvp(fn, args, tuple(ones for _ in args)))
        # the path at each t: value, target, gradients in x0, x1 and t, the jvp in t
        loss = lambda a, b, s: jnp.sum(jnp.concatenate(path.sample_and_target(a, b, s)) ** 2)
        out["path"] = jax.vmap(lambda t: (
            path.sample_and_target(x, y, t),
            jax.grad(loss, argnums=(0, 1, 2))(x, y, t),
            jax.jvp(lambda s: path.sample(x, y, s), (t,), (jnp.ones_like(t),)),
        ))(ts)
        return out, path.sample(x, y, jnp.float32(1.0)), manifold.projx(y)

    out, end, want = jax.jit(jax.vmap(one))(x, y)
    bad = [k for k, v in out.items() if not _finite(v)]
    assert not bad, bad
    # the endpoint t = 1 reaches y, antipodes included
    _close_any(manifold, end, want, 1e-5)
    # eagerly too (the antipodal logarithm of the sphere: a fixed direction, not NaN)
    assert _finite(manifold.logmap(x[-1], y[-1])) and _finite(manifold.logmap(x[0], -x[0]))


def _close_any(manifold, a, b, atol):
    gap = jax.jit(jax.vmap(manifold.dist))(a, b)
    assert float(jnp.max(gap)) <= atol, float(jnp.max(gap))


# -- transforms -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sphere5", "torus2", "euclidean"])
def test_jit_equals_eager_and_vmap_equals_loop(name):
    manifold, _ = MANIFOLDS[name]
    x, y = _pairs(name, n=3)
    u = jax.vmap(manifold.logmap)(x, y)
    calls = {
        "projx": (x,), "proju": (x, u), "expmap": (x, u), "logmap": (x, y), "dist": (x, y),
    }
    for method, args in calls.items():
        fn = getattr(manifold, method)
        batched = jax.jit(jax.vmap(fn))(*args)
        for i in range(3):
            np.testing.assert_allclose(batched[i], fn(*(a[i] for a in args)), rtol=1e-6, atol=1e-6)
    # the manifold and the path pass through jit as arguments (pytrees without leaves)
    path = fm.paths.GeodesicPath(manifold)
    t = jnp.linspace(0.0, 1.0, 3)
    out = jax.jit(lambda p, *a: jax.vmap(p.sample_and_target)(*a))(path, x, y, t)
    for i in range(3):
        xi, ui = path.sample_and_target(x[i], y[i], t[i])
        np.testing.assert_allclose(out[0][i], xi, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out[1][i], ui, rtol=1e-6, atol=1e-6)
    assert jax.tree.leaves(manifold) == [] and jax.tree.leaves(path) == []


def test_geodesic_path_trains_unchanged():
    # a plain-function model: x -> x W + t b (cheap to compile)
    apply = lambda p, x, t, cond=None: x @ p["w"] + t[:, None] * p["b"]
    params = {"w": jnp.zeros((3, 3)), "b": jnp.zeros(3)}
    opt = optax.adam(1e-2)
    step = fm.training.make_train_step(
        apply, optimizer=opt, path=fm.paths.GeodesicPath(M.Sphere()),
        coupling=fm.couplings.ExactOTCoupling(manifold=M.Sphere()),
    )
    state = fm.training.init_state(params, opt)
    S = M.Sphere()
    x0 = S.random_uniform(jax.random.key(0), 32, 3)
    x1 = S.random_wrapped_normal(jax.random.key(1), 32, jnp.array([0.0, 0.0, 1.0]), 0.2)
    losses = []
    step = jax.jit(step)
    for i in range(3):
        state, metrics = step(state, jax.random.key(i), x0, x1)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


# -- sources and the projected step -------------------------------------------------------------------
def test_sources_have_the_right_moments():
    S, T = M.Sphere(), M.FlatTorus()
    pole, scale = jnp.array([0.0, 0.0, 1.0]), 0.1

    @jax.jit
    def run():
        x = S.random_uniform(jax.random.key(0), 4000, 3)
        w = S.random_wrapped_normal(jax.random.key(1), 4000, pole, scale)
        d2 = jax.vmap(lambda p: S.dist(pole, p) ** 2)(w)
        wt = T.random_wrapped_normal(jax.random.key(2), 4000, jnp.zeros(2), 0.3)
        lt = jax.vmap(lambda p: T.logmap(jnp.zeros(2), p))(wt)
        e = M.Euclidean().random_wrapped_normal(jax.random.key(3), 4000, jnp.ones(2), 2.0)
        return x, d2, lt, e

    x, d2, lt, e = run()
    # uniform on S^2: mean 0, each coordinate of variance 1/3 (standard error ~ 0.009)
    np.testing.assert_allclose(jnp.mean(x, axis=0), 0.0, atol=0.04)
    np.testing.assert_allclose(jnp.mean(x**2, axis=0), 1.0 / 3.0, atol=0.03)
    # a narrow wrapped normal on S^2: d(mean, x)^2 ~ scale^2 chi^2_2, mean 2 scale^2 (SE 1.6%)
    np.testing.assert_allclose(jnp.mean(d2), 2 * scale**2, rtol=0.08)
    # the torus wrapped normal around 0: wrapped coordinates of std scale (SE 1.1%)
    np.testing.assert_allclose(jnp.std(lt, axis=0), 0.3, rtol=0.06)
    # Euclidean: the normal; no uniform
    np.testing.assert_allclose(jnp.mean(e, axis=0), 1.0, atol=0.12)
    np.testing.assert_allclose(jnp.std(e, axis=0), 2.0, rtol=0.06)
    with pytest.raises(ValueError, match="no uniform distribution"):
        M.Euclidean().random_uniform(jax.random.key(0), 4, 2)


@pytest.mark.parametrize("name", NAMES)
def test_project_step_stays_on_the_manifold(name):
    manifold, _ = MANIFOLDS[name]
    step = fm.manifolds.project_step

    @jax.jit
    def run():
        x = _points(name, 16, 0)
        v = 3.0 * jax.random.normal(jax.random.key(1), x.shape)
        on = [jax.vmap(manifold.belongs)(step(manifold, x, v, dt, retraction=retraction))
              for dt in (0.1, jnp.linspace(0.0, 1.0, 16)) for retraction in ("expmap", "projx")]
        # both retractions agree to second order in dt
        a = step(manifold, x, v, 1e-2, retraction="expmap")
        b = step(manifold, x, v, 1e-2, retraction="projx")
        return on, jnp.max(jax.vmap(manifold.dist)(a, b))

    on, gap = run()
    assert all(bool(jnp.all(o)) for o in on)
    assert float(gap) < 50 * 1e-2**2


# -- the geodesic OT cost ------------------------------------------------------------------------------
def _wrapped_cost(x0, x1):
    diff = np.asarray(x0, np.float64)[:, None, :] - np.asarray(x1, np.float64)[None, :, :]
    diff = np.mod(diff + np.pi, 2 * np.pi) - np.pi
    return (diff**2).sum(-1)


def test_exact_ot_on_the_torus_uses_the_wrapped_distance():
    C = fm.couplings
    # a constructed pair where the costs disagree: Euclidean swaps, wrapped keeps
    x0 = jnp.array([[0.1, 1.0], [3.0, 1.0]])
    x1 = jnp.array([[6.2, 1.0], [3.3, 1.0]])
    key = jax.random.key(0)
    assert C.ExactOTCoupling()(key, x0, x1).target.tolist() == [1, 0]
    assert C.ExactOTCoupling(manifold=M.FlatTorus())(key, x0, x1).target.tolist() == [0, 1]
    # random clouds against scipy on the wrapped cost (in float64)
    T = M.FlatTorus()
    x0 = T.random_uniform(jax.random.key(1), 64, 2)
    x1 = T.random_wrapped_normal(jax.random.key(2), 64, jnp.array([0.2, 6.0]), 0.7)
    pairing = jax.jit(C.ExactOTCoupling(manifold=T))(key, x0, x1)
    cost = _wrapped_cost(x0, x1)
    rows, cols = linear_sum_assignment(cost)
    got = cost[np.asarray(pairing.source), np.asarray(pairing.target)].sum()
    np.testing.assert_allclose(got, cost[rows, cols].sum(), rtol=1e-5)
    assert sorted(np.asarray(pairing.target).tolist()) == list(range(64))
    euclid = jax.jit(C.ExactOTCoupling())(key, x0, x1)
    assert cost[np.asarray(euclid.source), np.asarray(euclid.target)].sum() > got * 1.05


def test_exact_ot_on_the_sphere_uses_the_angle():
    S = M.Sphere()
    x0 = S.random_uniform(jax.random.key(3), 48, 3)
    x1 = S.random_uniform(jax.random.key(4), 48, 3)
    cost = np.arccos(np.clip(np.asarray(x0, np.float64) @ np.asarray(x1, np.float64).T, -1, 1)) ** 2
    pairing = jax.jit(fm.couplings.ExactOTCoupling(manifold=S))(jax.random.key(0), x0, x1)
    rows, cols = linear_sum_assignment(cost)
    got = cost[np.asarray(pairing.source), np.asarray(pairing.target)].sum()
    np.testing.assert_allclose(got, cost[rows, cols].sum(), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(S.squared_distances)(x0, x1), cost, rtol=1e-5, atol=2e-5)


def test_default_cost_is_unchanged():
    C = fm.couplings
    x0, x1 = _pairs("euclidean", n=12)
    plain = C.squared_distances(x0, x1)
    for coupling in (C.ExactOTCoupling(), C.ExactOTCoupling(manifold=M.Euclidean())):
        np.testing.assert_array_equal(coupling.cost(x0, x1), plain)
    assert repr(C.ExactOTCoupling()) == "ExactOTCoupling(method='auto', cond_weight=None)"
    assert "manifold=FlatTorus()" in repr(C.ExactOTCoupling(manifold=M.FlatTorus()))
    assert "manifold" not in repr(C.SinkhornCoupling())


def test_sinkhorn_on_the_torus_rounds_to_the_wrapped_optimum():
    T = M.FlatTorus()
    x0 = jnp.array([[0.1, 1.0], [3.0, 1.0]])
    x1 = jnp.array([[6.2, 1.0], [3.3, 1.0]])
    coupling = fm.couplings.SinkhornCoupling(epsilon=0.01, sampling="rounded", manifold=T)
    assert coupling(jax.random.key(0), x0, x1).target.tolist() == [0, 1]
    plan = coupling.plan(x0, x1)
    np.testing.assert_allclose(plan, [[0.5, 0.0], [0.0, 0.5]], atol=1e-4)
