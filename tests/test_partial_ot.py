"""Partial optimal transport (fm.couplings.PartialOTCoupling), against POT where installed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm.couplings._partial import partial_assignment, partial_plan, split_mass

C = fm.couplings
KEY = jax.random.key(0)


def _points(seed, n, d=2, shift=1.0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), jax.random.normal(k1, (n, d)) + shift


def _pot_cost(cost64, mass):
    """POT's optimal partial cost. POT's reduction (a dummy corner of cost 2 max C) assumes
    C >= 0: with negative entries it moves more than m. So it solves C - min C, and the shift
    is added back (every plan of mass m pays m min C for it)."""
    ot = pytest.importorskip("ot")
    n = cost64.shape[0]
    a = np.full(n, 1.0 / n)
    low = float(cost64.min())
    # POT refuses m above sum(a), which rounds to 1 - 1e-16 for some n
    plan = ot.partial.partial_wasserstein(a, a, cost64 - low, m=min(mass, float(a.sum())))
    assert plan.sum() == pytest.approx(mass, rel=1e-9)
    return float((plan * cost64).sum()), plan


def _masses(rng, n):
    """Whole, fractional and extreme masses for a problem of size n."""
    k = int(rng.integers(1, n + 1))
    return [k / n, float(rng.uniform(0.02, 1.0)), 1.0]


@pytest.mark.parametrize("seed", range(6))
def test_cost_matches_pot_on_random_costs(seed):
    """Random cost matrices (uniform, mostly negative, heavy-tailed) and masses: one optimum."""
    pytest.importorskip("ot")
    rng = np.random.default_rng(seed)
    n = (5, 17, 33)[seed % 3]
    kind = seed % 3
    raw = rng.random((n, n)) * rng.uniform(0.1, 10)
    if kind == 1:
        raw = rng.standard_normal((n, n)) - 2.0  # mostly negative: the reduction must not assume C >= 0
    elif kind == 2:
        raw = rng.standard_exponential((n, n)) ** 2
    cost32 = jnp.asarray(raw, jnp.float32)
    cost64 = np.asarray(cost32, np.float64)  # the same numbers, so both solve one problem
    for mass in _masses(rng, n):
        ours = np.asarray(partial_plan(cost32, mass), np.float64)
        expected, _ = _pot_cost(cost64, mass)
        got = float((ours * cost64).sum())
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9 * np.abs(cost64).max()), (n, mass)


@pytest.mark.parametrize("mass", [0.25, 0.5, 0.83, 0.9, 1.0])
def test_coupling_plan_matches_pot_on_points(mass):
    pytest.importorskip("ot")
    x0, x1 = _points(1, 48)
    plan = np.asarray(C.PartialOTCoupling(mass=mass).plan(x0, x1), np.float64)
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    cost64 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    expected, _ = _pot_cost(cost64, mass)
    assert float((plan * cost64).sum()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mass", [1 / 32, 0.3, 0.5, 0.77, 1.0])
def test_exact_plan_marginals(mass):
    n = 32
    x0, x1 = _points(2, n)
    plan = np.asarray(C.PartialOTCoupling(mass=mass).plan(x0, x1), np.float64)
    assert (plan >= 0).all()
    assert (plan.sum(axis=1) <= 1.0 / n + 1e-7).all()
    assert (plan.sum(axis=0) <= 1.0 / n + 1e-7).all()
    assert plan.sum() == pytest.approx(mass, rel=1e-6)


def test_mass_one_is_exact_ot():
    x0, x1 = _points(3, 40)
    exact = C.ExactOTCoupling()(KEY, x0, x1)
    plan = C.PartialOTCoupling(mass=1.0).plan(x0, x1)
    perm = np.zeros((40, 40))
    perm[np.asarray(exact.source), np.asarray(exact.target)] = 1.0
    np.testing.assert_array_equal(np.asarray(plan) * 40, perm)
    pairs = C.PartialOTCoupling(mass=1.0)(KEY, x0, x1)
    assert sorted(zip(pairs.source.tolist(), pairs.target.tolist(), strict=True)) == sorted(
        zip(exact.source.tolist(), exact.target.tolist(), strict=True))


def test_fractional_mass_mixes_whole_counts():
    """m n = k + theta: the plan is (1 - theta) Q_k + theta Q_{k+1}, over n."""
    x0, x1 = _points(4, 10)
    cost = C.PartialOTCoupling().cost(x0, x1)
    plan = partial_plan(cost, 0.35)
    q3, q4 = partial_assignment(cost, 3), partial_assignment(cost, 4)
    np.testing.assert_allclose(plan * 10, 0.5 * q3 + 0.5 * q4, atol=1e-6)
    assert split_mass(0.3, 10) == (3, 0.0)  # 0.3 * 10 = 3.0000000000000004 in floats
    assert split_mass(1.0, 7) == (7, 0.0)


@pytest.mark.parametrize("offset", [0.0, -0.7])
def test_partial_assignment_is_the_best_k_pairs_by_brute_force(offset):
    rng = np.random.default_rng(5)
    cost = (rng.random((5, 5)) + offset).astype(np.float32)
    from itertools import combinations, permutations

    for k in range(6):
        best = min(
            (sum(float(cost[r, c]) for r, c in zip(rows, cols, strict=True))
             for rows in combinations(range(5), k) for cols in permutations(range(5), k)),
            default=0.0,
        )
        q = np.asarray(partial_assignment(jnp.asarray(cost), k))
        assert q.sum() == k and (q.sum(0) <= 1).all() and (q.sum(1) <= 1).all()
        assert float((q * cost).sum()) == pytest.approx(best, rel=1e-6, abs=1e-7)


def test_outliers_are_left_out():
    """10% of the data far away: mass 0.9 never pairs them, full OT must."""
    n = 40
    x0, x1 = _points(6, n, shift=0.0)
    x1 = x1.at[:4].add(50.0)
    for sampling in ("systematic", "pairs"):
        p = C.PartialOTCoupling(mass=0.9, sampling=sampling)(KEY, x0, x1)
        assert int((p.target < 4).sum()) == 0
    p = C.ExactOTCoupling()(KEY, x0, x1)
    assert int((p.target < 4).sum()) == 4


@pytest.mark.parametrize("k", [8, 12, 32])
def test_systematic_fill_repeats_each_matched_pair_evenly(k):
    n = 32
    x0, x1 = _points(7, n)
    coupling = C.PartialOTCoupling(mass=k / n)
    plan = np.asarray(coupling.plan(x0, x1))
    p = coupling(jax.random.key(3), x0, x1)
    src, tgt = np.asarray(p.source), np.asarray(p.target)
    assert src.shape == (n,) and p.converged is None
    assert (plan[src, tgt] > 0).all()  # only transported pairs
    _, counts = np.unique(src * n + tgt, return_counts=True)
    assert len(counts) == k and set(counts) <= {n // k, -(-n // k)}


def test_pairs_sampling_draws_from_the_support():
    x0, x1 = _points(8, 24)
    coupling = C.PartialOTCoupling(mass=0.5, sampling="pairs")
    plan = np.asarray(coupling.plan(x0, x1))
    p = coupling(jax.random.key(4), x0, x1)
    assert (plan[np.asarray(p.source), np.asarray(p.target)] > 0).all()


def test_jit_equals_eager_and_labels_stay_within():
    x0, x1 = _points(9, 16)
    y = jnp.arange(16) % 2
    coupling = C.PartialOTCoupling(mass=0.75)
    eager = coupling(KEY, x0, x1, y, y)
    jitted = jax.jit(lambda c, k, a, b, l: c(k, a, b, l, l))(coupling, KEY, x0, x1, y)
    np.testing.assert_array_equal(eager.source, jitted.source)
    np.testing.assert_array_equal(eager.target, jitted.target)
    assert bool((y[eager.source] == y[eager.target]).all())
    soft = C.PartialOTCoupling(mass=0.75, epsilon=0.05, relative_epsilon="mean")(KEY, x0, x1, y, y)
    assert bool((y[soft.source] == y[soft.target]).all())


@pytest.mark.parametrize("mass", [0.5, 1.0])
def test_entropic_plan_marginals_and_limit(mass):
    n = 32
    x0, x1 = _points(10, n)
    exact = C.PartialOTCoupling(mass=mass)
    cost = np.asarray(exact.cost(x0, x1), np.float64)
    exact_cost = float((np.asarray(exact.plan(x0, x1)) * cost).sum())
    costs = []
    for eps in (0.05, 0.002):
        coupling = C.PartialOTCoupling(mass=mass, epsilon=eps, relative_epsilon="mean",
                                       threshold=1e-4, max_iterations=10000)
        plan = np.asarray(coupling.plan(x0, x1), np.float64)
        tol = 2e-4  # the threshold, on the L1 marginal error
        assert plan.sum() == pytest.approx(mass, abs=tol)
        assert (plan.sum(axis=1) <= 1.0 / n + tol).all() and (plan.sum(axis=0) <= 1.0 / n + tol).all()
        costs.append(float((plan * cost).sum()))
        p = coupling(KEY, x0, x1)
        assert bool(p.converged) and float(p.marginal_error) < 1e-3
    # the entropic cost falls to the exact one as epsilon -> 0 (2% off at 0.002 x the mean)
    assert costs[0] > costs[1] >= exact_cost * (1 - 1e-3)
    assert costs[1] == pytest.approx(exact_cost, rel=0.05)


def test_trains_through_make_train_step():
    import optax
    from flax import nnx

    model = fm.models.MLP(2, (16,), rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = jax.jit(fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.CondOTPath(), coupling=C.PartialOTCoupling(mass=0.8)))
    x0, x1 = _points(11, 20)
    state, metrics = step(fm.training.init_state(model, opt), KEY, x0, x1)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


def test_registry_and_repr():
    coupling = C.get_coupling("partial-ot", mass=0.5)
    assert isinstance(coupling, C.PartialOTCoupling) and coupling.mass == 0.5
    assert C.COUPLINGS["partial-ot"] is C.PartialOTCoupling
    assert jax.tree.leaves(C.PartialOTCoupling(mass=0.5, epsilon=0.1)) == [0.1, 1e-3, 1e-2]
