"""fit(pairing="prefetch"): the coupling runs on worker threads ahead of the compiled step.

What must hold: training is the in-step training up to float rounding of the batch draws
(the pairs are the same optimal assignments), resuming is exact, the host callback leaves the
program with the step's collectives (global exact OT at batch 1,024 on 8 fake devices), and
per-shard pairing runs ahead as well.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.training import _fit as fit_module


def _setup(coupling=None, scope="global", hidden=(16,)):
    model = fm.models.MLP(2, hidden, rngs=nnx.Rngs(0))
    opt = optax.adam(1e-2)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.CondOTPath(),
        coupling=coupling or fm.couplings.ExactOTCoupling(), coupling_scope=scope,
    )
    return step, fm.training.init_state(model, opt)


def _source(k, n):
    return jax.random.normal(k, (n, 2))


def _target(k, n):
    return jax.random.normal(k, (n, 2)) * 0.5 + jnp.array([3.0, -1.0])


def _leaves(state):
    return [np.asarray(a) for a in jax.tree.leaves(state.params)]


def _fit(step, state, num_steps, **kw):
    kw = {"batch_size": 32, "progress": False, "chunk_size": 5, **kw}
    return fm.training.fit(step, state, jax.random.key(7), _source, _target, num_steps=num_steps, **kw)


def test_prefetch_trains_like_in_step():
    step, state = _setup()
    a, ha = _fit(step, state, 10, pairing="in_step")
    b, hb = _fit(step, state, 10, pairing="prefetch", workers=2)
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-4, atol=1e-6)
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)


def test_prefetch_resume_is_exact_whatever_the_chunks():
    step, state = _setup()
    whole, h_whole = _fit(step, state, 12, pairing="prefetch", chunk_size=12)
    part, h1 = _fit(step, state, 5, pairing="prefetch", chunk_size=2)
    part, h2 = _fit(step, part, 7, pairing="prefetch", chunk_size=3)
    np.testing.assert_array_equal(np.concatenate([h1["loss"], h2["loss"]]), h_whole["loss"])
    for x, y in zip(_leaves(whole), _leaves(part), strict=True):
        np.testing.assert_array_equal(y, x)


def test_prefetched_pairs_are_the_optimal_assignment_of_each_step():
    """The pairs of a block are exact OT of the batch each step draws (checked with scipy)."""
    from scipy.optimize import linear_sum_assignment

    step, _ = _setup()
    key = jax.random.key(7)
    plan, data = fm.training._data.make_plan(_source, _target, batch_size=32)
    dyn, static = fit_module._partition(step)
    streams = fm.training._data.initial_streams(plan, key, 3, data)
    src, tgt = fit_module._pair_block(dyn, key, data, streams, jnp.asarray(3, jnp.int32), static=static,
                                plan=plan, length=4, shards=1)
    for i, s in enumerate(range(3, 7)):
        batch, _, _ = plan.draw(key, jnp.asarray(s, jnp.int32), streams, data)
        cost = np.asarray(fm.couplings.squared_distances(batch.x0, batch.x1), np.float64)
        rows, cols = linear_sum_assignment(cost)
        np.testing.assert_array_equal(np.asarray(src[i]), np.arange(32))
        assert sorted(np.asarray(tgt[i]).tolist()) == list(range(32))
        np.testing.assert_allclose(cost[np.arange(32), np.asarray(tgt[i])].sum(), cost[rows, cols].sum(),
                                   rtol=1e-5)


def test_auto_prefetches_host_solvers_only():
    exact, _ = _setup()
    sinkhorn, _ = _setup(fm.couplings.SinkhornCoupling(epsilon=0.5))
    key = jax.random.key(0)
    plan, data = fm.training._data.make_plan(_source, _target, batch_size=8)
    streams = fm.training._data.initial_streams(plan, key, 0, data)

    def made(step, pairing):
        p = fit_module._make_prefetcher(pairing, step, plan, key, data, streams, 0, 4, batch_size=8,
                                  chunk_size=2, prefetch=1, workers=1)
        if p is not None:
            p.close()
        return p is not None

    assert made(exact, "auto") and not made(sinkhorn, "auto")
    assert made(sinkhorn, "prefetch") and not made(exact, "in_step")
    own = lambda s, k, a, b: exact(s, k, a, b)  # noqa: E731 - a user's own step: fit cannot pair it
    assert not made(own, "auto")


def test_prefetch_of_a_device_coupling_matches_in_step():
    step, state = _setup(fm.couplings.SinkhornCoupling(epsilon=0.5, sampling="rows"))
    a, ha = _fit(step, state, 6, pairing="in_step")
    b, hb = _fit(step, state, 6, pairing="prefetch")
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-3, atol=1e-5)


def test_a_failed_pairing_on_a_worker_is_a_runtime_check_error():
    step, state = _setup(fm.couplings.SinkhornCoupling(epsilon=1e-4, max_iterations=20))
    with pytest.raises(fm.training.RuntimeCheckError, match="Sinkhorn") as info:
        _fit(step, state, 6, pairing="prefetch")
    assert int(info.value.state.step) == 0


@pytest.mark.parametrize("scope", ["global", "per_shard"])
def test_exact_ot_at_batch_1024_on_8_devices_through_fit(scope):
    """The host solver is off the collective program: no XLA:CPU rendezvous timeout."""
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    step, state = _setup(scope=scope)
    mesh = fm.training.data_mesh(8)
    driver = fm.training.shard_step(step, mesh)
    kw = {"batch_size": 1024, "chunk_size": 2}
    sharded, h8 = _fit(driver, fm.training.replicate(state, mesh), 4, **kw)
    assert np.isfinite(h8["loss"]).all()
    if scope == "global":  # same pairs as one device: parameters agree up to float sums
        single, h1 = _fit(step, state, 4, **kw)
        np.testing.assert_allclose(h8["loss"], h1["loss"], rtol=1e-4)
        for x, y in zip(_leaves(single), _leaves(sharded), strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5)
    else:  # each device's slice is paired within itself, as in the step
        x0, x1 = _source(jax.random.key(1), 1024), _target(jax.random.key(2), 1024)
        p = step.pairing(jax.random.key(3), x0, x1, shards=8)
        tgt = np.asarray(p.target).reshape(8, 128)
        np.testing.assert_array_equal(tgt // 128, np.repeat(np.arange(8)[:, None], 128, axis=1))
        direct = fm.training.pmap_step(step, devices=jax.devices()[:8])
        s_direct, _ = direct(state, jax.random.key(3), x0, x1)
        assert int(s_direct.step) == 1


@pytest.mark.parametrize("kind", ["equinox", "apply"])
def test_prefetch_with_any_model_float_conditions_and_arrays_in_epochs(kind):
    """Pairing ahead composes: an equinox model or a plain apply function, a float condition
    vector entering the OT cost (cond_weight), a dataset visited in epochs; resume stays exact."""
    import equinox as eqx

    key = jax.random.key(0)
    x = jax.random.normal(key, (40, 2)) + 2.0
    c = jax.random.uniform(jax.random.key(1), (40, 2))

    if kind == "equinox":
        class Field(eqx.Module):
            mlp: eqx.nn.MLP

            def __call__(self, x, t, cond=None):
                return jax.vmap(self.mlp)(jnp.concatenate([x, t[:, None], cond], axis=-1))

        model = Field(eqx.nn.MLP(5, 2, 16, 1, key=jax.random.key(2)))
        init = model
    else:
        w = jax.random.normal(jax.random.key(2), (5, 2)) * 0.1
        model = lambda p, x, t, cond=None: jnp.concatenate([x, t[:, None], cond], -1) @ p  # noqa: E731
        init = w
    opt = optax.adam(1e-2)
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath(),
                                       coupling=fm.couplings.ExactOTCoupling(cond_weight=5.0))
    state = fm.training.init_state(init, opt)
    kw = {"batch_size": 16, "progress": False, "pairing": "prefetch"}
    whole, h = fm.training.fit(step, state, key, None, (x, c), num_steps=6, chunk_size=3, **kw)
    assert np.isfinite(h["loss"]).all() and h["epoch"].tolist() == [0, 0, 0, 1, 1, 2]  # 40 rows, 16 a step
    part, _ = fm.training.fit(step, state, key, None, (x, c), num_steps=4, chunk_size=4, **kw)
    part, _ = fm.training.fit(step, part, key, None, (x, c), num_steps=2, chunk_size=2, **kw)
    for a, b in zip(_leaves(whole), _leaves(part), strict=True):
        np.testing.assert_array_equal(b, a)
