"""Train step, fit (scan chunks, resume, non-finite), checkpoints."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm


def _setup(coupling=None, hidden=(32, 32)):
    model = fm.models.MLP(2, hidden, rngs=nnx.Rngs(0))
    opt = optax.adam(1e-2)
    step = fm.training.make_train_step(
        model,
        optimizer=opt,
        path=fm.paths.GaussianPath(0.1),
        coupling=coupling or fm.couplings.IndependentCoupling(),
        ema_decay=0.9,
    )
    return model, opt, step


def src(key, n):
    return jax.random.normal(key, (n, 2))


def tgt(key, n):
    return 0.5 * jax.random.normal(key, (n, 2)) + jnp.array([3.0, -1.0])


def _allclose_tree(a, b, rtol=1e-7, atol=0.0):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def test_step_is_pure_and_jittable():
    model, opt, step = _setup()
    state = fm.training.init_state(model, opt)
    x0, x1 = src(jax.random.key(1), 16), tgt(jax.random.key(2), 16)
    s1, m1 = jax.jit(step)(state, jax.random.key(3), x0, x1)
    s2, m2 = step(state, jax.random.key(3), x0, x1)
    _allclose_tree(s1, s2, rtol=1e-5, atol=1e-6)
    assert int(s1.step) == 1 and int(state.step) == 0
    assert float(m1["grad_norm"]) > 0
    # EMA moved towards the new params by (1 - decay)
    p0 = jax.tree.leaves(state.params)[0]
    p1 = jax.tree.leaves(s1.params)[0]
    e1 = jax.tree.leaves(s1.ema)[0]
    np.testing.assert_allclose(e1, 0.9 * p0 + 0.1 * p1, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("coupling", [fm.couplings.IndependentCoupling(), fm.couplings.ExactOTCoupling()])
def test_fit_lowers_the_loss(coupling):
    model, opt, step = _setup(coupling)
    state, hist = fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(0), src, tgt,
        num_steps=300, batch_size=64, progress=False, chunk_size=100,
    )
    assert int(state.step) == 300 and hist["loss"].shape == (300,)
    np.testing.assert_array_equal(hist["step"], np.arange(300))
    assert hist["loss"][-50:].mean() < 0.5 * hist["loss"][:10].mean()


def test_fit_resumes_exactly_and_chunking_does_not_matter():
    model, opt, step = _setup()
    s0 = fm.training.init_state(model, opt)
    kw = dict(batch_size=32, progress=False)
    full, h_full = fm.training.fit(step, s0, jax.random.key(0), src, tgt, num_steps=40, chunk_size=20, **kw)
    half, _ = fm.training.fit(step, s0, jax.random.key(0), src, tgt, num_steps=20, chunk_size=20, **kw)
    rest, h_rest = fm.training.fit(step, half, jax.random.key(0), src, tgt, num_steps=20, chunk_size=20, **kw)
    _allclose_tree(full, rest, rtol=0, atol=0)  # bit-exact
    np.testing.assert_array_equal(h_full["loss"][20:], h_rest["loss"])
    odd, _ = fm.training.fit(step, s0, jax.random.key(0), src, tgt, num_steps=40, chunk_size=7, **kw)
    _allclose_tree(full, odd, rtol=1e-5, atol=1e-6)


def test_fit_draws_from_arrays():
    model, opt, step = _setup()
    data = np.asarray(tgt(jax.random.key(5), 500))
    state, hist = fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(0), src, data,
        num_steps=20, batch_size=16, progress=False,
    )
    assert int(state.step) == 20


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_state():
    model, opt, step = _setup()
    data = np.array(tgt(jax.random.key(5), 64))
    data[3] = np.nan
    state0 = fm.training.init_state(model, opt)
    good, _ = fm.training.fit(step, state0, jax.random.key(0), src, tgt, num_steps=10,
                              batch_size=16, progress=False, chunk_size=10)
    with pytest.raises(fm.training.NonFiniteLossError, match=r"non-finite loss .* at step \d+") as err:
        fm.training.fit(step, good, jax.random.key(0), src, data, num_steps=50,
                        batch_size=16, progress=False, chunk_size=10)
    assert int(err.value.state.step) % 10 == 0 and err.value.step >= 10
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(err.value.state.params))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(num_steps=-1), "num_steps"),
        (dict(target=np.zeros((10, 2), np.int32)), "floating"),
        (dict(target=np.zeros((0, 2), np.float32)), "N > 0"),
        (dict(target=np.zeros((10, 3), np.float32)), r"\(8, 2\) and \(8, 3\)"),
    ],
)
def test_fit_bad_input(kwargs, match):
    model, opt, step = _setup()
    args = dict(source=src, target=tgt, num_steps=2, batch_size=8, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(0), **args)


def test_checkpointer_round_trip(tmp_path):
    model, opt, step = _setup()
    state, _ = fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(0),
                               src, tgt, num_steps=5, batch_size=8, progress=False)
    ckpt = fm.training.Checkpointer(tmp_path / "ckpt")
    ckpt.save(state)
    like = fm.training.init_state(model, opt)
    restored = ckpt.restore(like)
    _allclose_tree(state, restored, rtol=0, atol=0)
    assert ckpt.latest_step() == 5
    with pytest.raises(FileNotFoundError):
        fm.training.Checkpointer(tmp_path / "empty").restore(like)


def test_vector_field_from_state_matches_model():
    model, opt, _ = _setup()
    field = fm.training.make_vector_field(model)
    x, t = jnp.ones((3, 2)), jnp.full(3, 0.2)
    np.testing.assert_allclose(field(x, t), model(x, t), rtol=1e-6)
