"""Couplings: exact OT against scipy, Sinkhorn between exact and independent, labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import flowjax_fm as fm

C = fm.couplings


def _clouds(n, d, seed):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), 0.5 * jax.random.normal(k1, (n, d)) + 1.0


def _cost(x0, x1, pairing):
    a, b = pairing.apply(x0, x1)
    return float(jnp.sum((a - b) ** 2))


def _scipy_optimum(x0, x1):
    cost = np.asarray(((np.asarray(x0)[:, None] - np.asarray(x1)[None]) ** 2).sum(-1), np.float64)
    r, c = linear_sum_assignment(cost)
    return cost[r, c].sum()


@pytest.mark.parametrize("n,d,seed", [(8, 2, 0), (64, 2, 1), (256, 2, 2), (128, 16, 3), (50, 64, 4)])
def test_exact_ot_is_the_scipy_optimum(n, d, seed):
    x0, x1 = _clouds(n, d, seed)
    pairing = jax.jit(C.ExactOTCoupling())(jax.random.key(0), x0, x1)
    assert sorted(np.asarray(pairing.target).tolist()) == list(range(n))
    assert sorted(np.asarray(pairing.source).tolist()) == list(range(n))
    np.testing.assert_allclose(_cost(x0, x1, pairing), _scipy_optimum(x0, x1), rtol=1e-5)


def test_exact_ot_event_shapes_are_flattened():
    x0, x1 = _clouds(32, 12, 5)
    p_flat = C.ExactOTCoupling()(jax.random.key(0), x0, x1)
    p_img = C.ExactOTCoupling()(jax.random.key(0), x0.reshape(32, 2, 3, 2), x1.reshape(32, 2, 3, 2))
    np.testing.assert_array_equal(p_flat.target, p_img.target)


def _labels(n, k, seed):
    return jax.random.permutation(jax.random.key(seed), jnp.arange(n) % k).astype(jnp.int32)


@pytest.mark.parametrize(
    "coupling",
    [
        C.IndependentCoupling(),
        C.ExactOTCoupling(),
        C.SinkhornCoupling(epsilon=0.05, sampling="pairs"),
        C.SinkhornCoupling(epsilon=0.05, sampling="rows"),
        C.SinkhornCoupling(epsilon=0.05, sampling="rounded"),
    ],
    ids=["independent", "exact", "sk-pairs", "sk-rows", "sk-rounded"],
)
def test_label_aware_pairs_never_cross_labels(coupling):
    n = 96
    x0, x1 = _clouds(n, 2, 6)
    c0, c1 = _labels(n, 3, 7), _labels(n, 3, 8)
    pairing = jax.jit(coupling)(jax.random.key(1), x0, x1, c0, c1)
    l0, l1 = pairing.apply(c0, c1)
    np.testing.assert_array_equal(l0, l1)


def test_label_aware_exact_is_optimal_within_each_label():
    n = 90
    x0, x1 = _clouds(n, 2, 9)
    c0, c1 = _labels(n, 3, 10), _labels(n, 3, 11)
    pairing = C.ExactOTCoupling()(jax.random.key(0), x0, x1, c0, c1)
    expected = sum(
        _scipy_optimum(x0[np.asarray(c0) == k], x1[np.asarray(c1) == k]) for k in range(3)
    )
    np.testing.assert_allclose(_cost(x0, x1, pairing), expected, rtol=1e-5)


def test_sinkhorn_cost_between_exact_and_independent_and_tends_to_exact():
    n = 128
    x0, x1 = _clouds(n, 2, 12)
    cost = np.asarray(C.squared_distances(x0, x1), np.float64)
    exact = _scipy_optimum(x0, x1) / n
    independent = cost.mean()
    plan_costs = []
    for eps in (1.0, 0.3, 0.1, 0.03, 0.01):
        plan = np.asarray(C.SinkhornCoupling(epsilon=eps, threshold=1e-5)
                          .plan(x0, x1), np.float64)
        np.testing.assert_allclose(plan.sum(1), 1.0 / n, rtol=1e-2)
        plan_costs.append((plan * cost).sum())
    assert all(exact - 1e-6 <= c <= independent for c in plan_costs)
    assert all(a >= b - 1e-6 for a, b in zip(plan_costs, plan_costs[1:], strict=False))
    assert plan_costs[-1] - exact < 0.05 * (independent - exact)


def test_sinkhorn_relative_epsilon_is_scale_free():
    x0, x1 = _clouds(64, 8, 13)
    cp = C.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean")
    p1 = cp.plan(x0, x1)
    p2 = cp.plan(10.0 * x0, 10.0 * x1)
    np.testing.assert_allclose(p1, p2, atol=1e-5)


def test_sinkhorn_sampling_modes():
    n = 64
    x0, x1 = _clouds(n, 2, 14)
    rows = C.SinkhornCoupling(epsilon=0.01, sampling="rows")(jax.random.key(0), x0, x1)
    np.testing.assert_array_equal(rows.source, np.arange(n))
    rounded = C.SinkhornCoupling(epsilon=0.01, sampling="rounded")(jax.random.key(0), x0, x1)
    assert sorted(np.asarray(rounded.target).tolist()) == list(range(n))
    # a small epsilon's rounded plan is (near) the exact optimum
    assert _cost(x0, x1, rounded) <= _scipy_optimum(x0, x1) * 1.02
    pairs = C.SinkhornCoupling(epsilon=0.05, sampling="pairs")(jax.random.key(0), x0, x1)
    assert pairs.source.shape == pairs.target.shape == (n,)
    assert int(pairs.source.max()) < n and int(pairs.target.max()) < n


def test_sinkhorn_pairs_follow_the_plan():
    # with a large epsilon the plan is ~uniform: pairs look independent; tiny: near the optimum
    n = 128
    x0, x1 = _clouds(n, 2, 15)
    exact = _scipy_optimum(x0, x1)
    small = C.SinkhornCoupling(epsilon=0.005, sampling="pairs")(jax.random.key(1), x0, x1)
    big = C.SinkhornCoupling(epsilon=100.0, sampling="pairs")(jax.random.key(1), x0, x1)
    assert _cost(x0, x1, small) < 1.3 * exact
    independent = float(C.squared_distances(x0, x1).mean()) * n
    assert abs(_cost(x0, x1, big) - independent) < 0.15 * independent


def test_unbalanced_sinkhorn_relaxes_marginals():
    n = 64
    x0, x1 = _clouds(n, 2, 16)
    x1 = x1.at[:4].add(20.0)  # outliers
    plan = np.asarray(C.SinkhornCoupling(epsilon=0.1, tau_a=0.5, tau_b=0.5).plan(x0, x1))
    col = plan.sum(0)
    assert col[:4].mean() < 0.5 * col[4:].mean()  # outliers get less mass


def test_epsilon_change_does_not_retrace():
    traces = []

    @jax.jit
    def f(cp, key, x0, x1):
        traces.append(1)
        return cp(key, x0, x1)

    x0, x1 = _clouds(16, 2, 17)
    f(C.SinkhornCoupling(epsilon=0.1), jax.random.key(0), x0, x1)
    f(C.SinkhornCoupling(epsilon=0.2), jax.random.key(0), x0, x1)
    assert len(traces) == 1


def test_independent_is_identity_and_permutation_with_labels():
    x0, x1 = _clouds(10, 2, 18)
    p = C.IndependentCoupling()(jax.random.key(0), x0, x1)
    np.testing.assert_array_equal(p.source, np.arange(10))
    c = _labels(10, 2, 19)
    p = C.IndependentCoupling()(jax.random.key(0), x0, x1, c, c)
    assert sorted(np.asarray(p.source).tolist()) == list(range(10))


def test_pairing_apply_gathers_pytrees():
    p = C.Pairing(source=jnp.array([1, 0]), target=jnp.array([0, 0]))
    a, b = p.apply({"x": jnp.array([1, 2])}, jnp.array([5, 6]))
    assert a["x"].tolist() == [2, 1] and b.tolist() == [5, 5]


@pytest.mark.parametrize(
    "args,match",
    [
        ((jnp.zeros((4, 2)), jnp.zeros((5, 2))), r"\(4, 2\) and \(5, 2\)"),
        ((jnp.zeros(4), jnp.zeros(4)), "non-empty event"),
        ((jnp.zeros((0, 2)), jnp.zeros((0, 2))), "empty"),
        ((jnp.zeros((4, 2), jnp.int32), jnp.zeros((4, 2), jnp.int32)), "floating"),
        ((jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32), None), "both"),
        ((jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32)), r"\(4,\)"),
        ((jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(4), jnp.zeros(4)), "integer"),
    ],
)
@pytest.mark.parametrize("name", ["independent", "exact-ot", "sinkhorn"])
def test_bad_input(name, args, match):
    with pytest.raises(ValueError, match=match):
        C.get_coupling(name)(jax.random.key(0), *args)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown coupling"):
        C.get_coupling("hungarian")
    with pytest.raises(ValueError, match="sampling"):
        C.SinkhornCoupling(sampling="greedy")


def test_draw_indices_matches_the_weights_chi_square():
    # inverse-CDF draws against the exact multinomial law (scipy chi-square, fixed key)
    from scipy import stats

    from flowjax_fm.couplings._ot import draw_indices

    w = jnp.array([0.0, 1.0, 2.0, 0.0, 4.0, 0.5, 0.0, 2.5])
    draws = np.asarray(draw_indices(jax.random.key(3), jnp.tile(w, (20_000, 1))))
    counts = np.bincount(draws, minlength=w.size)
    assert counts[np.asarray(w) == 0].sum() == 0  # a zero-weight cell is never drawn
    expected = np.asarray(w / w.sum()) * draws.size
    pos = np.asarray(w) > 0
    assert stats.chisquare(counts[pos], expected[pos]).pvalue > 1e-3
    many = np.asarray(draw_indices(jax.random.key(4), w, num=20_000))
    assert stats.chisquare(np.bincount(many, minlength=w.size)[pos], expected[pos]).pvalue > 1e-3
    # rounding past the last positive weight lands on it, never on the zero tail
    tail = jnp.array([[1e-30, 0.0, 0.0]] * 64)
    assert set(np.asarray(draw_indices(jax.random.key(5), tail)).tolist()) == {0}


def test_draw_indices_1d_needs_num():
    from flowjax_fm.couplings._ot import draw_indices

    with pytest.raises(ValueError, match="num"):
        draw_indices(jax.random.key(0), jnp.ones(3))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        draw_indices(jax.random.key(0), jnp.ones((2, 3, 4)))


def test_sinkhorn_anderson_and_inner_iterations_reach_the_same_plan():
    x0, x1 = _clouds(128, 2, 17)
    base = C.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean", threshold=1e-5)
    fast = C.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean", threshold=1e-5, anderson=5,
                              inner_iterations=5)
    np.testing.assert_allclose(fast.plan(x0, x1), base.plan(x0, x1), atol=2e-6)
    with pytest.raises(ValueError, match="anderson"):
        C.SinkhornCoupling(anderson=1)
