"""Issue 12 guards of the solves and set metrics: one ``throw`` policy, option ranges, the dtype
policy, NaN in set metrics, and no silent NaN from a valid solve under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm

X = jnp.ones((4, 2))
nan_field = lambda x, t: x * jnp.nan
explode = lambda x, t: x**3 * 100.0
stiff = lambda x, t: -1e4 * (x - jnp.cos(t)[:, None])
eager_or_jit = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _wrap(jit):
    return jax.jit if jit else (lambda f: f)


# -- one throw policy ------------------------------------------------------------------
@eager_or_jit
@pytest.mark.parametrize(
    "field,opts",
    [
        (nan_field, dict(solver="euler", num_steps=10)),
        (nan_field, dict(solver="rk4", num_steps=10)),
        (explode, dict(solver="rk4", num_steps=10)),
        (stiff, dict(max_steps=8)),  # adaptive: the step cap
    ],
    ids=["nan-euler", "nan-rk4", "explode-rk4", "max_steps"],
)
def test_sample_raises_by_default_and_reports_with_throw_false(jit, field, opts):
    wrap = _wrap(jit)
    match = "max_steps=8 reached" if "max_steps" in opts else "non-finite"
    with pytest.raises(RuntimeError, match=match):
        jax.block_until_ready(wrap(lambda x: fm.sampling.sample(field, x, **opts).x)(X))
    res = wrap(lambda x: fm.sampling.sample(field, x, throw=False, **opts))(X)
    assert not bool(res.success)


def test_every_solve_takes_throw_under_jit():
    # (eagerly: the reported cases of tests/bad_input/cases_solves.py; sample, log_prob and
    # flow_integrals under jit: the tests of their modules)
    wrap = jax.jit
    fixed = dict(solver="euler", num_steps=2)
    reported = {
        "encode": (
            lambda x: fm.sampling.encode(nan_field, x, throw=False, **fixed).success,
            lambda r: not bool(r),
        ),
        "round_trip_error": (
            lambda x: fm.sampling.round_trip_error(nan_field, x, throw=False, **fixed),
            lambda r: bool(jnp.isnan(r).all()),
        ),
        "flow_integrals": (
            lambda x: fm.metrics.flow_integrals(nan_field, x, throw=False, **fixed)["success"],
            lambda r: not bool(r),
        ),
        "path_energy": (
            lambda x: fm.metrics.path_energy(nan_field, x, throw=False, **fixed),
            lambda r: bool(jnp.isnan(r)),
        ),
        "nfe_at_tolerance": (
            lambda x: fm.metrics.nfe_at_tolerance(stiff, x, max_steps=8, throw=False),
            lambda r: int(r) == -1,
        ),
    }
    for name, (call, is_reported) in reported.items():
        assert is_reported(wrap(call)(X)), name
    with pytest.raises(RuntimeError, match="fm.sampling.round_trip_error.*non-finite"):
        jax.block_until_ready(wrap(lambda x: fm.sampling.round_trip_error(nan_field, x, **fixed))(X))
    with pytest.raises(RuntimeError, match="max_steps=8 reached"):
        jax.block_until_ready(wrap(lambda x: fm.metrics.nfe_at_tolerance(stiff, x, max_steps=8))(X))


def test_evaluate_reports_success():
    r = fm.metrics.evaluate(nan_field, X, np.ones((4, 2)), solver="euler", num_steps=2, throw=False)
    assert r["success"] is False and np.isnan(r["w2"]) and r["nfe"] == -1
    ok = fm.metrics.evaluate(lambda x, t: jnp.ones_like(x), X, X + 1.0, solver="euler", num_steps=2)
    assert ok["success"] is True and ok["w2"] == pytest.approx(0.0, abs=1e-5)


# -- option ranges ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rtol=-1.0), r"rtol must be a finite number in \(0, inf\), got -1.0"),
        (dict(atol=float("nan")), r"atol must be a finite number"),
        (dict(t1=float("inf")), r"t1 must be a finite number"),
        (dict(solver="euler", num_steps=True), r"num_steps must be an int >= 1, got True"),
        (dict(max_steps=0), r"max_steps must be an int >= 1, got 0"),
        (dict(throw=1), r"throw must be True or False, got 1"),
    ],
)
def test_options_are_checked_by_every_solve(kwargs, match):
    v = lambda x, t: -x
    calls = (fm.sampling.sample, fm.sampling.encode, fm.likelihood.log_prob, fm.metrics.flow_integrals)
    for call in calls[:1] if "t1" in kwargs else calls:  # t1 is sample's name for the end time
        with pytest.raises(ValueError, match=match):
            call(v, X, **kwargs)


def test_numpy_ints_are_accepted_and_traced_times_refused():
    v = lambda x, t: -x
    res = fm.sampling.sample(v, X, solver="euler", num_steps=np.int64(4), max_steps=np.int32(8))
    assert int(res.nfe) == 4
    with pytest.raises(ValueError, match="t0 must be a concrete number"):
        jax.jit(lambda x, t0: fm.sampling.sample(v, x, t0=t0).x)(X, 0.0)


# -- the dtype policy ------------------------------------------------------------------
def test_numpy_float64_input_is_cast_as_jax_casts_it():
    v = lambda x, t: -x
    x64 = np.ones((4, 2))  # float64; x64 is off
    ref = fm.sampling.sample(v, X, solver="rk4", num_steps=4).x
    for call in (fm.sampling.sample, fm.sampling.encode):
        out = call(v, x64, solver="rk4", num_steps=4).x
        assert out.dtype == jnp.float32
    np.testing.assert_array_equal(fm.sampling.sample(v, x64, solver="rk4", num_steps=4).x, ref)
    logp = fm.likelihood.log_prob(v, x64, solver="rk4", num_steps=4)
    assert logp.dtype == jnp.float32


def test_integer_state_is_refused_quoting_dtype_and_shape():
    with pytest.raises(
        ValueError, match=r"x0 must be a floating-point array, got dtype int32 and shape \(4, 2\)"
    ):
        fm.sampling.sample(lambda x, t: x, np.zeros((4, 2), np.int32))


W = jnp.array([[-0.5, 1.0], [-1.0, -0.5]])  # float32 weights: like a model's parameters


def float32_model(x, t):
    return jnp.tanh(x @ W) + t[:, None]  # float32 out for a float32 (or bfloat16) x


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_in_low_precision_out(dtype):
    x0 = jax.random.normal(jax.random.key(0), (8, 2)).astype(dtype)
    res = fm.sampling.sample(float32_model, x0, solver="rk4", num_steps=4, save_trajectory=True)
    assert res.x.dtype == dtype and res.trajectory.dtype == dtype and bool(res.success)
    # integrated in float32 and rounded once: the float32 solve from the same start, rounded
    ref = fm.sampling.sample(float32_model, x0.astype(jnp.float32), solver="rk4", num_steps=4).x
    np.testing.assert_array_equal(np.asarray(res.x, np.float32), np.asarray(ref.astype(dtype), np.float32))
    assert fm.sampling.encode(float32_model, x0, solver="rk4", num_steps=4).x.dtype == dtype
    if dtype == jnp.bfloat16:
        assert fm.likelihood.log_prob(float32_model, x0, solver="rk4", num_steps=4).dtype == dtype
        integrals = fm.metrics.flow_integrals(float32_model, x0, solver="rk4", num_steps=4)
        assert integrals["energy"].dtype == dtype and bool(integrals["success"])


def test_a_flax_model_samples_bfloat16():
    model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0))  # float32 params: returns float32
    x0 = jnp.zeros((4, 2), jnp.bfloat16)
    assert fm.sampling.sample(model, x0, solver="euler", num_steps=2).x.dtype == jnp.bfloat16


def test_bfloat16_adaptive_solve_meets_its_tolerance():
    # integrating in bfloat16 itself cannot meet rtol = 1e-5 (it stops at max_steps)
    x0 = jax.random.normal(jax.random.key(1), (16, 2)).astype(jnp.bfloat16)
    spin = lambda x, t: 3.0 * jnp.stack([-x[:, 1], x[:, 0]], axis=1)  # a rotation by 3 t
    c, s = np.cos(3.0), np.sin(3.0)
    exact = np.asarray(x0, np.float64) @ np.array([[c, s], [-s, c]])
    res = fm.sampling.sample(spin, x0)
    assert res.x.dtype == jnp.bfloat16 and bool(res.success)
    # only the bfloat16 rounding of the end (8 bits: relative 2^-9) is left
    err = np.abs(np.asarray(res.x, np.float64) - exact).max()
    assert err < 2.0**-8 * np.abs(exact).max(), err


def test_field_dtypes_accepted_and_refused():
    # a bfloat16 field of a bfloat16 state is cast up; a float16 field of a float32 state is refused
    xb = jnp.ones((4, 2), jnp.bfloat16)
    out = fm.sampling.sample(lambda x, t: (-x).astype(jnp.bfloat16), xb, solver="euler", num_steps=2).x
    assert out.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"shape and dtype of x, \(4, 2\) float32; got \(4, 2\) float16"):
        fm.sampling.sample(lambda x, t: x.astype(jnp.float16), X)
    with pytest.raises(ValueError, match=r"a bfloat16 state is integrated in float32"):
        fm.sampling.sample(lambda x, t: x.astype(jnp.float16), xb)


# -- set metrics -----------------------------------------------------------------------
def test_mmd_refuses_nan_and_one_point_sets_eagerly():
    y = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value"):
        fm.metrics.mmd(jnp.array([[0.0, jnp.nan], [1.0, 1.0]]), y)
    with pytest.raises(ValueError, match=r"y contains 1 non-finite value"):
        fm.metrics.mmd(y, jnp.array([[0.0, jnp.inf], [1.0, 1.0]]).astype(jnp.bfloat16))
    with pytest.raises(ValueError, match=r"N >= 2 points, got shape \(1, 2\) \(a single point"):
        fm.metrics.mmd(jnp.zeros((1, 2)), y)
    with pytest.raises(ValueError, match=r"bandwidths must be a finite number in \(0, inf\)"):
        fm.metrics.mmd(y, y, bandwidths=-1.0)
    # traced inputs cannot be read: under jit a NaN passes through (documented)
    assert bool(jnp.isnan(jax.jit(fm.metrics.mmd)(jnp.array([[0.0, jnp.nan], [1.0, 1.0]]), y)))


# -- no silent NaN -----------------------------------------------------------------------
def _family(params, x, t):
    """A family of fields: linear, cubic (explodes for large b), oscillating, time-dependent."""
    a, b, c = params
    return a * x + b * x**3 + c * jnp.sin(3.0 * x) * t[:, None]


@pytest.mark.parametrize(
    "opts",
    [
        dict(solver="euler", num_steps=4),
        dict(solver="heun", num_steps=8),
        dict(solver="rk4_38", num_steps=3),
        dict(solver="tsit5", max_steps=64),
        dict(solver="dopri5", max_steps=64),
    ],
    ids=lambda o: f"{o['solver']}-{o.get('num_steps', 'adaptive')}",
)
def test_valid_input_under_jit_never_returns_nan_with_success(opts):
    # one compile per solver, vmapped over 24 fields of the family (some of which explode)
    keys = jax.random.split(jax.random.key(3), 3)
    params = (
        jax.random.uniform(keys[0], (24,), minval=-3.0, maxval=3.0),
        jnp.tile(jnp.array([0.0, 0.5, 30.0, 300.0]), 6) * jnp.sign(jax.random.normal(keys[1], (24,))),
        jax.random.uniform(keys[2], (24,), minval=-2.0, maxval=2.0),
    )
    x0 = jax.random.normal(jax.random.key(4), (6, 2)) * 1.5

    @jax.jit
    @jax.vmap
    def run(p):
        res = fm.sampling.sample(lambda x, t: _family(p, x, t), x0, throw=False, **opts)
        return res.success, jnp.all(jnp.isfinite(res.x))

    success, finite = run(params)
    success, finite = np.asarray(success), np.asarray(finite)
    assert not np.any(success & ~finite), "a solve returned non-finite values with success=True"
    assert success.any()
    assert np.all(success[params[1] == 0.0])  # the tame fields succeed
