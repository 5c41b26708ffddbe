"""Discrete flow matching through the shared training layer: make_train_step, fit, shard_step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm

V, L = 8, 2
PATH = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())


def tokens(n, seed=0):
    """A checkerboard on the V x V grid: token pairs (a, b) with a + b even."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    a = jax.random.randint(k1, (n,), 0, V)
    b = 2 * jax.random.randint(k2, (n,), 0, V // 2) + a % 2
    return jnp.stack([a, b], 1).astype(jnp.int32)


def source(key, n):
    return fm.discrete.uniform_source(key, (n, L), V)


def make(seed=0, **kw):
    model = fm.models.TokenMLP(V, L, hidden=(64, 64), rngs=nnx.Rngs(seed))
    opt = optax.adam(3e-3)
    step = fm.training.make_train_step(model, optimizer=opt, path=PATH,
                                       objective=fm.discrete.DiscreteObjective(), **kw)
    return model, step, fm.training.init_state(model, opt)


def test_fit_on_token_arrays_learns_the_checkerboard():
    model, step, state = make()
    data = tokens(4096)
    state, hist = fm.training.fit(step, state, jax.random.key(1), source, data, num_steps=400,
                                  batch_size=128, progress=False)
    assert hist["loss"][-50:].mean() < 0.8 * hist["loss"][:50].mean()
    assert "epoch" in hist
    field = fm.training.make_vector_field(model, state.params)
    x = fm.discrete.sample(field, jax.random.key(2), source(jax.random.key(3), 2000), path=PATH,
                           num_steps=50)
    parity_ok = float(jnp.mean((x[:, 0] + x[:, 1]) % 2 == 0))
    assert parity_ok > 0.9, parity_ok


def test_the_same_step_on_8_devices():
    assert jax.device_count() == 8
    _, step, state = make()
    x0, x1 = source(jax.random.key(4), 64), tokens(64, seed=5)
    one, m1 = jax.jit(step)(state, jax.random.key(6), x0, x1)
    mesh = fm.training.data_mesh(8)
    eight, m8 = fm.training.shard_step(step, mesh)(fm.training.replicate(state, mesh),
                                                   jax.random.key(6), x0, x1)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
    chex.assert_trees_all_close(one.params, eight.params, rtol=1e-4, atol=1e-6)


def test_a_discrete_step_refuses_couplings_paths_and_float_data():
    model = fm.models.TokenMLP(V, L, hidden=(8,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="independent coupling"):
        fm.training.make_train_step(model, optimizer=optax.adam(1e-3), path=PATH,
                                    coupling=fm.couplings.ExactOTCoupling(),
                                    objective=fm.discrete.DiscreteObjective())
    with pytest.raises(TypeError, match="MixtureDiscretePath"):
        fm.training.make_train_step(model, optimizer=optax.adam(1e-3), path=fm.paths.CondOTPath(),
                                    objective=fm.discrete.DiscreteObjective())
    _, step, state = make()
    with pytest.raises(ValueError, match="integer tokens"):
        fm.training.fit(step, state, jax.random.key(0), source, np.zeros((16, 2), np.float32),
                        num_steps=1, batch_size=8, progress=False)
