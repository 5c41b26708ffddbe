"""LargeSinkhornCoupling: the dense Sinkhorn plan without the B x B matrix.

Against the dense reference (ott-jax on the full cost matrix, as SinkhornCoupling solves it):
the same potentials, so the same plan; draws that follow the plan's rows; the same pairs
whatever the block size; the marginal check; and, at 16,384 points, a compiled program whose
working memory is a small fraction of one n x n matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm.couplings._large_sinkhorn import gumbel_argmax

C = fm.couplings
LS = C.LargeSinkhornCoupling
N = 96
X0 = jax.random.normal(jax.random.key(1), (N, 2))
X1 = 0.5 * jax.random.normal(jax.random.key(2), (N, 2)) + 1.0
# one static configuration shared by most tests (epsilon and threshold are leaves): few compiles
BASE = dict(relative_epsilon="mean", threshold=1e-5, chunk=7, throw=False)
pair = jax.jit(lambda cp, key, x0, x1, c0=None, c1=None: cp(key, x0, x1, c0, c1))
potentials = jax.jit(lambda cp, x0, x1, c0=None, c1=None: cp.potentials(x0, x1, c0, c1))


@jax.jit
def _dense_jit(cost, eps):
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    geom = geometry.Geometry(cost_matrix=cost, epsilon=eps)
    out = sinkhorn.Sinkhorn(threshold=1e-5)(linear_problem.LinearProblem(geom))
    return out.f, out.g, out.matrix


def _dense(eps, cost=None):
    """The reference: ott-jax Sinkhorn on the stored (centred) cost matrix, as SinkhornCoupling."""
    cost = C.squared_distances(X0, X1) if cost is None else cost
    return tuple(np.asarray(v, np.float64) for v in _dense_jit(cost, eps)) + (np.asarray(cost),)


@pytest.fixture(scope="module")
def solved():
    f, g, eps = potentials(LS(epsilon=0.05, **BASE), X0, X1)
    return np.asarray(f, np.float64), np.asarray(g, np.float64), float(eps)


def test_potentials_and_plan_equal_the_dense_solve(solved):
    f, g, eps = solved
    cost = np.asarray(C.squared_distances(X0, X1), np.float64)
    assert eps == pytest.approx(0.05 * cost.mean(), rel=1e-5)  # the mean without the matrix
    fd, gd, plan, _ = _dense(eps)
    # potentials are defined up to f + c, g - c: compare the gauge-free sums and the plans
    np.testing.assert_allclose(f[:, None] + g[None, :], fd[:, None] + gd[None, :], atol=1e-3 * eps)
    ours = np.exp((f[:, None] + g[None, :] - cost) / eps)
    np.testing.assert_allclose(ours, plan, atol=1e-4 * plan.max())
    np.testing.assert_allclose(ours.sum(1), 1.0 / N, rtol=1e-3)


def _conditional_means_agree(rows, cols, plan):
    """Per source row, the mean partner of the draws against the plan's conditional mean:
    every |z| < 5 (192 z-scores; a correct sampler exceeds 5 with probability ~1e-4)."""
    cond = plan / plan.sum(1, keepdims=True)
    x1 = np.asarray(X1, np.float64)
    mean = cond @ x1
    var = cond @ x1**2 - mean**2
    for i in range(N):
        picked = cols[rows == i]
        if len(picked) < 30:
            continue
        z = (x1[picked].mean(0) - mean[i]) / np.sqrt(var[i] / len(picked) + 1e-12)
        assert np.all(np.abs(z) < 5), (i, z)


@pytest.mark.parametrize("sampling", ["rows", "pairs"])
def test_any_chunk_gives_the_same_pairs(sampling):
    """14 blocks of 7 columns (the last one padded) against one block of all 96."""
    blocks, whole = (np.asarray(pair(LS(epsilon=0.05, **{**BASE, "chunk": c}, sampling=sampling),
                                     jax.random.key(3), X0, X1).target) for c in (7, 96))
    np.testing.assert_array_equal(blocks, whole)


@pytest.mark.parametrize("sampling", ["rows", "pairs"])
def test_draws_follow_the_dense_plan(solved, sampling):
    _, _, eps = solved
    _, _, plan, _ = _dense(eps)
    # the compiled programs of the chunk test above (chunk 7 / 96), so nothing new compiles
    cp = LS(epsilon=0.05, **{**BASE, "chunk": 7 if sampling == "rows" else 96}, sampling=sampling)
    draws = [pair(cp, jax.random.key(k), X0, X1) for k in range(300)]
    rows = np.concatenate([np.asarray(d.source) for d in draws])
    cols = np.concatenate([np.asarray(d.target) for d in draws])
    if sampling == "rows":
        assert (rows == np.tile(np.arange(N), 300)).all()
    else:  # rows from the row marginal (1/N each): counts within 5 sd of 300 each
        counts = np.bincount(rows, minlength=N)
        assert np.abs(counts - 300).max() < 5 * np.sqrt(300)
    _conditional_means_agree(rows, cols, plan)
    # the joint frequencies: total variation close to what exact draws from the plan give
    freq = np.zeros((N, N))
    np.add.at(freq, (rows, cols), 1.0)
    p = plan / plan.sum()
    tv = 0.5 * np.abs(freq / freq.sum() - p).sum()
    ref = np.random.default_rng(0).multinomial(len(rows), p.ravel() / p.sum()).reshape(N, N)
    tv_ref = 0.5 * np.abs(ref / ref.sum() - p).sum()
    assert tv < 1.15 * tv_ref + 0.01, (tv, tv_ref)


def test_gumbel_blocks_draw_the_same_columns():
    """The sampling step alone, on fixed potentials: exactly the same columns for any block."""
    g = jax.random.normal(jax.random.key(4), (N,))
    got = [np.asarray(gumbel_argmax(jax.random.key(5), X0, X1, g, 0.1, c)) for c in (3, 200)]
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])


def test_marginal_error_is_checked_and_reported():
    good = pair(LS(epsilon=0.05, **BASE), jax.random.key(0), X0, X1)
    assert bool(good.converged) and float(good.marginal_error) < 1e-3
    bad = pair(LS(epsilon=1e-4, **BASE), jax.random.key(0), X0, X1)  # 2,000 iterations short
    assert not bool(bad.converged) and float(bad.marginal_error) > 0.01
    with pytest.raises(RuntimeError, match=r"marginal error \(relative L1\) is above marginal_tol"):
        LS(epsilon=1e-4, max_iterations=20)(jax.random.key(0), X0, X1)


def test_float_conditions_enter_the_cost_and_labels_are_refused():
    c = jax.random.normal(jax.random.key(6), (N, 1))
    cp = LS(epsilon=0.05, **BASE, cond_weight=2.0)
    f, g, eps = potentials(cp, X0, X1, c, c)
    cost = C.squared_distances(X0, X1) + 2.0 * C.squared_distances(c, c)
    _, _, plan, cost = _dense(eps, cost)
    ours = np.exp((np.asarray(f, np.float64)[:, None] + np.asarray(g)[None, :] - cost) / float(eps))
    np.testing.assert_allclose(ours, plan, atol=1e-4 * plan.max())
    with pytest.raises(ValueError, match="cond_weight is None"):
        LS()(jax.random.key(0), X0, X1, c, c)
    labels = jnp.arange(N) % 2
    with pytest.raises(ValueError, match="does not take integer labels"):
        LS(cond_weight=1.0)(jax.random.key(0), X0, X1, labels, labels)


def test_construction_checks_and_registry():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="epsilon must be a finite number in"):
            LS(epsilon=bad)
    with pytest.raises(ValueError, match="chunk must be an int >= 1"):
        LS(chunk=0)
    with pytest.raises(ValueError, match="unknown sampling 'rounded'"):
        LS(sampling="rounded")
    assert C.get_coupling("large-sinkhorn", epsilon=0.1) == LS(epsilon=0.1)


def test_a_new_epsilon_does_not_recompile():
    pair(LS(epsilon=0.05, **BASE), jax.random.key(0), X0, X1)
    before = pair._cache_size()
    pair(LS(epsilon=0.07, **BASE), jax.random.key(0), X0, X1)
    assert pair._cache_size() == before


BIG = 16_384
BIG_COUPLING = LS(epsilon=0.1, relative_epsilon="mean", anderson=5, chunk=1024)


@pytest.fixture(scope="module")
def big_compiled():
    x = jax.ShapeDtypeStruct((BIG, 2), jnp.float32)
    return jax.jit(BIG_COUPLING.__call__).lower(jax.random.key(0), x, x).compile()


def test_working_memory_is_blocks_not_the_matrix(big_compiled):
    """XLA's own count of the compiled program's scratch memory at 16,384 points: a few
    16,384 x 1,024 blocks (64 MB each), well under one 16,384^2 float32 matrix (1.07 GB)."""
    temp = big_compiled.memory_analysis().temp_size_in_bytes
    assert temp < 0.5 * BIG * BIG * 4, temp / 1e6


@pytest.mark.slow
def test_pairs_16k_points(big_compiled):
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = fm.data.sample_toy("8gaussians", k0, BIG)
    x1 = fm.data.sample_toy("moons", k1, BIG)
    p = big_compiled(jax.random.key(1), x0, x1)
    assert bool(p.converged) and float(p.marginal_error) < 1e-2
    per_pair = float(jnp.mean(jnp.sum((x0[p.source] - x1[p.target]) ** 2, axis=1)))
    independent = float(jnp.mean(jnp.sum((x0 - x1) ** 2, axis=1)))
    assert per_pair < 0.35 * independent
