"""The composable training core: any model kind, one loop over any data, compile caching."""

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx

import flowjax_fm as fm

# -- three kinds of model ----------------------------------------------------------------


class EqxField(eqx.Module):
    """A batched equinox vector field: an MLP on [x, t]."""

    mlp: eqx.nn.MLP

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(3, 2, 32, 2, activation=jax.nn.selu, key=key)

    def __call__(self, x, t, cond=None):
        return jax.vmap(self.mlp)(jnp.concatenate([x, t[:, None]], axis=-1))


class LinenField(linen.Module):
    @linen.compact
    def __call__(self, x, t):
        h = jnp.concatenate([x, t[:, None]], axis=-1)
        h = linen.selu(linen.Dense(32)(h))
        h = linen.selu(linen.Dense(32)(h))
        return linen.Dense(2)(h)


def _linen():
    net = LinenField()
    params = net.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros(1))
    return (lambda p, x, t: net.apply(p, x, t)), params


def _model(kind):
    """``(model, init)``: what make_train_step takes and what init_state takes."""
    if kind == "nnx":
        m = fm.models.MLP(2, (32, 32), rngs=nnx.Rngs(0))
        return m, m
    if kind == "equinox":
        m = EqxField(jax.random.key(0))
        return m, m
    return _linen()


KINDS = ["nnx", "equinox", "apply"]


def src(key, n):
    return jax.random.normal(key, (n, 2))


def tgt(key, n):
    return 0.5 * jax.random.normal(key, (n, 2)) + jnp.array([3.0, -1.0])


def _step(model, opt, **kw):
    kw.setdefault("path", fm.paths.GaussianPath(0.1))
    return fm.training.make_train_step(model, optimizer=opt, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_trains_through_fit(kind):
    model, init = _model(kind)
    opt = optax.adam(1e-2)
    state = fm.training.init_state(init, opt)
    assert len(jax.tree.leaves(state.params)) >= 4
    step = _step(model, opt)
    state, hist = fm.training.fit(step, state, jax.random.key(0), src, tgt, num_steps=200,
                                  batch_size=64, progress=False, chunk_size=100)
    assert hist["grad_norm"].min() > 0
    assert hist["loss"][-20:].mean() < 0.5 * hist["loss"][:20].mean()
    field = fm.training.make_vector_field(model, state.params)
    v = field(jnp.zeros((4, 2)), jnp.full(4, 0.5))
    assert v.shape == (4, 2) and bool(jnp.all(jnp.isfinite(v)))


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_trains_through_shard_step_on_8_devices(kind):
    assert jax.device_count() == 8
    model, init = _model(kind)
    opt = optax.sgd(0.05)
    step = _step(model, opt, coupling=fm.couplings.ExactOTCoupling())
    state0 = fm.training.init_state(init, opt)
    x0, x1 = src(jax.random.key(1), 64), tgt(jax.random.key(2), 64)
    one, _ = jax.jit(step)(state0, jax.random.key(3), x0, x1)
    mesh = fm.training.data_mesh(8)
    eight, metrics = fm.training.shard_step(step, mesh)(
        fm.training.replicate(state0, mesh), jax.random.key(3), x0, x1
    )
    assert float(metrics["grad_norm"]) > 0
    chex.assert_trees_all_close(one.params, eight.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (LinenField(), "Linen"),
        (fm.models.MLP, "class"),
        (lambda x, t: x, "apply\\(params, x, t"),
        (3.0, "float"),
    ],
)
def test_other_models_are_a_type_error_naming_what_is_accepted(bad, match):
    with pytest.raises(TypeError, match=match):
        fm.training.make_train_step(bad, optimizer=optax.sgd(0.1), path=fm.paths.CondOTPath())
    if not isinstance(bad, float):  # a float is a valid (one-leaf) params pytree
        with pytest.raises(TypeError, match="nnx.Module|equinox|params"):
            fm.training.init_state(bad, optax.sgd(0.1))


def test_make_vector_field_of_a_plain_function_needs_params():
    apply, params = _linen()
    with pytest.raises(TypeError, match="needs its params"):
        fm.training.make_vector_field(apply)
    assert fm.training.make_vector_field(apply, params)(jnp.zeros((3, 2)), jnp.zeros(3)).shape == (3, 2)


def test_equinox_integer_arrays_are_not_trained():
    class WithBuffer(eqx.Module):
        w: jax.Array
        counts: jax.Array

        def __call__(self, x, t, cond=None):
            return x * self.w + 0.0 * self.counts.sum()

    m = WithBuffer(jnp.ones(2), jnp.arange(3))
    state = fm.training.init_state(m, optax.sgd(0.1))
    assert [a.shape for a in jax.tree.leaves(state.params)] == [(2,)]
    step = _step(m, optax.sgd(0.1))
    new, _ = step(state, jax.random.key(0), src(jax.random.key(1), 8), tgt(jax.random.key(2), 8))
    assert not np.allclose(np.asarray(new.params.w), 1.0)


# -- the step is a pytree; compiled chunks are cached -------------------------------------


class _Compiles:
    """Counts XLA compilations while active."""

    def __enter__(self):
        self.count = 0

        def listen(event, duration, **kwargs):
            if "backend_compile" in event:
                self.count += 1

        self._listen = listen
        jax.monitoring.register_event_duration_secs_listener(listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


def test_the_step_is_a_pytree_with_float_leaves():
    model, _ = _model("nnx")
    step = _step(model, optax.adam(1e-3), coupling=fm.couplings.SinkhornCoupling(epsilon=0.1))
    leaves = jax.tree.leaves(step)
    assert 0.1 in leaves  # sigma and epsilon are leaves
    assert any(isinstance(x, float) and x == pytest.approx(0.1) for x in leaves)


def test_a_second_fit_compiles_nothing_and_a_sigma_sweep_compiles_once():
    model, init = _model("nnx")
    opt = optax.adam(1e-3)
    state = fm.training.init_state(init, opt)
    data = tgt(jax.random.key(5), 100)
    run = lambda step: fm.training.fit(step, state, jax.random.key(0), src, data, num_steps=30,
                                       batch_size=16, chunk_size=15, progress=False)
    with _Compiles() as c:
        run(_step(model, opt, path=fm.paths.GaussianPath(0.05)))  # compiles the chunk
    assert c.count >= 1  # the counter does see compilations
    step = _step(model, opt, path=fm.paths.GaussianPath(0.1))
    with _Compiles() as c:
        _, h1 = run(step)
        _, h2 = run(step)
    assert c.count == 0
    with _Compiles() as c:
        losses = [run(_step(model, opt, path=fm.paths.GaussianPath(s)))[1]["loss"][0]
                  for s in (0.2, 0.3, 0.4)]
    assert c.count == 0
    assert len(set(np.round(losses, 6))) == 3  # the sweep really changed sigma
    np.testing.assert_array_equal(h1["loss"], h2["loss"])


# -- one loop over any data ----------------------------------------------------------------


def _recorder():
    """A step that trains nothing and records its batch (per-example metrics)."""

    def step(state, key, x0, x1, cond=None):
        m = {"loss": jnp.zeros(()), "x0": x0, "x1": x1}
        if cond is not None:
            m["cond"] = cond
        return state.__class__(state.params, state.opt_state, state.ema, state.step + 1), m

    return step


def _state():
    return fm.training.init_state({"w": jnp.zeros(2)}, optax.sgd(0.1))


def test_arrays_are_visited_in_epochs_every_row_once():
    n, b = 50, 16  # batches straddle epoch boundaries
    x = jnp.arange(2 * n, dtype=jnp.float32).reshape(n, 2)
    _, hist = fm.training.fit(_recorder(), _state(), jax.random.key(0), None, x, num_steps=25,
                              batch_size=b, chunk_size=7, progress=False)
    rows = (hist["x1"][:, :, 0] // 2).astype(int).reshape(-1)  # row id of every example
    for e in range(len(rows) // n):
        assert sorted(rows[e * n : (e + 1) * n]) == list(range(n))
    assert hist["epoch"].tolist() == [(s * b) // n for s in range(25)]
    assert not np.array_equal(rows[:n], rows[n : 2 * n])  # a fresh shuffle each epoch


def test_batch_larger_than_the_data_still_visits_every_row_once_per_epoch():
    n = 6
    x = jnp.arange(2 * n, dtype=jnp.float32).reshape(n, 2)
    _, hist = fm.training.fit(_recorder(), _state(), jax.random.key(1), None, x, num_steps=4,
                              batch_size=15, progress=False)
    rows = (hist["x1"][:, :, 0] // 2).astype(int).reshape(-1)
    for e in range(len(rows) // n):
        assert sorted(rows[e * n : (e + 1) * n]) == list(range(n))


def test_epochs_resume_exactly_across_calls():
    x = jax.random.normal(jax.random.key(2), (37, 2))
    run = lambda state, k: fm.training.fit(_recorder(), state, jax.random.key(3), None, x,
                                           num_steps=k, batch_size=8, progress=False)
    s, h_all = run(_state(), 20)
    s1, h_a = run(_state(), 9)
    _, h_b = run(s1, 11)
    np.testing.assert_array_equal(h_all["x1"], np.concatenate([h_a["x1"], h_b["x1"]]))
    np.testing.assert_array_equal(h_all["epoch"], np.concatenate([h_a["epoch"], h_b["epoch"]]))


@pytest.mark.parametrize("cond_kind", ["labels", "vectors", "dict"])
def test_conditions_follow_their_rows(cond_kind):
    n = 40
    x = jax.random.normal(jax.random.key(4), (n, 2))
    rowid = jnp.arange(n)
    cond = {
        "labels": rowid,
        "vectors": jnp.stack([rowid, -rowid], 1).astype(jnp.float32),
        "dict": {"id": rowid, "v": x[:, :1] * 2},
    }[cond_kind]
    _, hist = fm.training.fit(_recorder(), _state(), jax.random.key(0), src, (x, cond),
                              num_steps=6, batch_size=16, progress=False)
    ids = {"labels": lambda c: c, "vectors": lambda c: c[..., 0].astype(int),
           "dict": lambda c: c["id"]}[cond_kind](hist["cond"])
    np.testing.assert_array_equal(hist["x1"], np.asarray(x)[ids])


def test_sampler_returning_conditions():
    def labelled(key, n):
        y = jax.random.randint(key, (n,), 0, 3)
        return y[:, None].astype(jnp.float32) * jnp.ones((n, 2)), y

    _, hist = fm.training.fit(_recorder(), _state(), jax.random.key(0), src, labelled,
                              num_steps=3, batch_size=8, progress=False)
    np.testing.assert_array_equal(hist["x1"][..., 0], hist["cond"].astype(np.float32))
    assert "epoch" not in hist


def test_paired_arrays_keep_their_pairs_and_transform_runs_last():
    x0 = jax.random.normal(jax.random.key(0), (30, 2))
    x1 = 2 * x0 + 1

    def transform(key, batch):
        return batch._replace(x1=batch.x1 + 10.0)

    _, hist = fm.training.fit(_recorder(), _state(), jax.random.key(1), x0, x1, paired=True,
                              transform=transform, num_steps=5, batch_size=8, progress=False)
    np.testing.assert_allclose(hist["x1"], 2 * hist["x0"] + 11.0, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target=(jnp.zeros((5, 2)), jnp.zeros(4))), "leading size 5"),
        (dict(target=jnp.zeros((5, 2), jnp.int32)), "floating"),
        (dict(source=jnp.zeros((5, 2)), target=jnp.zeros((6, 2)), paired=True), "same number"),
        (dict(source=src, target=jnp.zeros((6, 2)), paired=True), "paired=True needs"),
        (dict(batch_size=True), "batch_size"),
        (dict(num_steps=-1), "num_steps"),
    ],
)
def test_fit_bad_data(kwargs, match):
    args = dict(source=None, target=jnp.zeros((5, 2)), num_steps=2, batch_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fm.training.fit(_recorder(), _state(), jax.random.key(0), progress=False, **args)


def test_unroll_is_decided_from_the_step():
    from flowjax_fm.training import _fit

    data = {"source": None, "target": (jnp.zeros((8, 8, 8, 1)), None)}
    plan, data = fm.training._data.make_plan(None, data["target"][0], batch_size=4)
    streams = fm.training._data.initial_streams(plan, jax.random.key(0), 0, data)

    def decide(model):
        opt = optax.sgd(0.1)
        step = _step(model, opt, path=fm.paths.CondOTPath())
        dyn, static = _fit._partition(step)
        carry = (fm.training.init_state(model, opt), streams)
        return _fit._auto_unroll(dyn, static, plan, jax.random.key(0), data, carry)

    if jax.default_backend() != "cpu":
        pytest.skip("the unroll rule is for XLA:CPU")
    unet = fm.models.UNet(1, channels=4, channel_mult=(1,), num_res_blocks=1, rngs=nnx.Rngs(0))
    assert decide(unet) == 10
    assert decide(fm.models.MLP(64, (8,), rngs=nnx.Rngs(0))) == 0


# -- the (t, x_t, u_t) primitive and condition dropout ------------------------------------


def test_sample_conditional_is_what_cfm_loss_regresses_on():
    x0, x1 = src(jax.random.key(0), 16), tgt(jax.random.key(1), 16)
    path = fm.paths.GaussianPath(0.2)
    key = jax.random.key(7)
    field = lambda x, t: x * t[:, None]
    res = fm.losses.sample_conditional(key, x0, x1, path=path,
                                       coupling=fm.couplings.ExactOTCoupling())
    t, x_t, u_t = res[:3]
    loss, aux = fm.losses.cfm_loss(field, key, x0, x1, path=path,
                                   coupling=fm.couplings.ExactOTCoupling())
    np.testing.assert_allclose(aux["t"], t)
    expected = jnp.mean(jnp.square(field(x_t, t) - u_t), axis=1).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    # the target really is the path's velocity for the returned pairs and noise
    u_ref = jax.vmap(path.target_velocity)(res.x0, res.x1, t, res.noise)
    np.testing.assert_allclose(u_t, u_ref, rtol=1e-6)
    np.testing.assert_allclose(x_t, jax.vmap(path.sample)(res.x0, res.x1, t, res.noise), rtol=1e-6)


def test_drop_condition_for_labels_vectors_and_dicts():
    key = jax.random.key(0)
    n = 4000
    labels = jnp.zeros(n, jnp.int32)
    dropped = fm.training.drop_condition(key, labels, 0.3, 9)
    assert abs(float((dropped == 9).mean()) - 0.3) < 0.03
    vec = jnp.ones((n, 3))
    dv = fm.training.drop_condition(key, vec, 0.3, jnp.zeros(3))
    np.testing.assert_array_equal(dv.sum(1) == 0, dropped == 9)  # same mask for the same key
    tree = fm.training.drop_condition(key, {"a": labels, "b": vec}, 0.3, {"a": 9, "b": jnp.zeros(3)})
    np.testing.assert_array_equal(tree["a"] == 9, tree["b"].sum(1) == 0)
    with pytest.raises(ValueError, match="structure"):
        fm.training.drop_condition(key, {"a": labels}, 0.3, 9)


def test_conditional_step_with_a_float_condition_and_dropout():
    model = fm.models.MLP(2, (16,), cond_dim=3, rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = _step(model, opt, cond_dropout=0.2, null_cond=jnp.zeros(3))
    x1 = tgt(jax.random.key(1), 32)
    c = jax.random.normal(jax.random.key(2), (32, 3))
    state, hist = fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(0),
                                  src, (x1, c), num_steps=5, batch_size=8, progress=False)
    assert np.isfinite(hist["loss"]).all()
    with pytest.raises(ValueError, match="cond"):
        step(state, jax.random.key(0), x1, x1)


def test_step_validates_its_values():
    model, _ = _model("nnx")
    for bad in (dict(ema_decay=2.0), dict(ema_decay=-0.5), dict(cond_dropout=1.5, null_cond=0),
                dict(accumulate=0), dict(coupling_scope="everywhere")):
        with pytest.raises(ValueError):
            _step(model, optax.sgd(0.1), **bad)
