"""Contract suite: every path passes the same checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm

P = fm.paths
ALL_PATHS = {
    "condot": P.CondOTPath(sigma_min=0.0),
    "condot_smin": P.CondOTPath(sigma_min=0.1),
    "gaussian": P.GaussianPath(sigma=0.1),
    "bridge": P.BrownianBridgePath(sigma=1.0),
    "vp": P.VPPath(),
    "affine_condot": P.AffinePath(P.CondOTSchedule()),
    "affine_poly": P.AffinePath(P.PolynomialSchedule(3.0)),
    "affine_cos": P.AffinePath(P.CosineSchedule()),
    "affine_vp": P.AffinePath(P.VPSchedule(0.1, 20.0)),
    "affine_linvp": P.AffinePath(P.LinearVPSchedule()),
    "geodesic_euclidean": P.GeodesicPath(fm.manifolds.Euclidean()),  # sphere / torus: test_manifolds.py
}
EVENT_SHAPES = [(3,), (2, 4, 1)]
# hyperparameter leaf to perturb for the no-retrace check
PERTURB = {
    "condot_smin": lambda p: P.CondOTPath(sigma_min=0.2),
    "gaussian": lambda p: P.GaussianPath(sigma=0.3),
    "bridge": lambda p: P.BrownianBridgePath(sigma=0.5),
    "affine_poly": lambda p: P.AffinePath(P.PolynomialSchedule(2.0)),
    "affine_vp": lambda p: P.AffinePath(P.VPSchedule(0.2, 10.0)),
}


def _example(shape, seed=0, dtype=jnp.float32):
    k0, k1, k2 = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(k0, shape, dtype),
        jax.random.normal(k1, shape, dtype) + 2.0,
        jax.random.normal(k2, shape, dtype),
    )


@pytest.mark.parametrize("shape", EVENT_SHAPES)
@pytest.mark.parametrize("name", sorted(ALL_PATHS))
@pytest.mark.parametrize("t", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_target_is_time_derivative_of_sample(name, shape, t):
    path = ALL_PATHS[name]
    x0, x1, eps = _example(shape)
    t = jnp.float32(t)
    _, dxdt = jax.jvp(lambda s: path.sample(x0, x1, s, eps), (t,), (jnp.ones_like(t),))
    u = path.target_velocity(x0, x1, t, eps)
    np.testing.assert_allclose(u, dxdt, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name", sorted(ALL_PATHS))
def test_boundary_values(name):
    path = ALL_PATHS[name]
    x0, x1, eps = _example((5,))
    xa = path.sample(x0, x1, jnp.float32(0.0), eps)
    xb = path.sample(x0, x1, jnp.float32(1.0), eps)
    smin = getattr(path, "sigma_min", 0.0)
    expected0 = {
        "gaussian": x0 + 0.1 * eps,
        "affine_vp": x0 * jnp.sqrt(1 - jnp.exp(-(0.1 + 20.0) / 2)) + x1 * jnp.exp(-(0.1 + 20.0) / 4),
    }.get(name, x0)
    expected1 = {"gaussian": x1 + 0.1 * eps}.get(name, x1 + smin * x0)
    np.testing.assert_allclose(xa, expected0, atol=1e-5)
    np.testing.assert_allclose(xb, expected1, atol=1e-5)
    for t in (0.0, 1.0):  # targets finite at both ends (bridge and VP are guarded)
        assert jnp.all(jnp.isfinite(path.target_velocity(x0, x1, jnp.float32(t), eps)))
        g = jax.grad(lambda s: path.target_velocity(x0, x1, s, eps).sum())(jnp.float32(t))
        assert jnp.isfinite(g)


@pytest.mark.parametrize("name", sorted(ALL_PATHS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_kept(name, dtype):
    path = ALL_PATHS[name]
    x0, x1, eps = (a.astype(dtype) for a in _example((4,)))
    t = jnp.asarray(0.3, dtype)
    assert path.sample(x0, x1, t, eps).dtype == dtype
    assert path.target_velocity(x0, x1, t, eps).dtype == dtype


@pytest.mark.parametrize("name", sorted(ALL_PATHS))
def test_jit_equals_eager_and_vmap_equals_loop(name):
    path = ALL_PATHS[name]
    b = 6
    x0, x1, eps = _example((b, 3))
    t = jnp.linspace(0.0, 1.0, b)
    batched = jax.jit(jax.vmap(path.sample_and_target))(x0, x1, t, eps)
    for i in range(b):
        xi, ui = path.sample_and_target(x0[i], x1[i], t[i], eps[i])
        np.testing.assert_allclose(batched[0][i], xi, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(batched[1][i], ui, rtol=1e-6, atol=1e-6)
    # the path itself passes through jit as an argument (it is a pytree)
    out = jax.jit(lambda p, *a: jax.vmap(p.sample)(*a))(path, x0, x1, t, eps)
    np.testing.assert_allclose(out, batched[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PERTURB))
def test_changing_float_hyperparameter_does_not_retrace(name):
    traces = []

    @jax.jit
    def f(path, x0, x1, t, eps):
        traces.append(1)
        return path.sample_and_target(x0, x1, t, eps)

    x0, x1, eps = _example((3,))
    f(ALL_PATHS[name], x0, x1, jnp.float32(0.4), eps)
    out = f(PERTURB[name](None), x0, x1, jnp.float32(0.4), eps)
    assert len(traces) == 1
    ref = PERTURB[name](None).sample_and_target(x0, x1, jnp.float32(0.4), eps)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["condot", "condot_smin", "vp", "affine_poly", "affine_cos", "affine_linvp"])
def test_affine_conversions_round_trip(name):
    path = ALL_PATHS[name]
    x0, x1, _ = _example((4, 3))
    t = jnp.array([0.1, 0.4, 0.6, 0.9])
    x_t, u_t = jax.vmap(path.sample_and_target)(x0, x1, t)
    # the true conditional velocity converts to the true x1 and x0
    np.testing.assert_allclose(path.velocity_to_x1(u_t, x_t, t), x1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(path.velocity_to_x0(u_t, x_t, t), x0, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(path.x1_to_velocity(x1, x_t, t), u_t, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(path.x0_to_velocity(x0, x_t, t), u_t, rtol=1e-4, atol=1e-4)
    score = path.velocity_to_score(u_t, x_t, t)
    np.testing.assert_allclose(path.score_to_velocity(score, x_t, t), u_t, rtol=1e-4, atol=1e-4)
    # per-example form agrees with the batched form
    np.testing.assert_allclose(
        path.velocity_to_x1(u_t[1], x_t[1], t[1]), x1[1], rtol=1e-4, atol=1e-4
    )


def test_score_matches_gaussian_closed_form():
    # x0 ~ N(0, I), x1 = m fixed  =>  x_t ~ N(alpha m, sigma^2 I): score = -(x - alpha m) / sigma^2
    path = P.CondOTPath()
    m = jnp.array([1.0, -2.0])
    t = jnp.float32(0.3)
    x = jnp.array([0.5, 0.1])
    a, s, _, _ = path.schedule(t)
    u = path.x1_to_velocity(m, x, t)
    np.testing.assert_allclose(path.velocity_to_score(u, x, t), -(x - a * m) / s**2, rtol=1e-5)


def test_bad_input():
    path = P.GaussianPath()
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match=r"\(3,\) and \(4,\)"):
        path.sample(x, jnp.zeros(4), jnp.float32(0.5), x)
    with pytest.raises(ValueError, match="scalar"):
        path.sample(x, x, jnp.zeros(2), x)
    with pytest.raises(ValueError, match="stochastic"):
        path.sample(x, x, jnp.float32(0.5))
    with pytest.raises(ValueError, match="floating"):
        P.CondOTPath().sample(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32), jnp.float32(0.5))
    with pytest.raises(ValueError, match="unknown path"):
        P.get_path("straight")
