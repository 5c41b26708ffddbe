"""The pure-JAX auction (``fm.couplings.auction_assignment``): optimal to its stated tolerance
against scipy, always a permutation, exact on integer costs with ``tol=0``, jit / vmap, failures
raised or reported, and the ``method="auction"`` paths of the solver policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from test_assignment import KINDS, make_cost  # the same cost families as the C solver's tests

import flowjax_fm as fm
from flowjax_fm.couplings import auction_assignment

_SOLVE = jax.jit(lambda cost, tol: auction_assignment(cost, tol=tol))


def SOLVE(cost, tol=1e-6):  # noqa: N802 - one compilation per shape, shared by the tests
    return _SOLVE(cost, jnp.float32(tol))  # tol traced: a new value does not recompile


def unit(cost: np.ndarray, bits: int = 27) -> float:
    """The solver's grid step: ``2**(ceil(log2 max|C|) - bits)`` (frexp's exponent)."""
    return 2.0 ** (np.frexp(np.abs(cost).max())[1] - bits)


def excess(cost: np.ndarray, perm) -> float:
    """Total cost of ``perm`` minus scipy's optimum, in float64."""
    perm = np.asarray(perm)
    n = cost.shape[0]
    assert perm.shape == (n,) and perm.dtype == np.int32
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))  # a permutation
    rows, cols = linear_sum_assignment(cost)
    return float(cost[np.arange(n), perm].sum() - cost[rows, cols].sum())


def assert_within_tolerance(cost: np.ndarray, res, tol: float, bits: int = 27) -> None:
    """The documented guarantee ``excess <= max(tol * S, 2 n) * unit`` and the certificate."""
    assert bool(res.converged)
    n, u = cost.shape[0], unit(cost, bits)
    span = cost.max() - cost.min() + u  # S * unit is within one unit of the range
    got = excess(cost, res.perm)
    slop = 1e-9 * max(np.abs(cost).sum(), 1e-300)  # float64 summation of the checks themselves
    assert got <= max(tol * span, 2 * n * u) + slop, (got, tol * span, 2 * n * u)
    assert got <= float(res.gap_bound) * (1 + 1e-6) + slop, (got, float(res.gap_bound))


@pytest.mark.parametrize("n", [1, 2, 3, 17, 256])
def test_within_stated_tolerance_of_scipy(n):
    for kind in KINDS:
        cost = np.asarray(make_cost(kind, n, seed=n), np.float32)  # the problem solved
        res = SOLVE(jnp.asarray(cost))
        assert_within_tolerance(cost.astype(np.float64), res, 1e-6)


@pytest.mark.parametrize("n", [17, 256])
def test_integer_costs_are_exact_with_tol_zero(n):
    # n * max|C| < 2**26: the eps-CS excess n * unit is below 1, the integer optimum is reached
    for seed in range(3 if n < 100 else 1):
        cost = np.random.default_rng(seed).integers(0, 4, size=(n, n)).astype(np.float32)
        res = SOLVE(jnp.asarray(cost), tol=0.0)
        assert bool(res.converged) and excess(cost.astype(np.float64), res.perm) == 0.0
    # the all-equal cost is solved in one round by the rotated tie-break
    res = SOLVE(jnp.full((n, n), 3.0, jnp.float32), tol=0.0)
    assert int(res.rounds) == 1 and excess(np.full((n, n), 3.0), res.perm) == 0.0


def test_loose_tolerance_is_honoured_and_cheaper():
    cost = np.asarray(make_cost("sqeuclid2", 17, seed=4), np.float32)
    fine, loose = SOLVE(jnp.asarray(cost), tol=0.0), SOLVE(jnp.asarray(cost), tol=0.2)
    assert_within_tolerance(cost.astype(np.float64), loose, 0.2)
    assert int(loose.phases) < int(fine.phases)


def test_float64_under_x64_is_near_exact():
    cost = make_cost("sqeuclid2", 17, seed=7)
    with jax.enable_x64(True):
        res = jax.jit(auction_assignment)(jnp.asarray(cost))
        assert res.gap_bound.dtype == jnp.float64
    assert_within_tolerance(cost, res, 1e-6, bits=59)
    assert excess(cost, res.perm) <= 1e-12 * cost.sum()


def test_vmap_equals_loop_and_jit_equals_eager():
    costs = jnp.asarray(np.stack([make_cost(k, 17, seed=1) for k in KINDS]), jnp.float32)
    batched = jax.jit(jax.vmap(auction_assignment))(costs)
    for b in range(len(KINDS)):
        one = SOLVE(costs[b])
        np.testing.assert_array_equal(batched.perm[b], one.perm)
        assert int(batched.rounds[b]) == int(one.rounds) and int(batched.phases[b]) == int(one.phases)
    eager = auction_assignment(costs[1])
    np.testing.assert_array_equal(eager.perm, SOLVE(costs[1]).perm)
    assert float(eager.gap_bound) == float(SOLVE(costs[1]).gap_bound)


def test_non_finite_cost_raises_or_is_reported_per_problem():
    costs = np.ones((2, 4, 4), np.float32)
    costs[1, 2, 3] = np.inf
    with pytest.raises(RuntimeError, match=r"non-finite entry \(nan or inf\)"):
        jax.block_until_ready(jax.jit(jax.vmap(auction_assignment))(jnp.asarray(costs)))
    res = jax.jit(jax.vmap(lambda c: auction_assignment(c, throw=False)))(jnp.asarray(costs))
    assert res.converged.tolist() == [True, False]
    assert np.isinf(np.asarray(res.gap_bound)).tolist() == [False, True]
    np.testing.assert_array_equal(np.sort(np.asarray(res.perm), axis=1), np.tile(np.arange(4), (2, 1)))


def test_max_rounds_is_a_guard_not_a_silent_answer():
    cost = jnp.asarray(make_cost("sqeuclid2", 17, seed=3), jnp.float32)
    full = SOLVE(cost)
    cut = auction_assignment(cost, max_rounds=int(full.rounds) - 1, throw=False)
    assert not bool(cut.converged) and np.isinf(float(cut.gap_bound))
    np.testing.assert_array_equal(np.sort(np.asarray(cut.perm)), np.arange(17))
    with pytest.raises(RuntimeError, match=r"did not finish within max_rounds="):
        jax.block_until_ready(auction_assignment(cost, max_rounds=int(full.rounds) - 1))


def test_solver_policy_auction_paths():
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
    x1 = jnp.asarray(1.0 + 0.5 * rng.normal(size=(64, 2)), jnp.float32)
    key = jax.random.key(0)
    # ExactOTCoupling -> solve_assignment(method="auction") -> auction_assignment(...).perm
    auction = jax.jit(fm.couplings.ExactOTCoupling(method="auction"))(key, x0, x1)
    exact = fm.couplings.ExactOTCoupling(method="c")(key, x0, x1)
    cost = np.asarray(fm.couplings.squared_distances(x0, x1), np.float64)
    total = lambda p: cost[np.asarray(p.source), np.asarray(p.target)].sum()
    # the same optimum up to ties and the stated tolerance (2 n units at most here)
    assert total(auction) - total(exact) <= 2 * 64 * unit(cost) + 1e-9 * cost.sum()
    # the metric: on the host, float64 costs on the int64 grid
    x, y = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    np.testing.assert_allclose(
        fm.metrics.wasserstein(x, y, solver="auction"),
        fm.metrics.wasserstein(x, y, solver="scipy"),
        rtol=1e-9,
    )


def test_low_precision_and_integer_costs_are_solved_in_float32():
    from flowjax_fm.couplings._auction import _check_cost

    for dtype in (jnp.bfloat16, jnp.float16, jnp.int32, jnp.uint8):
        assert _check_cost(jnp.ones((2, 2), dtype)).dtype == jnp.float32
    cost = np.random.default_rng(0).integers(0, 9, size=(3, 3))
    res = SOLVE(jnp.asarray(cost, jnp.int32))
    assert res.gap_bound.dtype == jnp.float32 and excess(cost.astype(np.float64), res.perm) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqeuclid2", "uniform"])
def test_within_stated_tolerance_at_n_1024(kind):
    cost = np.asarray(make_cost(kind, 1024, seed=0), np.float32)
    assert_within_tolerance(cost.astype(np.float64), SOLVE(jnp.asarray(cost)), 1e-6)


@pytest.mark.slow
def test_vmap_over_row_blocks_equals_loop():
    # n >= 128: rounds with few bidders gather only their rows (lax.switch, a select under vmap)
    costs = jnp.asarray(np.stack([make_cost(k, 128, seed=2) for k in ("sqeuclid2", "int_ties")]), jnp.float32)
    batched = jax.jit(jax.vmap(auction_assignment))(costs)
    for b in range(2):
        np.testing.assert_array_equal(batched.perm[b], SOLVE(costs[b]).perm)
        assert_within_tolerance(np.asarray(costs[b], np.float64), SOLVE(costs[b]), 1e-6)
