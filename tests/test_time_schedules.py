"""Time schedules (issue 14, item 5): the shift, SD3's mode sampler, Flux's resolution shift,
fixed-step time grids and SD3's loss weightings, against NumPy / SciPy evaluations of the
formulas (diffusers' convention sigma = 1 - t translated to ours)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit

import flowjax_fm as fm
from flowjax_fm.losses._weighting import (
    LogitNormalWeight,
    cosmap_weight,
    logit_normal_weight,
    sigma_sqrt_weight,
)
from flowjax_fm.sampling._grids import time_grid
from flowjax_fm.time_sampling._schedules import MODE_SCALE_MAX

T = fm.time_sampling
U = np.linspace(0.0, 1.0, 1001)
SHIFTS = [0.2, 0.5, 1.0, 3.0, 10.0]


def _diffusers_shift(sigma, s):
    """diffusers' FlowMatchEulerDiscreteScheduler shift, in its sigma = 1 at noise convention."""
    return s * sigma / (1 + (s - 1) * sigma)


# --- shift_time -------------------------------------------------------------------------
@pytest.mark.parametrize("s", SHIFTS)
def test_shift_maps_uniform_times_as_the_formula_says(s):
    got = np.asarray(T.shift_time(jnp.asarray(U, jnp.float32), s), np.float64)
    want = U / (U + s * (1 - U))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # the same times as diffusers' shift of sigma = 1 - t
    np.testing.assert_allclose(got, 1 - _diffusers_shift(1 - U, s), rtol=2e-6, atol=2e-7)
    # a translation by -log s in logit space
    inner = slice(1, -1)
    np.testing.assert_allclose(logit(got[inner]), logit(U[inner]) - math.log(s), atol=1e-4)
    assert got[0] == 0.0 and got[-1] == 1.0  # endpoints fixed, exactly
    assert np.all(np.diff(got) > 0)  # strictly increasing
    back = T.shift_time(T.shift_time(jnp.asarray(U, jnp.float32), s), 1 / s)  # the inverse
    np.testing.assert_allclose(back, U, atol=2e-6)


def test_shift_identity_direction_and_worked_example():
    t = jnp.asarray(U, jnp.float32)
    np.testing.assert_allclose(T.shift_time(t, 1.0), t, atol=1e-7)  # s = 1: identity
    # diffusers: s = 3, sigma = 0.5 -> sigma' = 0.75; ours: t = 0.5 -> t' = 0.25 (towards noise)
    assert _diffusers_shift(0.5, 3.0) == 0.75
    assert float(T.shift_time(0.5, 3.0)) == 0.25
    assert np.all(np.asarray(T.shift_time(t, 3.0)) <= np.asarray(t))
    # the formula of the issue text, s t / (1 + (s - 1) t), is the shift by 1 / s (towards data)
    np.testing.assert_allclose(T.shift_time(t, 1 / 3.0), 3 * U / (1 + 2 * U), rtol=2e-6, atol=1e-7)


def test_shift_keeps_dtype_and_broadcasts_a_swept_shift():
    t = jnp.linspace(0, 1, 5, dtype=jnp.bfloat16)
    assert T.shift_time(t, 3.0).dtype == jnp.bfloat16
    out = T.shift_time(jnp.full((2, 3), 0.5), jnp.array([[1.0], [3.0]]))
    np.testing.assert_allclose(out, [[0.5] * 3, [0.25] * 3])
    f = jax.jit(jax.vmap(T.shift_time, in_axes=(None, 0)))
    np.testing.assert_allclose(f(jnp.array([0.5]), jnp.array([1.0, 3.0]))[:, 0], [0.5, 0.25])


# --- ModeTime ---------------------------------------------------------------------------
def _mode_inverse(x, s, iters=60):
    """The CDF of ModeTime(s): g^{-1}(x) for g(u) = u + s (u - sin^2(pi u / 2)), by bisection."""
    g = lambda u: u + s * (u - np.sin(0.5 * np.pi * u) ** 2)
    lo, hi = np.zeros_like(x), np.ones_like(x)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = g(mid) < x
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _mode_density(x, s):
    """1 / g'(g^{-1}(x)): the density the inverse-CDF construction implies."""
    u = _mode_inverse(x, s)
    return 1.0 / (1 + s - s * 0.5 * np.pi * np.sin(np.pi * u))


@pytest.mark.parametrize("s", [1.29, 0.5, -0.5, -1.0, MODE_SCALE_MAX])
def test_mode_time_law(s):
    n = 20000
    t = np.asarray(T.ModeTime(scale=s)(jax.random.key(7), n), np.float64)
    assert t.min() >= 0 and t.max() <= 1
    cdf = lambda x: _mode_inverse(np.asarray(x, np.float64), s)
    assert stats.kstest(t, cdf).pvalue > 1e-3
    # the histogram against the bin masses of the CDF (chi-square), and those masses against
    # the density 1 / g'(g^{-1}(t)) integrated over each bin (at the ends of the scale range the
    # density is infinite at t = 1/2 or at 0 and 1: integrable, but not by the trapezoid rule)
    edges = np.linspace(0, 1, 21)
    counts, _ = np.histogram(t, edges)
    mass = np.diff(cdf(edges))
    if -1.0 < s < MODE_SCALE_MAX:
        xs = [np.linspace(a, b, 2001) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        integrals = np.array([np.trapezoid(_mode_density(x, s), x) for x in xs])
        np.testing.assert_allclose(integrals, mass, atol=2e-5)
    assert stats.chisquare(counts, n * mass / mass.sum()).pvalue > 1e-3
    # the law is the mode sampler's own: not uniform
    assert stats.kstest(t, "uniform").pvalue < 1e-6


def test_mode_time_zero_scale_is_uniform_and_symmetric():
    t = np.asarray(T.ModeTime(scale=0.0)(jax.random.key(1), 20000))
    assert stats.kstest(t, "uniform").pvalue > 1e-3
    # the SD3 map f(u) = 1 - u - s (cos^2(pi u / 2) - 1 + u) satisfies f(1 - u) = 1 - f(u)
    f = lambda u, s: 1 - u - s * (np.cos(np.pi * u / 2) ** 2 - 1 + u)
    np.testing.assert_allclose(f(1 - U, 1.29), 1 - f(U, 1.29), atol=1e-12)
    # and ModeTime draws t = 1 - f(u): the same u gives the same time
    u = np.asarray(jax.random.uniform(jax.random.key(2), (100,)), np.float64)
    t = np.asarray(T.ModeTime(1.29)(jax.random.key(2), 100), np.float64)
    np.testing.assert_allclose(t, 1 - f(u, 1.29), atol=1e-6)


# --- ShiftedTime ------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.3, 3.0])
def test_shifted_uniform_has_the_analytic_cdf(s):
    t = np.asarray(T.ShiftedTime(T.UniformTime(), s)(jax.random.key(3), 20000), np.float64)
    assert stats.kstest(t, lambda x: s * x / (s * x + 1 - x)).pvalue > 1e-3
    assert stats.kstest(t, "uniform").pvalue < 1e-6


def test_shifted_logit_normal_is_a_translated_logit_normal():
    loc, scale, s = 0.3, 0.8, 3.0
    t = np.asarray(T.ShiftedTime(T.LogitNormalTime(loc, scale), s)(jax.random.key(4), 20000), np.float64)
    assert stats.kstest(t, lambda x: stats.norm(loc - math.log(s), scale).cdf(logit(x))).pvalue > 1e-3


_TRACES = []


def _draw(sampler, key):
    _TRACES.append(1)
    return sampler(key, 256)


_jit_draw = jax.jit(_draw)


@pytest.mark.parametrize(
    "sampler, changed",
    [
        (T.ModeTime(1.29), T.ModeTime(-0.5)),
        (T.ShiftedTime(T.UniformTime(), 3.0), T.ShiftedTime(T.UniformTime(), 0.5)),
        (T.ShiftedTime(T.LogitNormalTime(0.0, 1.0), 3.0), T.ShiftedTime(T.LogitNormalTime(0.5, 0.7), 1.5)),
    ],
    ids=["mode", "shifted-uniform", "shifted-logit-normal"],
)
def test_samplers_jit_vmap_and_no_retrace(sampler, changed):
    key = jax.random.key(5)
    a = _jit_draw(sampler, key)
    np.testing.assert_allclose(a, sampler(key, 256), rtol=1e-6, atol=1e-7)
    before = len(_TRACES)
    b = _jit_draw(changed, key)
    assert len(_TRACES) == before  # a leaf change does not retrace
    assert not np.allclose(a, b)
    stack = jax.tree.map(lambda x, y: jnp.stack([jnp.asarray(x), jnp.asarray(y)]), sampler, changed)
    keys = jax.random.split(key, 2)
    batched = jax.jit(jax.vmap(lambda smp, k: smp(k, 64)))(stack, keys)
    loop = jnp.stack([sampler(keys[0], 64), changed(keys[1], 64)])
    np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-6)
    t = sampler(key, 64, jnp.bfloat16)  # dtype kept, values in [0, 1]
    assert t.dtype == jnp.bfloat16 and bool((t >= 0).all() & (t <= 1).all())


def test_samplers_built_inside_jit_with_traced_leaves():
    key = jax.random.key(8)
    f = jax.jit(lambda s, k: T.ShiftedTime(T.ModeTime(k), s)(key, 16))  # tracers pass the checks
    np.testing.assert_allclose(f(3.0, 1.29), T.ShiftedTime(T.ModeTime(1.29), 3.0)(key, 16), rtol=1e-6)


def test_get_time_sampler_builds_the_new_samplers():
    assert T.get_time_sampler("mode") == T.ModeTime(1.29)
    built = T.get_time_sampler("shifted", base=T.UniformTime(), shift=3.0)
    assert built == T.ShiftedTime(T.UniformTime(), 3.0)


# --- resolution_shift -------------------------------------------------------------------
@pytest.mark.parametrize(
    "seq_len, mu",
    [
        (256, 0.5),
        (4096, 1.15),
        (1024, 0.63),
        (2048, 0.5 + 1792 * 0.65 / 3840),
        (8192, 0.5 + 7936 * 0.65 / 3840),
    ],
)
def test_resolution_shift_matches_flux(seq_len, mu):
    np.testing.assert_allclose(float(T.resolution_shift(seq_len)), math.exp(mu), rtol=1e-6)


def test_resolution_shift_custom_line_arrays_and_jit():
    got = T.resolution_shift(
        jnp.array([100.0, 300.0]), base_seq_len=100, max_seq_len=200, base_shift=0.0, max_shift=1.0
    )
    np.testing.assert_allclose(got, [1.0, math.exp(2.0)], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(T.resolution_shift)(4096.0), math.exp(1.15), rtol=1e-6)
    # Flux applies exp(mu) sigma / (exp(mu) sigma + 1 - sigma): shift_time with that shift
    s = T.resolution_shift(4096)
    flux = lambda sigma, mu: math.exp(mu) / (math.exp(mu) + (1 / sigma - 1))
    np.testing.assert_allclose(T.shift_time(0.4, s), 1 - flux(0.6, 1.15), rtol=1e-6)


# --- time_grid ----------------------------------------------------------------------------
def _karras(n, rho, sigma_min, t0, t1):
    if n == 1:
        return np.array([t0, t1])
    i = np.arange(n) / (n - 1)
    hi, lo = (1 - t0) ** (1 / rho), sigma_min ** (1 / rho)
    return 1 - np.concatenate([(hi + i * (lo - hi)) ** rho, [1 - t1]])


@pytest.mark.parametrize("n", [1, 2, 8, 50])
@pytest.mark.parametrize("kind", ["uniform", "shifted", "edm"])
def test_time_grid_shape_endpoints_monotone_and_formula(kind, n):
    kw = {"shift": 3.0} if kind == "shifted" else {}
    grid = time_grid(n, kind=kind, **kw)
    assert grid.shape == (n + 1,) and grid.dtype == jnp.float32
    assert float(grid[0]) == 0.0 and float(grid[-1]) == 1.0
    g = np.asarray(grid, np.float64)
    assert np.all(np.diff(g) > 0)
    u = np.linspace(0, 1, n + 1)
    want = {"uniform": u, "shifted": u / (u + 3.0 * (1 - u)), "edm": _karras(n, 7.0, 0.002, 0.0, 1.0)}[kind]
    np.testing.assert_allclose(g, want, rtol=2e-6, atol=2e-7)


def test_time_grid_sub_interval_dtype_and_parameters():
    # t0, t1 inside [0, 1]: exact endpoints; the shifted grid is the shift of a uniform grid
    g = np.asarray(time_grid(5, kind="shifted", shift=2.0, t0=0.2, t1=0.9), np.float64)
    assert g[0] == np.float32(0.2) and g[-1] == np.float32(0.9)
    inv = lambda t, s: s * t / (s * t + 1 - t)  # the inverse shift
    u = np.linspace(inv(0.2, 2.0), inv(0.9, 2.0), 6)
    np.testing.assert_allclose(g, u / (u + 2.0 * (1 - u)), rtol=2e-6)
    np.testing.assert_allclose(time_grid(5, t0=0.2, t1=0.9), np.linspace(0.2, 0.9, 6), rtol=1e-6)
    e = time_grid(6, kind="edm", rho=3.0, sigma_min=0.2, t0=0.1, t1=0.9)
    np.testing.assert_allclose(e, _karras(6, 3.0, 0.2, 0.1, 0.9), rtol=2e-6)
    np.testing.assert_allclose(time_grid(7, kind="shifted", shift=1.0), time_grid(7), atol=1e-7)
    assert time_grid(4, dtype=jnp.bfloat16).dtype == jnp.bfloat16
    # too many steps for bfloat16's precision near 1: refused rather than tied
    with pytest.raises(ValueError, match="not strictly increasing in bfloat16"):
        time_grid(400, dtype=jnp.bfloat16)


def _const_and_time(x, t):
    """Column 0: the constant velocity 1.5 (Euler is exact); column 1: velocity t."""
    return jnp.stack([jnp.full_like(t, 1.5), t], axis=-1)


@pytest.mark.parametrize("kind, kw", [("shifted", {"shift": 3.0}), ("edm", {}), ("uniform", {})])
def test_euler_on_a_time_grid_integrates_exactly(kind, kw):
    grid = time_grid(8, kind=kind, **kw)
    g = np.asarray(grid, np.float64)
    x0 = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    res = fm.sampling.sample(_const_and_time, x0, solver="euler", ts=grid)
    assert int(res.nfe) == 8
    np.testing.assert_allclose(res.ts, g, atol=1e-7)
    # a constant field: x(t_i) = x0 + 1.5 t_i at every time of the grid, exactly
    want = np.asarray(x0[:, 0])[None] + 1.5 * g[:, None]
    np.testing.assert_allclose(res.trajectory[..., 0], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.x[:, 0], x0[:, 0] + 1.5, rtol=1e-6)
    # the field v = t: Euler is the left Riemann sum over exactly this grid
    np.testing.assert_allclose(res.x[:, 1], np.sum(g[:-1] * np.diff(g)), rtol=1e-5)


_GRID_TRACES = []


@jax.jit
def _shifted_grid(s):
    _GRID_TRACES.append(1)
    return time_grid(8, kind="shifted", shift=s)


def test_time_grid_jit_vmap_and_no_retrace():
    a = _shifted_grid(3.0)
    before = len(_GRID_TRACES)
    b = _shifted_grid(2.0)
    assert len(_GRID_TRACES) == before  # a new shift value does not retrace
    np.testing.assert_allclose(a, time_grid(8, kind="shifted", shift=3.0), rtol=1e-6)
    np.testing.assert_allclose(b, time_grid(8, kind="shifted", shift=2.0), rtol=1e-6)
    stack = jax.vmap(lambda s: time_grid(8, kind="shifted", shift=s))(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(stack[1], a, rtol=1e-6)
    rhos = jax.vmap(lambda r: time_grid(5, kind="edm", rho=r))(jnp.array([3.0, 7.0]))
    np.testing.assert_allclose(rhos[1], time_grid(5, kind="edm"), rtol=1e-6)


# --- weightings ---------------------------------------------------------------------------
def test_weights_are_finite_and_match_diffusers():
    t = jnp.asarray(U, jnp.float32)
    sigma = 1 - np.asarray(t, np.float64)
    cos = np.asarray(cosmap_weight(t), np.float64)
    np.testing.assert_allclose(cos, 2 / (np.pi * (1 - 2 * sigma + 2 * sigma**2)), rtol=1e-6)
    sq = np.asarray(sigma_sqrt_weight(t), np.float64)
    np.testing.assert_allclose(sq, np.maximum(sigma, 1e-3) ** -2.0, rtol=1e-5)
    assert sq[0] == 1.0 and abs(sq[-1] - 1e6) < 1.0  # the clip: sigma >= 1e-3
    np.testing.assert_allclose(sigma_sqrt_weight(t, sigma_min=0.1)[-1], 100.0, rtol=1e-6)
    ln = np.asarray(logit_normal_weight(0.3, 0.8)(t), np.float64)
    inner = slice(1, -1)
    want = stats.norm(0.3, 0.8).pdf(logit(U[inner])) / (U[inner] * (1 - U[inner]))
    np.testing.assert_allclose(ln[inner], want, rtol=1e-4, atol=1e-6)
    assert ln[0] == 0.0 and ln[-1] == 0.0
    for w in (cos, sq, ln):
        assert np.all(np.isfinite(w))
    # cosmap and logit-normal are densities on [0, 1]
    x = np.linspace(0, 1, 200001)
    np.testing.assert_allclose(np.trapezoid(np.asarray(cosmap_weight(jnp.asarray(x))), x), 1.0, atol=1e-4)
    np.testing.assert_allclose(
        np.trapezoid(np.asarray(logit_normal_weight()(jnp.asarray(x))), x), 1.0, atol=1e-4
    )


def test_logit_normal_weight_is_equivalent_to_logit_normal_time():
    # E_{t ~ U}[w(t) l(t)] = E_{t ~ LogitNormal}[l(t)] for l(t) = t^2, by quadrature
    loc, scale = -0.4, 1.3
    x = np.linspace(0, 1, 200001)
    lhs = np.trapezoid(np.asarray(logit_normal_weight(loc, scale)(jnp.asarray(x))) * x**2, x)
    z, wz = np.polynomial.hermite_e.hermegauss(80)
    rhs = np.sum(wz * expit(loc + scale * z) ** 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


@pytest.mark.parametrize(
    "weight",
    [cosmap_weight, sigma_sqrt_weight, logit_normal_weight(0.0, 1.0)],
    ids=["cosmap", "sigma_sqrt", "logit_normal"],
)
def test_weights_in_the_loss_jit_and_dtype(weight):
    x0, x1 = jnp.zeros((8, 2)), jnp.ones((8, 2))
    field = lambda x, t: jnp.zeros_like(x)
    key = jax.random.key(6)
    loss, aux = fm.losses.cfm_loss(field, key, x0, x1, path=fm.paths.CondOTPath(), weight=weight)
    _, plain = fm.losses.cfm_loss(field, key, x0, x1, path=fm.paths.CondOTPath())
    np.testing.assert_allclose(aux["per_example"], weight(aux["t"]) * plain["per_example"], rtol=1e-6)
    assert np.isfinite(float(loss))
    t = jnp.linspace(0, 1, 9)
    np.testing.assert_allclose(jax.jit(weight)(t), weight(t), rtol=1e-6)
    assert weight(t.astype(jnp.bfloat16)).dtype == jnp.bfloat16
    hash(weight)  # a training step keeps weight as a static (hashed) field


_W_TRACES = []


@jax.jit
def _apply(w, t):
    _W_TRACES.append(1)
    return w(t)


def test_logit_normal_weight_is_a_pytree_without_retrace():
    t = jnp.linspace(0, 1, 9)
    a = _apply(logit_normal_weight(0.0, 1.0), t)
    before = len(_W_TRACES)
    b = _apply(logit_normal_weight(0.5, 0.7), t)
    assert len(_W_TRACES) == before and not np.allclose(a, b)
    assert logit_normal_weight(0.5, 0.7) == LogitNormalWeight(0.5, 0.7)
    assert hash(logit_normal_weight(0.5, 0.7)) == hash(LogitNormalWeight(0.5, 0.7))
    stack = jax.tree.map(lambda *v: jnp.stack(v), LogitNormalWeight(0.0, 1.0), LogitNormalWeight(0.5, 0.7))
    np.testing.assert_allclose(jax.vmap(lambda w: w(t))(stack), jnp.stack([a, b]), rtol=1e-6)
