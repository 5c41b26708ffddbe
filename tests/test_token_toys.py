"""Token toys: grid tokens against their exact table, the Markov digits against their chain, and
input errors (fixed keys; Monte Carlo bounds from the expected sampling error)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from flowjax_fm.data import _token_toys as tt


def _histogram(x: np.ndarray, vocab: int) -> np.ndarray:
    x = np.asarray(x)
    return np.bincount(x[:, 0] * vocab + x[:, 1], minlength=vocab * vocab).reshape(vocab, vocab) / len(x)


def _tv_bound(p: np.ndarray, n: int) -> float:
    """Twice the expected TV of an n-sample histogram of p (E|p_hat - p| ~ sqrt(2 p (1 - p) / (pi n)))."""
    return 2 * 0.5 * float(np.sum(np.sqrt(2 * p * (1 - p) / (math.pi * n))))


@pytest.mark.parametrize("name", ["checkerboard", "moons"])
def test_grid_tokens_follow_their_table(name):
    vocab, n = 16, 40_000
    x = tt.grid_tokens(jax.random.key(0), n, name=name, vocab=vocab)
    assert x.shape == (n, 2) and x.dtype == jnp.int32
    assert int(x.min()) >= 0 and int(x.max()) < vocab
    table = tt.grid_token_probs(name, vocab)
    assert table.shape == (vocab, vocab) and table.dtype == jnp.float32
    p = np.asarray(table, np.float64)
    tv = 0.5 * np.abs(_histogram(x, vocab) - p).sum()
    assert tv < _tv_bound(p, n), (tv, _tv_bound(p, n))
    assert np.all(_histogram(x, vocab)[p == 0] == 0)  # never outside the support


def test_checkerboard_table_is_exact():
    # V a multiple of 4: cells inside the squares, 1 / (V^2 / 2) each on the on-squares
    p = np.asarray(tt.grid_token_probs("checkerboard", 8))
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    on = (i // 2 + j // 2) % 2 == 0
    np.testing.assert_allclose(p, np.where(on, 1 / 32, 0.0), atol=1e-7)
    # V = 6: cells straddle the squares; the area formula against a dense midpoint rule
    p6 = np.asarray(tt.grid_token_probs("checkerboard", 6), np.float64)
    z = (np.arange(1200) + 0.5) / 1200 * 8 - 4
    zx, zy = np.meshgrid(z, z, indexing="ij")
    dense = ((np.floor(zx / 2) + np.floor(zy / 2)) % 2 == 0).astype(float)
    cell = np.floor((z + 4) * 6 / 8).astype(int)
    ref = np.zeros((6, 6))
    np.add.at(ref, (cell[:, None].repeat(1200, 1), cell[None, :].repeat(1200, 0)), dense)
    np.testing.assert_allclose(p6, ref / ref.sum(), atol=1e-6)
    np.testing.assert_allclose(p6, p6.T, atol=1e-7)


def test_moons_table_sums_to_one_inside_the_box():
    p = np.asarray(tt.grid_token_probs("moons", 32))
    assert abs(p.sum() - 1) < 1e-5 and p.min() >= 0
    assert p[0].sum() > 0 and p[-1].sum() > 0  # the box is the support: edge columns are used


def test_markov_chain_is_stochastic():
    init, trans = tt.markov_chain(10)
    np.testing.assert_allclose(init.sum(), 1, atol=1e-6)
    np.testing.assert_allclose(trans.sum(axis=1), np.ones(10), atol=1e-6)
    assert float(trans.min()) == pytest.approx(0.01)


def test_markov_digits_transitions_and_likelihood():
    vocab, length, n = 10, 16, 20_000
    x = np.asarray(tt.markov_digits(jax.random.key(1), n, length=length, vocab=vocab))
    assert x.shape == (n, length) and x.dtype == np.int32
    init, trans = (np.asarray(a, np.float64) for a in tt.markov_chain(vocab))
    # first token uniform; the transition counts pooled over positions (given the state, each
    # is a fresh draw from P's row): one chi-square test over all rows, at level 1e-4
    first = np.bincount(x[:, 0], minlength=vocab) / n
    assert 0.5 * np.abs(first - init).sum() < _tv_bound(init[None], n)
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    expected = counts.sum(1, keepdims=True) * trans
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < scipy.stats.chi2.ppf(1 - 1e-4, vocab * (vocab - 1)), chi2
    # the log-likelihood: a direct loop, and its mean on true strings = minus the entropy
    lp = np.asarray(tt.markov_log_prob(jnp.asarray(x[:50])))
    ref = [np.log(init[s[0]]) + np.log(trans[s[:-1], s[1:]]).sum() for s in x[:50]]
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    marg, entropy = init.copy(), -np.sum(init * np.log(init))
    row_entropy = -np.sum(trans * np.log(trans), axis=1)
    for _ in range(length - 1):
        entropy += marg @ row_entropy
        marg = marg @ trans
    all_lp = np.asarray(tt.markov_log_prob(jnp.asarray(x)))
    assert abs(all_lp.mean() + entropy) < 4 * all_lp.std() / math.sqrt(n)


def test_markov_log_prob_under_jit():
    x = tt.markov_digits(jax.random.key(2), 8, length=5)
    np.testing.assert_allclose(jax.jit(tt.markov_log_prob)(x), tt.markov_log_prob(x), rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: tt.grid_tokens(jax.random.key(0), 4, name="spiral"), "unknown name .spiral.; choose one of"),
        (lambda: tt.grid_tokens(jax.random.key(0), 0), "n must be an int >= 1"),
        (lambda: tt.grid_tokens(jax.random.key(0), 4, vocab=1), "vocab must be an int >= 2"),
        (lambda: tt.grid_token_probs("moons", 1.5), "vocab must be an int >= 2"),
        (lambda: tt.markov_chain(1), "vocab must be an int >= 2"),
        (lambda: tt.markov_digits(jax.random.key(0), 4, length=0), "length must be an int >= 1"),
        (lambda: tt.markov_log_prob(jnp.zeros((2, 3))), r"tokens of shape \(B, L\), got shape \(2, 3\)"),
        (lambda: tt.markov_log_prob(jnp.zeros((3,), jnp.int32)), r"got shape \(3,\)"),
        (lambda: tt.markov_log_prob(jnp.full((2, 3), 10)), r"must lie in \[0, 10\)"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
