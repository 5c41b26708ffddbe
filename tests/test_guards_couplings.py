"""Issue 12 guards of the couplings: checked hyperparameters, checked Sinkhorn plans, one exact
solver policy, exact solves over any cost range."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import flowjax_fm as fm
from flowjax_fm.couplings import _assignment

C = fm.couplings
KEY = jax.random.key(0)


def _clouds(n, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, 2)), jax.random.normal(k1, (n, 2)) + 1.0


def _assignment_cost(cost, perm):
    return cost[np.arange(cost.shape[0]), np.asarray(perm)].sum()


# -- construction ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epsilon=0), r"epsilon must be a finite number in \(0, inf\), got 0"),
        (dict(epsilon=-1.0), r"epsilon must be a finite number in \(0, inf\)"),
        (dict(epsilon=float("nan")), r"epsilon must be a finite number"),
        (dict(tau_a=2.0), r"tau_a must be a finite number in \(0, 1\], got 2.0"),
        (dict(tau_a=0.0), r"tau_a must be a finite number in \(0, 1\]"),
        (dict(threshold=-1.0), r"threshold must be a finite number in \(0, inf\)"),
        (dict(max_iterations=True), r"max_iterations must be an int >= 1, got True"),
        (dict(inner_iterations=0), r"inner_iterations must be an int >= 1"),
        (dict(marginal_tol=float("nan")), r"marginal_tol must be a number in \(0, inf\)"),
        (dict(throw="yes"), r"throw must be True or False"),
    ],
)
def test_sinkhorn_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.SinkhornCoupling(**kwargs)


def test_numpy_ints_accepted_and_normalised():
    cp = C.SinkhornCoupling(max_iterations=np.int64(50), inner_iterations=np.int32(5),
                            anderson=np.int64(0))
    assert type(cp.max_iterations) is int and cp.max_iterations == 50
    assert type(cp.inner_iterations) is int and type(cp.anderson) is int
    assert C.SinkhornCoupling(marginal_tol=float("inf")).marginal_tol == float("inf")


def test_exact_method_and_get_coupling_are_checked():
    with pytest.raises(ValueError, match=r"unknown method 'hungarian'; choose one of 'auto'"):
        C.ExactOTCoupling(method="hungarian")
    with pytest.raises(ValueError, match=r"unknown option 'eps' for coupling 'sinkhorn'"):
        C.get_coupling("sinkhorn", eps=0.1)
    with pytest.raises(ValueError, match=r"it takes no options"):
        C.get_coupling("independent", method="c")
    with pytest.raises(ValueError, match=r"epsilon must be a finite number"):
        C.get_coupling("sinkhorn", epsilon=-1.0)


def test_pairing_construction_unchanged():
    p = C.Pairing(jnp.array([0, 1]), jnp.array([1, 0]))
    assert p.converged is None and p.marginal_error is None
    assert len(jax.tree.leaves(p)) == 2
    x0, x1 = _clouds(8)
    assert C.ExactOTCoupling()(KEY, x0, x1).converged is None


# -- the Sinkhorn plan check -------------------------------------------------------------
HARD = dict(epsilon=2e-4, max_iterations=300)  # the example: columns off by 100s of %


def test_converged_default_plan_passes_and_is_reported():
    x0, x1 = _clouds(64)
    p = jax.jit(lambda a, b: C.SinkhornCoupling()(KEY, a, b))(x0, x1)
    assert bool(p.converged)
    assert 0.0 <= float(p.marginal_error) <= 1e-3  # the default threshold


def test_unconverged_plan_raises_eagerly_and_under_jit():
    x0, x1 = _clouds(64)
    cp = C.SinkhornCoupling(**HARD)
    with pytest.raises(RuntimeError, match=r"marginal_tol=0.01.*epsilon=0.0002.*Raise epsilon"):
        jax.block_until_ready(cp(KEY, x0, x1))
    with pytest.raises(RuntimeError, match=r"max_iterations=300.*relative_epsilon='mean'"):
        jax.block_until_ready(jax.jit(lambda c, a, b: c.plan(a, b))(cp, x0, x1))


def test_unconverged_plan_is_reported_with_throw_false():
    x0, x1 = _clouds(64)
    cp = C.SinkhornCoupling(epsilon=2e-4, throw=False)  # the default budget of 2,000 iterations
    p = jax.jit(lambda c, a, b: c(KEY, a, b))(cp, x0, x1)
    assert not bool(p.converged)
    assert float(p.marginal_error) > 0.1
    plan = np.asarray(cp.plan(x0, x1))
    assert np.abs(plan.sum(0) * 64 - 1).max() > 1.0  # a column more than twice its mass


def test_unbalanced_checks_convergence_not_marginals():
    x0, x1 = _clouds(16)
    ok = C.SinkhornCoupling(epsilon=0.5, tau_a=0.9, tau_b=0.9)(KEY, x0, x1)
    assert bool(ok.converged) and float(ok.marginal_error) > 1e-2  # relaxed by design, passes
    stopped = C.SinkhornCoupling(epsilon=1e-3, tau_a=0.99, tau_b=0.99, threshold=1e-8,
                                 max_iterations=10, throw=False)(KEY, x0, x1)
    assert not bool(stopped.converged)


def test_traced_epsilon_under_vmap():
    x0, x1 = _clouds(16)

    def pair(eps, throw):
        return C.SinkhornCoupling(epsilon=eps, max_iterations=200, throw=throw)(KEY, x0, x1)

    flags = jax.jit(jax.vmap(lambda e: pair(e, False).converged))(jnp.array([0.5, 1.0, 1e-4]))
    assert flags.tolist() == [True, True, False]
    # with throw=True the sweep runs while every plan passes, and raises once one fails
    sweep = jax.jit(jax.vmap(lambda e: pair(e, True).target))
    assert sweep(jnp.array([0.5, 1.0])).shape == (2, 16)
    # a jitted function that has run once reports an equinox error as a ValueError (jax's
    # fast dispatch path), the first time as a JaxRuntimeError: both carry the message
    with pytest.raises((RuntimeError, ValueError), match=r"epsilon=<traced>"):
        jax.block_until_ready(sweep(jnp.array([0.5, 1e-4])))


def test_relative_epsilon_with_coincident_points():
    x = jnp.zeros((4, 2))
    p = jax.jit(lambda a: C.SinkhornCoupling(relative_epsilon="mean")(KEY, a, a))(x)
    assert bool(p.converged)


# -- one exact solver policy --------------------------------------------------------------
@pytest.fixture
def no_extension(monkeypatch):
    monkeypatch.setitem(sys.modules, "flowjax_fm.couplings._lap", None)
    monkeypatch.setattr(_assignment, "_fallback_warned", False)


def test_auto_falls_back_to_scipy_with_one_warning(no_extension):
    x0, x1 = _clouds(16)
    with pytest.warns(_assignment.CompiledSolverMissingWarning, match=r"pip install -e \.") as record:
        p = C.ExactOTCoupling()(KEY, x0, x1)
        w = fm.metrics.wasserstein(np.asarray(x0), np.asarray(x1))
        C.solve_assignment(jnp.ones((3, 3)))
    assert len(record) == 1
    cost = np.asarray(C.squared_distances(x0, x1), np.float64)
    r, c = linear_sum_assignment(cost)
    np.testing.assert_allclose(_assignment_cost(cost, p.target), cost[r, c].sum(), rtol=1e-6)
    assert w > 0
    with pytest.raises(ImportError, match=r"pip install -e \."):
        C.ExactOTCoupling(method="c")(KEY, x0, x1)
    with pytest.raises(ImportError, match=r"pip install -e \."):
        fm.metrics.wasserstein(np.asarray(x0), np.asarray(x1), solver="c")


@pytest.mark.parametrize("solver", ["auto", "c", "scipy", "jax"])
def test_wasserstein_solvers_agree(solver):
    x, y = (np.asarray(a, np.float64) for a in _clouds(24, seed=3))
    ref = fm.metrics.wasserstein(x, y, solver="scipy")
    np.testing.assert_allclose(fm.metrics.wasserstein(x, y, solver=solver), ref, rtol=1e-6)


# -- cost range ---------------------------------------------------------------------------
def _range_problems(n, seed):
    rng = np.random.default_rng(seed)
    for exponent in (0, 4, 8, 12, 16, 20):
        yield f"uniform-1e{exponent}", rng.random((n, n)) * 10.0**exponent
        outlier = rng.random((n, n))
        outlier[rng.integers(n), rng.integers(n)] = 10.0**exponent  # range 1e{exponent}, optimum O(1)
        yield f"outlier-1e{exponent}", outlier


@pytest.mark.parametrize("n", [8, 64])
@pytest.mark.parametrize("method", ["c", "scipy"])
def test_exact_over_cost_ranges(n, method):
    for seed in range(3):
        for label, cost in _range_problems(n, seed):
            r, c = linear_sum_assignment(cost)
            best = cost[r, c].sum()
            with jax.enable_x64(True):
                perm = C.solve_assignment(jnp.asarray(cost), method=method)
            ours = _assignment_cost(cost, perm)
            assert abs(ours - best) <= 1e-12 * abs(best), (label, seed, ours, best)


def test_outlier_range_in_float32_too():
    # x64 off: the float32 cost is widened exactly, and the clipped re-solve still applies
    cost = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    cost[3, 5] = 1e20
    cost64 = cost.astype(np.float64)
    r, c = linear_sum_assignment(cost64)
    perm = jax.jit(C.solve_assignment)(jnp.asarray(cost))
    np.testing.assert_allclose(_assignment_cost(cost64, perm), cost64[r, c].sum(), rtol=1e-12)


def test_offset_data_keep_exact_ot_optimal():
    # squared distances are centred: a common offset of 1e3 cost float32 17% of optimality
    x0, x1 = (np.asarray(a, np.float64) + 1e3 for a in _clouds(64, seed=5))
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(cost)
    p = C.ExactOTCoupling()(KEY, jnp.asarray(x0, jnp.float32), jnp.asarray(x1, jnp.float32))
    np.testing.assert_allclose(_assignment_cost(cost, p.target), cost[r, c].sum(), rtol=1e-5)


@pytest.mark.parametrize("method", ["auto", "scipy", "jax"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_cost_raises_with_a_message(method, bad):
    cost = np.ones((2, 4, 4), np.float32)
    cost[1, 1, 2] = bad
    solve = jax.vmap(lambda c: C.solve_assignment(c, method=method))
    with pytest.raises(RuntimeError, match=r"non-finite entry \(nan or inf\)") as info:
        jax.block_until_ready(jax.jit(solve)(jnp.asarray(cost)))
    assert "Traceback" not in _assignment_first_line(info.value)
    with pytest.raises(RuntimeError, match=r"non-finite entry"):
        jax.block_until_ready(C.solve_assignment(jnp.asarray(cost[1]), method=method))
    with pytest.raises(ValueError, match=r"non-finite"):
        _assignment.host_assignment(cost[1], solver=method)


def _assignment_first_line(err):
    from flowjax_fm._checks import first_line

    return first_line(err)
