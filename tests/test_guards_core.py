"""Issue 12 guards in the math core: hyperparameters checked at construction (traced values pass),
class labels checked eagerly and under ``jit``, and valid edge inputs finite under ``jit``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm

P, T = fm.paths, fm.time_sampling
X0, X1, EPS = jnp.zeros(3), jnp.ones(3), jnp.full(3, 0.5)
# An eqx.error_if failure under plain jax.jit surfaces as jax.errors.JaxRuntimeError (a
# RuntimeError), except that jax 0.10's cached fast dispatch sometimes raises the same XLA status
# as a ValueError; the message (ours, after XLA's callback banner) is the same either way.
JIT_ERRORS = (RuntimeError, ValueError)


# --- the examples --------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: P.BrownianBridgePath(sigma=0.0), ValueError, r"sigma must be a finite number in \(0, inf\)"),
        (lambda: P.GaussianPath(sigma=float("nan")), ValueError, r"sigma must be a finite .* \[0, inf\)"),
        (lambda: T.BetaTime(-1.0, 1.0), ValueError, r"a must be a finite number in \(0, inf\), got -1.0"),
        (lambda: T.LogitNormalTime(scale=0.0), ValueError, r"scale must be a finite number in \(0, inf\)"),
        (lambda: T.LogitNormalTime(loc=float("inf")), ValueError, r"loc must be a finite number"),
        (lambda: P.PolynomialSchedule(0.0), ValueError, r"n must be a finite number in \(0, inf\)"),
        (lambda: P.VPSchedule(beta_min=1.0, beta_max=0.5), ValueError, r"beta_max must be >= beta_min"),
        (lambda: P.CondOTPath(sigma_min=1.0), ValueError, r"sigma_min must be a finite number in \[0, 1\)"),
        (lambda: P.AffinePath("cosine"), TypeError, r"schedule must be an instance of .*AbstractSchedule"),
        (lambda: P.get_path("gaussian", sigma_min=0.1), ValueError, r"takes sigma; got unknown argument"),
        (lambda: T.get_time_sampler("beta", a=0.0), ValueError, r"a must be a finite number in \(0, inf\)"),
        (lambda: fm.reflow.GridTime(True), ValueError, r"k must be an int >= 1, got True"),
        (lambda: fm.models.MLP(2, (8, 0), rngs=nnx.Rngs(0)), ValueError, r"hidden must be a non-empty"),
        (lambda: fm.models.UNet(1, channels=6, channel_mult=(1,), num_heads=4, rngs=nnx.Rngs(0)), ValueError,
         r"num_heads must divide"),
    ],
)
def test_bad_hyperparameters_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_wrong_kind_of_part_is_a_type_error():
    x = jnp.zeros((4, 2))
    with pytest.raises(TypeError, match=r"path must be an instance of fm.paths.AbstractPath"):
        fm.losses.cfm_loss(lambda x, t: x, jax.random.key(0), x, x, path=P.GaussianPath)
    with pytest.raises(TypeError, match=r"time_sampler must be an instance"):
        fm.losses.cfm_loss(
            lambda x, t: x, jax.random.key(0), x, x, path=P.CondOTPath(), time_sampler="uniform"
        )


def test_numpy_ints_are_accepted_and_bools_refused():
    assert fm.reflow.GridTime(np.int64(3)).k == 3 and type(fm.reflow.GridTime(np.int64(3)).k) is int
    assert T.UniformTime()(jax.random.key(0), np.int32(5)).shape == (5,)
    model = fm.models.MLP(np.int64(2), (np.int32(4),), num_classes=np.int64(3), rngs=nnx.Rngs(0))
    assert model(jnp.zeros((2, 2)), jnp.zeros(2), cond=jnp.array([0, 3])).shape == (2, 2)
    with pytest.raises(ValueError, match=r"n must be an int >= 1, got True"):
        T.UniformTime()(jax.random.key(0), True)


# --- traced values pass construction; a leaf change does not retrace ------------------------------
def test_paths_built_inside_vmap_and_jit():
    sigmas = jnp.array([0.0, 0.1, 0.5])
    xs = jax.vmap(lambda s: P.GaussianPath(sigma=s).sample(X0, X1, jnp.float32(0.5), EPS))(sigmas)
    np.testing.assert_allclose(xs, 0.5 + sigmas[:, None] * EPS, rtol=1e-6)
    us = jax.vmap(lambda s: P.BrownianBridgePath(sigma=s).target_velocity(X0, X1, jnp.float32(0.3), EPS))(
        jnp.array([0.5, 1.0])
    )
    assert bool(jnp.isfinite(us).all())
    poly = jax.jit(lambda n: P.AffinePath(P.PolynomialSchedule(n)).sample(X0, X1, jnp.float32(0.5)))
    np.testing.assert_allclose(poly(jnp.float32(2.0)), 0.25, rtol=1e-6)
    vp = jax.jit(lambda lo, hi: P.AffinePath(P.VPSchedule(lo, hi)).sample(X0, X1, jnp.float32(0.5)))
    assert bool(jnp.isfinite(vp(0.1, 20.0)).all())


def test_time_samplers_built_inside_vmap_and_jit():
    t = jax.vmap(lambda a: T.BetaTime(a, 2.0)(jax.random.key(0), 64))(jnp.array([0.5, 1.0, 3.0]))
    assert t.shape == (3, 64) and bool(jnp.isfinite(t).all()) and float(t.min()) >= 0 and float(t.max()) <= 1
    t = jax.jit(lambda loc, s: T.LogitNormalTime(loc, s)(jax.random.key(1), 32))(0.3, 0.7)
    assert bool(jnp.isfinite(t).all())


@pytest.mark.parametrize(
    "first, second",
    [
        (P.GaussianPath(0.1), P.GaussianPath(0.4)),
        (P.BrownianBridgePath(1.0), P.BrownianBridgePath(0.2)),
        (P.CondOTPath(0.0), P.CondOTPath(0.3)),
        (P.AffinePath(P.VPSchedule(0.1, 20.0)), P.AffinePath(P.VPSchedule(0.0, 5.0))),
    ],
)
def test_path_as_jit_argument_does_not_retrace(first, second):
    traces = []

    x0 = jnp.full(3, -1.0)

    @jax.jit
    def f(path, t):
        traces.append(1)
        return path.sample(x0, X1, t, EPS)

    a, b = f(first, jnp.float32(0.4)), f(second, jnp.float32(0.4))
    assert len(traces) == 1 and bool(jnp.isfinite(a).all()) and not np.allclose(a, b)


_TRACES = []


@jax.jit
def _draw(sampler, key):
    _TRACES.append(type(sampler).__name__)
    return sampler(key, 256)


def test_time_sampler_as_jit_argument_does_not_retrace():
    for sampler in (T.BetaTime(2.0, 5.0), T.BetaTime(0.5, 0.5), T.LogitNormalTime(0.0, 1.0),
                    T.LogitNormalTime(1.0, 0.3)):
        assert bool(jnp.isfinite(_draw(sampler, jax.random.key(0))).all())
    assert _TRACES.count("BetaTime") <= 1 and _TRACES.count("LogitNormalTime") <= 1


def test_tree_map_does_not_validate():
    assert jax.tree.map(lambda _: None, P.BrownianBridgePath(1.0)).sigma is None
    assert jax.tree.map(lambda v: -v, T.BetaTime(1.0, 2.0)).a == -1.0  # unflattening skips the checks


# --- class labels: the range [0, K] (K the null class), eagerly and under jit ----------------------
@pytest.fixture(scope="module")
def labelled():
    return fm.models.MLP(2, (8,), num_classes=3, rngs=nnx.Rngs(0))


def _jitted(model):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x, t, c: nnx.merge(graphdef, s)(x, t, cond=c)), state


@pytest.mark.parametrize("bad", [[0, 4], [-1, 2]])
def test_labels_out_of_range_raise_eagerly_and_under_jit(labelled, bad):
    x, t = jnp.zeros((2, 2)), jnp.zeros(2)
    with pytest.raises(ValueError, match=r"cond must lie in \[0, 4\)"):
        labelled(x, t, cond=jnp.array(bad))
    f, state = _jitted(labelled)
    with pytest.raises(JIT_ERRORS, match=r"cond must lie in \[0, 4\) \(label 3 is the null class\)"):
        jax.block_until_ready(f(state, x, t, jnp.array(bad)))
    ok = f(state, x, t, jnp.array([0, 3]))  # the null class is a valid label
    assert bool(jnp.isfinite(ok).all())


def test_labels_out_of_range_in_a_jitted_loss(labelled):
    graphdef, state = nnx.split(labelled)
    x0, x1 = jnp.zeros((4, 2)), jnp.ones((4, 2))

    @jax.jit
    def loss(state, labels):
        field = lambda x, t, cond=None: nnx.merge(graphdef, state)(x, t, cond=cond)
        return fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, path=P.CondOTPath(), cond=labels)[0]

    assert bool(jnp.isfinite(loss(state, jnp.array([0, 1, 2, 3]))))
    with pytest.raises(JIT_ERRORS, match=r"cond must lie in \[0, 4\)"):
        jax.block_until_ready(loss(state, jnp.array([0, 1, -5, 3])))


@pytest.mark.parametrize("driver", ["shard_map", "pmap"])
def test_labels_out_of_range_raise_in_data_parallel_steps(labelled, driver):
    # every device must raise together: a lone raising device would leave the others waiting in
    # the gradient all-reduce until XLA aborts the process
    import optax

    opt = optax.sgd(0.1)
    step = fm.training.make_train_step(labelled, optimizer=opt, path=P.CondOTPath())
    if driver == "shard_map":
        run = fm.training.shard_step(step, fm.training.data_mesh(2))
    else:
        run = fm.training.pmap_step(step, devices=jax.devices()[:2])
    state = fm.training.init_state(labelled, opt)
    x0, x1 = jnp.zeros((4, 2)), jnp.ones((4, 2))
    _, metrics = run(state, jax.random.key(0), x0, x1, jnp.array([0, 1, 2, 3]))
    assert bool(jnp.isfinite(metrics["loss"]))
    with pytest.raises(JIT_ERRORS, match=r"cond must lie in \[0, 4\)"):
        jax.block_until_ready(run(state, jax.random.key(0), x0, x1, jnp.array([0, 1, 2, 9])))


def test_float_labels_point_to_cond_dim(labelled):
    with pytest.raises(ValueError, match=r"dtype float32 .*cond_dim"):
        labelled(jnp.zeros((2, 2)), jnp.zeros(2), cond=jnp.array([0.0, 1.0]))


def test_unet_labels_checked_eagerly():
    # abstract parameters: the label check runs before any of them is read
    net = nnx.eval_shape(lambda: fm.models.UNet(1, channels=4, channel_mult=(1,), num_heads=1, num_groups=1,
                                                num_classes=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"cond must lie in \[0, 3\), got values from 0 to 3"):
        net(jnp.zeros((2, 4, 4, 1)), jnp.zeros(2), cond=jnp.array([0, 3]))


@pytest.mark.slow  # compiles a UNet (about 30 s on a loaded 2-core machine); the MLP tests above
def test_unet_labels_checked_under_jit():  # cover the same check (models._mlp.class_labels) under jit
    net = fm.models.UNet(1, channels=4, channel_mult=(1,), num_heads=1, num_groups=1, num_classes=2,
                         rngs=nnx.Rngs(0))
    x, t = jnp.zeros((2, 4, 4, 1)), jnp.zeros(2)
    f, state = _jitted(net)
    with pytest.raises(JIT_ERRORS, match=r"cond must lie in \[0, 3\)"):
        jax.block_until_ready(f(state, x, t, jnp.array([7, 0])))
    assert bool(jnp.isfinite(f(state, x, t, jnp.array([0, 2]))).all())


# --- valid edge inputs give finite outputs under jit -----------------------------------------------
EDGE_PATHS = {
    "condot": P.CondOTPath(0.0),
    "condot-wide": P.CondOTPath(0.999),
    "gaussian-0": P.GaussianPath(0.0),
    "bridge-tiny": P.BrownianBridgePath(1e-8),
    "vp": P.VPPath(),
    "poly-small-n": P.AffinePath(P.PolynomialSchedule(0.05)),
    "poly-1": P.AffinePath(P.PolynomialSchedule(1.0)),
    "vp-schedule-edge": P.AffinePath(P.VPSchedule(0.0, 1e-3)),
    "vp-schedule": P.AffinePath(P.VPSchedule()),
    "linear-vp": P.AffinePath(P.LinearVPSchedule()),
}


@pytest.mark.parametrize("name", sorted(EDGE_PATHS))
def test_edge_paths_finite_at_both_ends_under_jit(name):
    path = EDGE_PATHS[name]
    f = jax.jit(lambda t: path.sample_and_target(X0, X1, t, EPS))
    for t in (0.0, 1.0):
        x_t, u_t = f(jnp.float32(t))
        assert bool(jnp.isfinite(x_t).all() and jnp.isfinite(u_t).all()), (name, t)


@pytest.mark.parametrize(
    "sampler",
    [
        T.BetaTime(1e-3, 1e-3),
        T.BetaTime(1e3, 1e-3),
        T.LogitNormalTime(50.0, 1e-8),
        T.LogitNormalTime(-50.0, 10.0),
        fm.reflow.GridTime(1),
    ],
    ids=["beta-tiny", "beta-skewed", "logit-far", "logit-wide", "grid-1"],
)
def test_edge_time_samplers_finite_in_unit_interval(sampler):
    t = _draw(sampler, jax.random.key(0))
    assert bool(jnp.isfinite(t).all()) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_edge_loss_and_models_finite_under_jit(labelled):
    x0, x1 = jnp.zeros((4, 2)), jnp.ones((4, 2))
    loss = jax.jit(lambda p: fm.losses.cfm_loss(lambda x, t: x, jax.random.key(0), x0, x1, path=p)[0])
    assert bool(jnp.isfinite(loss(P.GaussianPath(0.0))))
    f, state = _jitted(labelled)
    out = f(state, x0[:2], jnp.array([0.0, 1.0]), jnp.array([0, 3]))
    assert bool(jnp.isfinite(out).all())
    e = jax.jit(lambda t: fm.models.sinusoidal_embedding(t, 2, scale=1e-9))(jnp.array([0.0, 1.0]))
    assert bool(jnp.isfinite(e).all())
