"""Issue 12 guards in training and data: bad hyperparameters refused, labels checked once,
run-time check failures inside ``fit`` reported with the step range and the last good state."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm

PATH = fm.paths.CondOTPath()
OPT = optax.sgd(1e-2)


def _mlp(**kw):
    return fm.models.MLP(2, (8,), rngs=nnx.Rngs(0), **kw)


def _src(key, n):
    return jax.random.normal(key, (n, 2))


def _fit(step, state, target, **kw):
    kw = {"num_steps": 2, "batch_size": 4, "progress": False, **kw}
    return fm.training.fit(step, state, jax.random.key(0), None, target, **kw)


# -- the examples -------------------------------------------------------------------


@pytest.mark.parametrize("decay", [2.0, -0.5, float("nan")])
def test_ema_decay_outside_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be a finite number in \[0, 1\]"):
        fm.training.make_train_step(_mlp(), optimizer=OPT, path=PATH, ema_decay=decay)


@pytest.mark.parametrize("kw, match", [
    ({"clip_norm": float("nan")}, r"clip_norm must be a finite number in \(0, inf\), got nan"),
    ({"clip_norm": 0.0}, r"clip_norm must be a finite number in \(0, inf\)"),
    ({"lr": float("inf")}, r"lr must be a finite number in \(0, inf\)"),
    ({"b2": 1.0}, r"b2 must be a finite number in \[0, 1\)"),
    ({"warmup_steps": True}, r"warmup_steps must be an int >= 0, got True"),
    ({"weight_decay": -1e-4}, r"weight_decay must be a finite number in \[0, inf\)"),
    ({"schedule": "linear"}, r"unknown schedule 'linear'; choose one of 'constant', 'cosine'"),
])
def test_make_optimizer_refuses_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        fm.training.make_optimizer(**kw)


def test_make_optimizer_accepts_numpy_numbers():
    opt = fm.training.make_optimizer(np.float32(1e-3), warmup_steps=np.int64(2), clip_norm=1)
    assert isinstance(opt, optax.GradientTransformation)


def test_fit_refuses_a_bool_batch_size_and_accepts_numpy_ints():
    model = _mlp()
    step = fm.training.make_train_step(model, optimizer=OPT, path=PATH)
    state = fm.training.init_state(model, OPT)
    data = jnp.ones((8, 2))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got True"):
        _fit(step, state, data, batch_size=True)
    with pytest.raises(ValueError, match="num_steps must be an int >= 0, got 2.0"):
        _fit(step, state, data, num_steps=2.0)
    out, hist = _fit(step, state, data, batch_size=np.int64(4), num_steps=np.int32(2),
                     chunk_size=np.int64(1))
    assert int(out.step) == 2 and hist["loss"].shape == (2,)


def test_step_parts_must_be_instances_of_the_abstract_classes():
    with pytest.raises(TypeError, match=r"path must be an instance of fm\.paths\.AbstractPath"):
        fm.training.make_train_step(_mlp(), optimizer=OPT, path=0.1)
    with pytest.raises(TypeError, match=r"coupling must be an instance of fm\.couplings"):
        fm.training.make_train_step(_mlp(), optimizer=OPT, path=PATH, coupling="exact")
    with pytest.raises(TypeError, match=r"time_sampler must be an instance of"):
        fm.training.make_train_step(_mlp(), optimizer=OPT, path=PATH, time_sampler=np.random.rand)
    with pytest.raises(TypeError, match=r"optimizer must be an optax GradientTransformation"):
        fm.training.make_train_step(_mlp(), optimizer=1e-3, path=PATH)


# -- labels ------------------------------------------------------------------------------------


def _conditional():
    model = _mlp(num_classes=3)
    step = fm.training.make_train_step(model, optimizer=OPT, path=PATH)
    return step, fm.training.init_state(model, OPT)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1, 2, 7, 0, 1]), r"labels must lie in \[0, 4\).*row 3 has label 7.*num_classes=3"),
    (np.array([0, 1, -1, 2, 0, 1]), r"row 2 has label -1"),
    (np.zeros(6, np.float32), r"labels must be integer class labels, got dtype float32"),
    (np.zeros((6, 1), np.int32), r"labels must have shape \(6,\), got \(6, 1\)"),
    (np.zeros(5, np.int32), r"leading size 6"),
])
def test_fit_checks_array_labels_once_before_training(labels, match):
    step, state = _conditional()
    with pytest.raises(ValueError, match=match):
        _fit(step, state, (jnp.ones((6, 2)), labels))


def test_fit_accepts_the_null_class_and_numpy_labels():
    step, state = _conditional()
    out, _ = _fit(step, state, (np.ones((6, 2), np.float32), np.array([0, 1, 2, 3, 0, 1])))
    assert int(out.step) == 2


@pytest.mark.parametrize("make_labels, match", [
    (lambda n: jnp.zeros(n), r"labels must be integer class labels, got dtype float32"),
    (lambda n: jnp.zeros((n, 1), jnp.int32), r"labels must have shape \(4,\), got \(4, 1\)"),
    (lambda n: jnp.zeros(n - 1, jnp.int32), r"labels must have shape \(4,\), got \(3,\)"),
])
def test_a_sampler_with_bad_labels_fails_at_trace_time(make_labels, match):
    step, state = _conditional()
    sampler = lambda key, n: (jax.random.normal(key, (n, 2)), make_labels(n))
    with pytest.raises(ValueError, match=match):
        _fit(step, state, sampler)


def test_label_dropout_and_conditional_batch_check_their_arguments():
    key, y = jax.random.key(0), jnp.arange(4) % 2
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\], got 1.5"):
        fm.training.label_dropout(key, y, 1.5, 2)
    with pytest.raises(ValueError, match="labels must be integer class labels"):
        fm.training.label_dropout(key, y.astype(jnp.float32), 0.1, 2)
    with pytest.raises(ValueError, match="null_label must be an int >= 0"):
        fm.training.label_dropout(key, y, 0.1, -1)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\]"):
        fm.training.drop_condition(key, y, -0.1, 2)
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\), got \(3,\)"):
        fm.training._images.conditional_batch(key, x, x, y[:3], coupling=fm.couplings.ExactOTCoupling(),
                                              p=0.1, null_label=2)
    # a traced p passes (a swept dropout probability)
    out = jax.jit(lambda p: fm.training.label_dropout(key, y, p, 2))(1.0)
    assert out.tolist() == [2, 2, 2, 2]


# -- run-time check failures inside fit ---------------------------------------------------------


def test_a_runtime_check_failure_in_fit_names_the_chunk_and_keeps_the_last_good_state():
    model = _mlp()
    inner = fm.training.make_train_step(model, optimizer=OPT, path=PATH)

    def step(state, key, x0, x1):  # a model check that fails from step 3 on
        x0 = eqx.error_if(x0, state.step >= 3, "the plan did not converge")
        return inner(state, key, x0, x1)

    state = fm.training.init_state(model, OPT)
    with pytest.raises(fm.training.RuntimeCheckError,
                       match=r"run-time check failed in the chunk of steps 2\.\.3: the plan did "
                             r"not converge; keeping the state from step 2") as info:
        _fit(step, state, _src, num_steps=6, chunk_size=2)
    err = info.value
    assert isinstance(err, RuntimeError) and isinstance(err, fm.training.NonFiniteLossError)
    assert err.step == 2 and int(err.state.step) == 2
    assert err.history["loss"].shape == (2,) and err.history["step"].tolist() == [0, 1]
    # nothing is lost: resuming from err.state before the failing step gives the same state
    # as an uninterrupted run to that point
    ref, _ = _fit(step, state, _src, num_steps=2, chunk_size=2)  # the cached chunk
    chex_close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    jax.tree.map(chex_close, ref.params, err.state.params)
    # resuming one step at a time pins the exact failing step
    with pytest.raises(fm.training.RuntimeCheckError, match=r"steps 3\.\.3") as info:
        _fit(step, err.state, _src, num_steps=4, chunk_size=1)
    assert int(info.value.state.step) == 3


def test_other_runtime_errors_pass_through_unchanged():
    model = _mlp()
    inner = fm.training.make_train_step(model, optimizer=OPT, path=PATH)

    def step(state, key, x0, x1):
        out = jax.pure_callback(_boom, jax.ShapeDtypeStruct((), jnp.float32), x0.sum())
        return inner(state, key, x0 + 0 * out, x1)

    with pytest.raises(Exception, match="boom") as info:
        _fit(step, fm.training.init_state(model, OPT), _src, num_steps=1)
    assert not isinstance(info.value, fm.training.RuntimeCheckError)


def _boom(x):
    raise OSError("boom")


# -- traced leaves still work ----------------------------------------------------------------------


def test_traced_hyperparameters_pass_construction():
    model = _mlp()

    @jax.jit
    def loss_for(decay):
        step = fm.training.make_train_step(model, optimizer=OPT, path=PATH, ema_decay=decay,
                                           coupling=fm.couplings.IndependentCoupling())
        x = jnp.ones((4, 2))
        _, m = step(fm.training.init_state(model, OPT), jax.random.key(0), x * 0, x)
        return m["loss"]

    assert np.isfinite(float(loss_for(0.5)))


def test_toy_data_names_and_sizes():
    with pytest.raises(ValueError, match=r"n must be an int >= 1 .*got True"):
        fm.data.sample_toy("moons", jax.random.key(0), True)
    with pytest.raises(ValueError, match="unknown toy data set 3"):
        fm.data.make_sampler(3)
    assert fm.data.sample_toy("moons", jax.random.key(0), np.int64(3)).shape == (3, 2)
