"""Semidiscrete OT coupling (SD-FM): the learned potential, the search, the training hook."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy.optimize import linear_sum_assignment

import flowjax_fm as fm
from flowjax_fm.couplings import SemidiscreteCoupling, fit_semidiscrete
from flowjax_fm.training import Batch

KEY = jax.random.key(0)
# four points in 2D, unequal distances to the source's mass: g = 0 would be far from uniform
DATA4 = jnp.array([[0.0, 0.0], [1.5, 0.5], [-1.0, 2.0], [3.0, -1.0]])


def brute_force(x0, data, g):
    """Index of min_j |x - y_j|^2 - g_j, in float64 numpy."""
    x = np.asarray(x0, np.float64).reshape(len(x0), -1)
    y = np.asarray(data, np.float64).reshape(len(data), -1)
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) - np.asarray(g, np.float64)[None]
    return cost.argmin(1), cost


def assign(sd, key, x0):
    """``sd.assign`` compiled once (eager dispatch of its many small ops is the slow part)."""
    return np.asarray(jax.jit(sd.assign)(key, x0))


@functools.cache
def fitted(epsilon: float) -> SemidiscreteCoupling:
    return fit_semidiscrete(jax.random.key(1), DATA4, epsilon=epsilon, num_steps=600,
                            batch_size=256, learning_rate=0.05, num_check=20_000)


# -- (1) the learned potential solves the tiny problem ------------------------------------


def test_learned_potential_is_the_semidiscrete_ot():
    sd = fitted(0.0)
    m = 100_000
    x0 = jax.random.normal(jax.random.key(7), (m, 2))
    idx = np.asarray(jax.jit(sd.assign)(KEY, x0))
    # (i) each point receives 1/4 of the source mass. Monte-Carlo sd of a share:
    # sqrt(p (1 - p) / m) = 0.0014; the optimisation error is larger
    share = np.bincount(idx, minlength=4) / m
    np.testing.assert_allclose(share, 0.25, atol=0.015)
    # without the potential the nearest-point shares are far from uniform (the test is not vacuous)
    near = np.bincount(brute_force(x0[:20_000], DATA4, np.zeros(4))[0], minlength=4) / 20_000
    assert np.abs(near - 0.25).max() > 0.1
    info = sd.info
    assert info.marginal_tv < 3 * info.marginal_tv_floor + 0.01
    assert abs(info.marginal_chi2) < 0.01
    assert info.num_steps == 600
    # (ii) the cost of the pairs is the OT cost: exact OT (scipy) between n source points and
    # each data point replicated n / 4 times estimates it (Monte-Carlo noise ~1-2% at n = 2000)
    n = 2000
    xs = np.asarray(jax.random.normal(jax.random.key(11), (n, 2)), np.float64)
    y = np.repeat(np.asarray(DATA4, np.float64), n // 4, axis=0)
    cost = ((xs[:, None] - y[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].mean()
    ours = float(((np.asarray(x0) - np.asarray(DATA4)[idx]) ** 2).sum(-1).mean())
    assert abs(ours - exact) / exact < 0.04, (ours, exact)
    assert abs(info.dual - exact) / exact < 0.04, (info.dual, exact)  # the dual value too
    assert abs(info.transport_cost - ours) / ours < 0.02


def test_threshold_stops_the_solver_early_and_says_so():
    # ott-jax checks its chi^2 every ceil(200 / 20) = 10 steps; 10.0 is met at the first check
    sd = fit_semidiscrete(jax.random.key(2), DATA4, num_steps=200, threshold=10.0, num_check=256)
    assert sd.info.num_steps == 10
    assert 0.0 < sd.info.solver_chi2 < 10.0


# -- (2) g = 0 is the nearest data row; any g is the brute-force argmin --------------------


@pytest.mark.parametrize("event", [(3,), (2, 3)])
@pytest.mark.parametrize("zero", [True, False])
def test_assign_is_the_brute_force_argmin(event, zero):
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    data = jax.random.normal(k1, (300, *event))
    g = jnp.zeros(300) if zero else 0.5 * jax.random.normal(k2, (300,))
    x0 = 1.5 * jax.random.normal(k3, (128, *event))
    sd = SemidiscreteCoupling(data, g, chunk_size=100, block_size=16)
    idx = assign(sd, KEY, x0)
    ref, cost = brute_force(x0, data, g)
    rows = np.arange(len(ref))
    np.testing.assert_allclose(cost[rows, idx], cost[rows, ref], atol=1e-4)  # optimal
    np.testing.assert_array_equal(idx, ref)
    assert idx.dtype == np.int32


def test_far_from_origin_data_keep_their_digits():
    # centring at the data mean: an offset of 1e4 would swamp float32 scores otherwise
    data = jnp.array([[1e4, 0.0], [1e4 + 1.0, 0.0], [1e4 + 2.0, 0.0]])
    sd = SemidiscreteCoupling(data, jnp.zeros(3))
    x0 = jnp.array([[1e4 + 0.4, 0.0], [1e4 + 0.6, 0.0], [1e4 + 1.7, 0.0]])
    assert assign(sd, KEY, x0).tolist() == [0, 1, 2]


# -- (3) the chunked search is the unchunked one -----------------------------------------


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_chunked_assign_equals_unchunked(epsilon):
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    data = jax.random.normal(k1, (1000, 2))
    g = 0.3 * jax.random.normal(k2, (1000,))
    x0 = jax.random.normal(k3, (64, 2))
    whole = assign(SemidiscreteCoupling(data, g, epsilon, chunk_size=10**6, block_size=16), KEY, x0)
    for chunk in (1, 333):  # smaller than a block; uneven, the last chunk short
        part = assign(SemidiscreteCoupling(data, g, epsilon, chunk_size=chunk, block_size=16), KEY, x0)
        np.testing.assert_array_equal(part, whole, err_msg=f"chunk {chunk}")
    if epsilon == 0.0:  # the block size does not change an argmin either
        for block in (1, 7, 4096):
            other = assign(SemidiscreteCoupling(data, g, chunk_size=256, block_size=block), KEY, x0)
            np.testing.assert_array_equal(other, whole, err_msg=f"block {block}")


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_assign_under_jit_and_vmap_and_a_traced_epsilon(epsilon):
    data = jax.random.normal(jax.random.key(5), (50, 2))
    g = 0.2 * jax.random.normal(jax.random.key(6), (50,))
    xs = jax.random.normal(jax.random.key(8), (3, 16, 2))
    keys = jax.random.split(KEY, 3)
    sd = SemidiscreteCoupling(data, g, epsilon, chunk_size=20, block_size=8)
    one = jax.jit(sd.assign)
    loop = np.stack([np.asarray(one(k, x)) for k, x in zip(keys, xs, strict=True)])
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(sd.assign))(keys, xs)), loop)
    # the coupling as an argument: epsilon is traced and picks its branch at run time
    traced = jax.jit(lambda c, k, x: c.assign(k, x))(sd, keys[0], xs[0])
    np.testing.assert_array_equal(np.asarray(traced), loop[0])


# -- (4) the training hook -----------------------------------------------------------------


def test_transform_replaces_x1_and_carries_the_conditions():
    data = jax.random.normal(jax.random.key(9), (40, 2))
    labels = jnp.arange(40, dtype=jnp.int32) % 3
    feats = {"y": labels, "v": jnp.arange(40.0)[:, None]}
    sd = SemidiscreteCoupling(data, jnp.zeros(40), cond=feats)
    x0 = jax.random.normal(jax.random.key(10), (8, 2))
    out = jax.jit(sd.transform)(KEY, Batch(x0, jnp.zeros((8, 2)), None))
    idx = assign(sd, KEY, x0)
    np.testing.assert_array_equal(np.asarray(out.x0), np.asarray(x0))
    np.testing.assert_array_equal(np.asarray(out.x1), np.asarray(data)[idx])
    np.testing.assert_array_equal(np.asarray(out.cond["y"]), np.asarray(labels)[idx])
    np.testing.assert_array_equal(np.asarray(out.cond["v"])[:, 0], idx.astype(np.float32))
    with pytest.raises(ValueError, match="carries conditions but the coupling holds none"):
        SemidiscreteCoupling(data, jnp.zeros(40)).transform(KEY, Batch(x0, x0, labels[:8]))


def test_transform_trains_inside_fit_with_conditions():
    data = jax.random.normal(jax.random.key(12), (64, 2)) + 2.0
    labels = (data[:, 0] > 2.0).astype(jnp.int32)
    sd = SemidiscreteCoupling(data, jnp.zeros(64), cond=labels)
    model = fm.models.MLP(2, (16,), num_classes=2, rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    train = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())

    def step(state, key, x0, x1, cond):  # also records what the step received
        state, metrics = train(state, key, x0, x1, cond)
        return state, dict(metrics, x0=x0, x1=x1, cond=cond)

    state, hist = fm.training.fit(step, fm.training.init_state(model, opt), KEY, None, (data, labels),
                                  num_steps=4, batch_size=8, progress=False, transform=sd.transform)
    assert int(state.step) == 4 and np.isfinite(hist["loss"]).all()
    x0, x1, cond = (np.asarray(hist[k]).reshape(32, -1) for k in ("x0", "x1", "cond"))
    idx, _ = brute_force(x0, data, np.zeros(64))  # the nearest data rows (g = 0) ...
    np.testing.assert_allclose(x1, np.asarray(data)[idx], rtol=1e-6)
    np.testing.assert_array_equal(cond[:, 0], np.asarray(labels)[idx])  # ... and their labels


# -- (5) entropic sampling ----------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2, 64])
def test_entropic_draws_follow_the_softmax(block):
    data = jnp.array([[0.0], [0.5], [1.0], [2.0], [-1.0]])
    g = jnp.array([0.1, -0.2, 0.0, 0.4, 0.3])
    eps = 0.5
    point = jnp.array([0.3])
    m = 40_000
    sd = SemidiscreteCoupling(data, g, eps, chunk_size=2, block_size=block)
    idx = np.asarray(jax.jit(sd.assign)(jax.random.key(13), jnp.broadcast_to(point, (m, 1))))
    freq = np.bincount(idx, minlength=5) / m
    logits = (np.asarray(g) - (np.asarray(data)[:, 0] - 0.3) ** 2) / eps
    p = np.exp(logits - logits.max())
    p /= p.sum()
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(p * (1 - p) / m).max())


@pytest.mark.slow
def test_entropic_fit_balances_the_soft_marginal():
    sd = fitted(0.2)
    m = 60_000
    x0 = jax.random.normal(jax.random.key(14), (m, 2))
    share = np.bincount(np.asarray(jax.jit(sd.assign)(jax.random.key(15), x0)), minlength=4) / m
    np.testing.assert_allclose(share, 0.25, atol=0.015)
    assert sd.info.epsilon == 0.2 and abs(sd.info.marginal_chi2) < 0.01


def test_info_floor_is_the_multinomial_noise():
    from flowjax_fm.couplings._semidiscrete import _binomial_tv_floor

    rng = np.random.default_rng(0)
    for m, n in ((1000, 10), (5000, 400)):
        draws = rng.multinomial(m, np.full(n, 1.0 / n), size=400)
        tv = 0.5 * np.abs(draws / m - 1.0 / n).sum(1)
        assert abs(tv.mean() - _binomial_tv_floor(m, n)) < 4 * tv.std() / np.sqrt(400)
