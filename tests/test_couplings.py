"""Couplings: exact OT against scipy, Sinkhorn between exact and independent, conditions.

The contract suite at the end runs every coupling of ``REGISTRY`` through the same checks.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import flowjax_fm as fm

C = fm.couplings


_TRACES = []


# Shared jitted forms (the coupling is an argument): one compile per coupling type, condition
# structure and shape, reused across tests.
@jax.jit
def _PAIR(coupling, key, x0, x1, cond):
    _TRACES.append(jax.tree.structure(coupling))
    return coupling(key, x0, x1, cond, cond)


@jax.jit
def _PLAN(coupling, x0, x1, cond):
    return coupling.plan(x0, x1, cond, cond)


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
        plan = np.asarray(_PLAN(C.SinkhornCoupling(epsilon=eps, threshold=1e-5), x0, x1, None),
                          np.float64)  # one compile: epsilon is a leaf
        np.testing.assert_allclose(plan.sum(1), 1.0 / n, rtol=1e-2)
        plan_costs.append((plan * cost).sum())
    assert all(exact - 1e-6 <= c <= independent for c in plan_costs)
    assert all(a >= b - 1e-6 for a, b in zip(plan_costs, plan_costs[1:], strict=False))
    assert plan_costs[-1] - exact < 0.05 * (independent - exact)


def test_sinkhorn_relative_epsilon_is_scale_free():
    x0, x1 = _clouds(64, 8, 13)
    cp = C.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean")
    p1 = _PLAN(cp, x0, x1, None)
    p2 = _PLAN(cp, 10.0 * x0, 10.0 * x1, None)
    np.testing.assert_allclose(p1, p2, atol=1e-5)


def test_sinkhorn_sampling_modes():
    n = 64
    x0, x1 = _clouds(n, 2, 14)
    rows = _PAIR(C.SinkhornCoupling(epsilon=0.01, sampling="rows"), jax.random.key(0), x0, x1, None)
    np.testing.assert_array_equal(rows.source, np.arange(n))
    rounded = _PAIR(C.SinkhornCoupling(epsilon=0.01, sampling="rounded"), jax.random.key(0), x0, x1,
                    None)
    assert sorted(np.asarray(rounded.target).tolist()) == list(range(n))
    # a small epsilon's rounded plan is (near) the exact optimum
    assert _cost(x0, x1, rounded) <= _scipy_optimum(x0, x1) * 1.02
    pairs = _PAIR(C.SinkhornCoupling(epsilon=0.05, sampling="pairs"), jax.random.key(0), x0, x1, None)
    assert pairs.source.shape == pairs.target.shape == (n,)
    assert int(pairs.source.max()) < n and int(pairs.target.max()) < n


def test_sinkhorn_pairs_follow_the_plan():
    # with a large epsilon the plan is ~uniform: pairs look independent; tiny: near the optimum
    n = 128
    x0, x1 = _clouds(n, 2, 15)
    exact = _scipy_optimum(x0, x1)
    small = _PAIR(C.SinkhornCoupling(epsilon=0.005, sampling="pairs"), jax.random.key(1), x0, x1, None)
    big = _PAIR(C.SinkhornCoupling(epsilon=100.0, sampling="pairs"), jax.random.key(1), x0, x1, None)
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
        ((jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32)),
         r"leading dimension 4.*\(3,\)"),
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


# --- the contract suite: every coupling -------------------------------------------------------
#
# Each case: the coupling, whether its result is a permutation, whether it takes floating
# conditions, and a copy with a changed leaf (retrace check). All checks share the jitted
# ``_PAIR`` / ``_PLAN`` below (the coupling is an argument), so each coupling type compiles once
# per condition structure: Sinkhorn's compile dominates this file's time.


class Case:
    def __init__(self, coupling, *, permutation, floats, changed=None):
        self.coupling = coupling
        self.permutation = permutation
        self.floats = floats  # takes floating conditions
        self.changed = coupling if changed is None else changed


_SK = dict(epsilon=0.05, threshold=1e-4)
REGISTRY = {
    "independent": Case(C.IndependentCoupling(), permutation=True, floats=True),
    "exact": Case(C.ExactOTCoupling(), permutation=True, floats=False),
    "exact-cw": Case(C.ExactOTCoupling(cond_weight=2.0), permutation=True, floats=True,
                     changed=C.ExactOTCoupling(cond_weight=3.0)),
    **{
        f"sk-{mode}": Case(C.SinkhornCoupling(**_SK, sampling=mode), permutation=mode == "rounded",
                           floats=False, changed=C.SinkhornCoupling(**{**_SK, "epsilon": 0.07},
                                                                    sampling=mode))
        for mode in ("pairs", "rows", "rounded")
    },
    "sk-pairs-cw": Case(C.SinkhornCoupling(**_SK, cond_weight=2.0), permutation=False, floats=True,
                        changed=C.SinkhornCoupling(**{**_SK, "epsilon": 0.07}, cond_weight=4.0)),
}
NAMES = sorted(REGISTRY)
OT_CW_NAMES = [n for n in NAMES if REGISTRY[n].floats and n != "independent"]
N = 16  # one batch size for the whole suite: one compile per coupling and condition structure

def _conds(n, seed, kind):
    """Conditions of the data rows (the source rows carry the same: cond0 = cond1)."""
    labels = _labels(n, 3, seed)
    vectors = jax.random.normal(jax.random.key(seed + 100), (n, 2))
    return {"none": None, "labels": labels, "floats": vectors,
            "mixed": {"y": labels, "v": (vectors, vectors[:, 0])}}[kind]


def _richest(case):
    return "mixed" if case.floats else "labels"


def _check_valid(case, pairing, n, x0, x1, cond):
    src, tgt = np.asarray(pairing.source), np.asarray(pairing.target)
    assert pairing.source.shape == pairing.target.shape == (n,)
    assert pairing.source.dtype == pairing.target.dtype == jnp.int32
    assert src.min() >= 0 and tgt.min() >= 0 and src.max() < n and tgt.max() < n
    if case.permutation:
        assert sorted(src.tolist()) == list(range(n)) and sorted(tgt.tolist()) == list(range(n))
    if isinstance(case.coupling, C.SinkhornCoupling) and not case.permutation:
        if case.coupling.sampling == "rows":
            np.testing.assert_array_equal(src, np.arange(n))
        if cond is None:
            return  # an entropic plan has no empty cell without labels
        plan = np.asarray(_PLAN(case.coupling, x0, x1, cond))
        assert (plan[src, tgt] > 0).all()  # every drawn pair is a cell of the plan


@pytest.mark.parametrize("name", NAMES)
def test_contract_valid_pairing_and_labels_never_crossed(name):
    case = REGISTRY[name]
    # without conditions at n = 64: the same compiles as test_sinkhorn_sampling_modes
    for kind, n in (("none", 64), (_richest(case), N)):
        x0, x1 = _clouds(n, 2, 20)
        cond = _conds(n, 21, kind)
        pairing = _PAIR(case.coupling, jax.random.key(2), x0, x1, cond)
        _check_valid(case, pairing, n, x0, x1, cond)
        if kind != "none":
            labels = cond if kind == "labels" else cond["y"]
            np.testing.assert_array_equal(labels[pairing.source], labels[pairing.target])


@pytest.mark.parametrize("name", NAMES)
def test_contract_float_cond_used_or_refused(name):
    case = REGISTRY[name]
    x0, x1 = _clouds(N, 2, 22)
    cond = _conds(N, 23, "mixed")
    if case.floats:
        _check_valid(case, _PAIR(case.coupling, jax.random.key(0), x0, x1, cond), N, x0, x1, cond)
    else:
        for c in (cond, cond["v"][1]):  # a pytree, and a bare (B,) float vector
            with pytest.raises(ValueError, match="cond_weight is None.*give cond_weight"):
                case.coupling(jax.random.key(0), x0, x1, c, c)


@pytest.mark.parametrize("name", OT_CW_NAMES)
def test_contract_large_cond_weight_matches_conditions(name):
    # C2OT: source row i carries data row i's condition; a heavy weight pairs equal conditions
    case = REGISTRY[name]
    x0, x1 = _clouds(N, 2, 24)
    heavy = dataclasses.replace(case.coupling, cond_weight=1e3)
    cond = _conds(N, 25, "mixed")  # labels and floats: both apply
    pairing = _PAIR(heavy, jax.random.key(3), x0, x1, cond)
    np.testing.assert_array_equal(pairing.source, pairing.target)
    light = _PAIR(dataclasses.replace(case.coupling, cond_weight=0.0), jax.random.key(3), x0, x1, cond)
    assert (np.asarray(light.source) != np.asarray(light.target)).any()  # the weight did it


@pytest.mark.parametrize("w", [0.0, 0.5, 5.0])
@pytest.mark.parametrize("kind", ["floats", "mixed"])
def test_exact_cond_weight_is_the_scipy_optimum_of_the_augmented_cost(w, kind):
    n = 64
    x0, x1 = _clouds(n, 3, 26)
    cond = _conds(n, 27, kind)
    pairing = C.ExactOTCoupling(cond_weight=w)(jax.random.key(0), x0, x1, cond, cond)
    sq = lambda a, b: ((np.asarray(a, np.float64).reshape(n, 1, -1)
                        - np.asarray(b, np.float64).reshape(1, n, -1)) ** 2).sum(-1)
    floats = [cond] if kind == "floats" else list(cond["v"])
    aug = sq(x0, x1) + w * sum(sq(c, c) for c in floats)
    if kind == "mixed":
        y = np.asarray(cond["y"])
        aug = np.where(y[:, None] == y[None, :], aug, np.inf)  # forbidden: cross-label pairs
    r, c = linear_sum_assignment(aug)
    src, tgt = np.asarray(pairing.source), np.asarray(pairing.target)
    np.testing.assert_allclose(aug[src, tgt].sum(), aug[r, c].sum(), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_contract_jit_equals_eager(name):
    case = REGISTRY[name]
    x0, x1 = _clouds(N, 2, 20)
    cond = _conds(N, 21, _richest(case))
    eager = case.coupling(jax.random.key(2), x0, x1, cond, cond)
    jitted = _PAIR(case.coupling, jax.random.key(2), x0, x1, cond)
    np.testing.assert_array_equal(eager.source, jitted.source)
    np.testing.assert_array_equal(eager.target, jitted.target)


@pytest.mark.parametrize("name", NAMES)
def test_contract_vmap_equals_loop(name):
    case, k = REGISTRY[name], 3
    keys = jax.random.split(jax.random.key(5), k)
    x0 = jax.random.normal(jax.random.key(6), (k, N, 2))
    x1 = jax.random.normal(jax.random.key(7), (k, N, 2)) + 1.0
    kind = _richest(case)
    cond = jax.tree.map(lambda *a: jnp.stack(a), *[_conds(N, 30 + i, kind) for i in range(k)])
    batched = jax.jit(jax.vmap(case.coupling))(keys, x0, x1, cond, cond)
    for i in range(k):
        ci = jax.tree.map(lambda a, i=i: a[i], cond)
        one = _PAIR(case.coupling, keys[i], x0[i], x1[i], ci)
        np.testing.assert_array_equal(batched.source[i], one.source)
        np.testing.assert_array_equal(batched.target[i], one.target)


@pytest.mark.parametrize("name", NAMES)
def test_contract_leaf_change_does_not_retrace(name):
    case = REGISTRY[name]
    x0, x1 = _clouds(N, 2, 31)
    cond = _conds(N, 32, _richest(case))
    _PAIR(case.coupling, jax.random.key(0), x0, x1, cond)
    before = len(_TRACES)
    _PAIR(case.changed, jax.random.key(1), x0 + 1.0, x1, cond)
    assert len(_TRACES) == before
    if case.changed is not case.coupling:
        assert jax.tree.leaves(case.changed) != jax.tree.leaves(case.coupling)


# --- condition inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["independent", "exact-ot", "sinkhorn"])
def test_integer_label_column_is_a_clear_error(name):
    x0, x1 = _clouds(4, 2, 33)
    col = jnp.zeros((4, 1), jnp.int32)
    with pytest.raises(ValueError, match=r"shape \(4,\).*\(4, 1\).*labels\[:, 0\].*float"):
        C.get_coupling(name)(jax.random.key(0), x0, x1, col, col)


def test_float_labels_in_independent_do_not_reach_lexsort():
    x0, x1 = _clouds(6, 2, 34)
    c = jnp.arange(6.0)
    p = C.IndependentCoupling()(jax.random.key(0), x0, x1, c, c)  # continuous: rows follow
    np.testing.assert_array_equal(p.source, np.arange(6))
    np.testing.assert_array_equal(p.target, np.arange(6))


def test_several_label_leaves_must_all_match():
    n = 24
    x0, x1 = _clouds(n, 2, 35)
    cond = (_labels(n, 2, 36), jnp.asarray(_labels(n, 3, 37) == 0))  # int and bool labels
    for coupling in (C.IndependentCoupling(), C.ExactOTCoupling()):
        p = _PAIR(coupling, jax.random.key(0), x0, x1, cond)
        for lab in cond:
            np.testing.assert_array_equal(lab[p.source], lab[p.target])


@pytest.mark.parametrize(
    "c0,c1,match",
    [
        ({"a": jnp.zeros(4)}, {"b": jnp.zeros(4)}, "same pytree structure"),
        ((jnp.zeros(4), jnp.zeros((3, 2))), (jnp.zeros(4), jnp.zeros((3, 2))),
         r"leading dimension 4 \(x0 has shape \(4, 2\)\), got a leaf of shape \(3, 2\)"),
        (jnp.zeros(()), jnp.zeros(()), r"leading dimension 4.*shape \(\)"),
        (jnp.zeros((4, 2)), jnp.zeros((4, 3)), r"agree in shape.*\(4, 2\).*\(4, 3\)"),
        (jnp.zeros(4, jnp.int32), jnp.zeros(4), "agree in shape and kind"),
        (jnp.zeros(4, jnp.complex64), jnp.zeros(4, jnp.complex64), "complex64"),
    ],
)
def test_bad_conditions(c0, c1, match):
    x0, x1 = _clouds(4, 2, 38)
    with pytest.raises(ValueError, match=match):
        C.ExactOTCoupling(cond_weight=1.0)(jax.random.key(0), x0, x1, c0, c1)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("cls", [C.ExactOTCoupling, C.SinkhornCoupling])
def test_cond_weight_is_validated(cls, bad):
    with pytest.raises(ValueError, match=r"cond_weight must be a finite number in \[0, inf\)"):
        cls(cond_weight=bad)


def test_cond_weight_may_be_traced_and_differentiated_through_nothing():
    x0, x1 = _clouds(8, 2, 39)
    c = _conds(8, 40, "floats")
    f = jax.jit(lambda w: C.ExactOTCoupling(cond_weight=w)(jax.random.key(0), x0, x1, c, c).target)
    np.testing.assert_array_equal(f(1e3), np.arange(8))
    np.testing.assert_array_equal(f(0.0), C.ExactOTCoupling()(jax.random.key(0), x0, x1).target)
