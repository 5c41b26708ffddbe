"""Tests for flowjax_fm.metrics: Wasserstein distances against closed forms and scipy, MMD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from flowjax_fm import data
from flowjax_fm.metrics import mmd, wasserstein


def _rng(seed=0):
    return np.random.default_rng(seed)


def _scipy_wasserstein(x, y, p):
    cost = cdist(x, y, "sqeuclidean" if p == 2 else "euclidean")
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean() ** (1 / p)


@pytest.mark.parametrize("p", [1, 2])
def test_translation_is_its_norm(p):
    x = _rng().normal(size=(300, 2))
    shift = np.array([1.5, -2.0])
    # W2: the optimal plan of a translation is the identity; W1 >= |E[x - y]| = |shift|.
    np.testing.assert_allclose(wasserstein(x, x + shift, p=p), 2.5, rtol=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_one_dimensional_sorted_matching(p):
    x, y = _rng(1).normal(size=(257, 1)), _rng(2).exponential(size=(257, 1))
    expected = (np.abs(np.sort(x[:, 0]) - np.sort(y[:, 0])) ** p).mean() ** (1 / p)
    np.testing.assert_allclose(wasserstein(x, y, p=p), expected, rtol=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_against_scipy_symmetric_and_self(p):
    x = _rng(3).normal(size=(200, 2))
    y = _rng(4).normal(size=(200, 2)) * [0.5, 2.0] + 1.0
    w = wasserstein(x, y, p=p)
    assert isinstance(w, np.float64)
    np.testing.assert_allclose(w, _scipy_wasserstein(x, y, p), rtol=1e-6)
    np.testing.assert_allclose(wasserstein(y, x, p=p), w, rtol=1e-6)
    assert wasserstein(x, x[::-1], p=p) < 1e-6


def test_w1_at_most_w2_and_events_flattened():
    x = _rng(5).normal(size=(64, 3, 2))
    y = _rng(6).normal(size=(64, 3, 2)) + 0.3
    w1, w2 = wasserstein(x, y, p=1), wasserstein(x, y, p=2)
    assert 0 < w1 <= w2
    flat = wasserstein(x.reshape(64, 6), y.reshape(64, 6))
    np.testing.assert_allclose(w2, flat, rtol=1e-12)
    np.testing.assert_allclose(w2, _scipy_wasserstein(x.reshape(64, 6), y.reshape(64, 6), 2), rtol=1e-6)


def test_accepts_jax_arrays_and_single_points():
    x = data.sample_toy("moons", jax.random.key(0), 100)
    y = data.sample_toy("8gaussians", jax.random.key(0), 100)
    np.testing.assert_allclose(wasserstein(x, y), wasserstein(np.asarray(x), np.asarray(y)))
    with pytest.warns(UserWarning, match="one-point set"):
        np.testing.assert_allclose(wasserstein(np.zeros((1, 2)), np.array([[3.0, 4.0]])), 5.0)


@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_close_to_exact(p):
    x = _rng(7).normal(size=(150, 2))
    y = _rng(8).normal(size=(150, 2)) * 0.5 + [4.0, 0.0]
    exact = wasserstein(x, y, p=p)
    approx = wasserstein(x, y, p=p, method="sinkhorn", epsilon=1e-3 * exact**p)
    assert exact * (1 - 1e-3) <= approx <= exact * 1.01, (approx, exact)
    default = wasserstein(x, y, p=p, method="sinkhorn")  # epsilon 0.01 x mean cost
    assert exact * (1 - 1e-3) <= default <= exact * 1.05, (default, exact)


def test_sinkhorn_unequal_sizes():
    x = _rng(9).normal(size=(120, 2))
    y = _rng(10).normal(size=(80, 2)) + [3.0, 0.0]
    w = wasserstein(x, y, method="sinkhorn", epsilon=0.01)
    # a Gaussian pair: W2 is about |mean difference| (= 3) plus a small sampling term
    assert 2.9 < w < 3.3


def test_wasserstein_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"equal size.*\(4, 2\) and \(3, 2\).*sinkhorn"):
        wasserstein(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"same event shape.*\(4, 2\) and \(4, 3\)"):
        wasserstein(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(N, \*event\), got shape \(4,\)"):
        wasserstein(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="at least one point"):
        wasserstein(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        wasserstein(x, x, p=3)
    with pytest.raises(ValueError, match="unknown method 'emd'; choose one of"):
        wasserstein(x, x, method="emd")
    with pytest.raises(ValueError, match="non-finite"):
        wasserstein(x, np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="only used with method='sinkhorn'"):
        wasserstein(x, x, epsilon=0.1)
    with pytest.raises(ValueError, match=r"epsilon must be a finite number in \(0, inf\)"):
        wasserstein(x, x, method="sinkhorn", epsilon=0.0)
    with pytest.raises(ValueError, match="cannot be traced"):
        jax.jit(wasserstein)(jnp.zeros((4, 2)), jnp.zeros((4, 2)))


def _mmd_dense(x, y, bandwidths):
    def k(a, b):
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return np.mean([np.exp(-d2 / (2 * h**2)) for h in bandwidths], axis=0)

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd_matches_dense_formula_across_blocks():
    x = _rng(11).normal(size=(700, 2))  # more rows than one kernel block (512)
    y = _rng(12).normal(size=(300, 2)) + 0.5
    bandwidths = (0.5, 1.0, 2.0)
    expected = _mmd_dense(x, y, bandwidths)
    np.testing.assert_allclose(float(mmd(x, y, bandwidths=bandwidths)), expected, rtol=1e-3)
    np.testing.assert_allclose(float(mmd(y, x, bandwidths=bandwidths)), expected, rtol=1e-3)


def test_mmd_same_distribution_near_zero_shift_positive():
    # i.i.d. samples (not moons, whose evenly spaced arcs bias the unbiased estimator down)
    draws = [data.sample_toy("gaussian", jax.random.key(s), 500) for s in range(12)]
    null = np.array([float(mmd(draws[2 * i], draws[2 * i + 1])) for i in range(6)])
    spread = max(np.abs(null).max(), 1e-5)
    assert abs(null.mean()) < 3 * spread / np.sqrt(len(null)) + 1e-4
    assert spread < 5e-3  # O(1/n)
    shifted = float(mmd(draws[0], draws[1] + jnp.array([1.0, 0.0])))
    assert shifted > 5 * spread, (shifted, null)


def test_mmd_jit_bandwidths_and_dtype():
    x = data.sample_toy("gaussian", jax.random.key(0), 200)
    y = data.sample_toy("gaussian", jax.random.key(1), 300) + 1.0
    eager = mmd(x, y)
    assert eager.shape == () and eager.dtype == jnp.float32
    np.testing.assert_allclose(float(jax.jit(mmd)(x, y)), float(eager), rtol=1e-5)
    single = mmd(x, y, bandwidths=1.0)
    np.testing.assert_allclose(float(single), _mmd_dense(np.asarray(x), np.asarray(y), [1.0]), rtol=1e-3)


def test_mmd_errors():
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"N >= 2 points, got shape \(1, 2\)"):
        mmd(jnp.zeros((1, 2)), x)
    with pytest.raises(ValueError, match=r"N >= 2 points, got shape \(4,\)"):
        mmd(x, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"same event shape.*\(4, 2\) and \(4, 3\)"):
        mmd(x, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-empty 1D"):
        mmd(x, x, bandwidths=[])
