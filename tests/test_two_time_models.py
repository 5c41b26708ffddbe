"""Two-time models (``two_time=True``): shapes, conditions, errors, jit, split/merge, grads, jvp.

One-time models must stay exactly as they were: their outputs are compared with numbers
computed on the code before the two-time option existed (same seeds, same inputs).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm

X = jax.random.normal(jax.random.key(1), (3, 2))
T = jnp.array([0.0, 0.4, 1.0])
R = jnp.array([0.5, 0.4, 1.0])  # a forward jump, r = t, and r = t = 1
IMG = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
TI = jnp.array([0.1, 0.9])
SMALL_UNET = dict(channels=8, channel_mult=(1, 2))


def _jitted(model):
    """``model``'s forward as one jitted function of the arrays (split / merge, plain jax.jit)."""
    graph, state = nnx.split(model)

    @jax.jit
    def forward(state, x, t, cond=None, r=None):
        return nnx.merge(graph, state)(x, t, cond, r=r)

    return lambda x, t, cond=None, r=None: forward(state, x, t, cond, r)


# --- one-time models unchanged ------------------------------------------------------------------

# The first six outputs and the sum of squares of the one-time models below, computed with
# the code before the two_time option existed (same seeds and inputs; CPU, float32).
ONE_TIME_REFERENCE = {
    "mlp": ([-0.47978574, -0.79348677, -0.47611627, 0.78390080, 1.03093886, 1.46103585], 4.89846347),
    "mlp_k": ([-0.64054787, -0.07786295, 0.10311657, -0.08211577, -0.14972530, -0.08671427], 0.463677272),
    "mlp_c": ([-0.16563118, -0.69171304, -0.03040840, 0.49161258, 0.30846113, -0.01359671], 0.843841351),
    "unet_k": ([-0.39479160, 0.20525816, 0.57600421, -0.71655023, 1.03406215, 0.10749917], 29.6182858),
}


def _one_time_output(name):
    if name == "mlp":
        return fm.models.MLP(2, (16, 16), time_frequencies=4, rngs=nnx.Rngs(0))(X, T)
    if name == "mlp_k":
        return fm.models.MLP(2, (16,), num_classes=3, rngs=nnx.Rngs(0))(X, T, cond=jnp.array([0, 2, 3]))
    if name == "mlp_c":
        cond = jnp.array([[1.0, 2.0], [0.0, -1.0], [jnp.nan, jnp.nan]])
        return fm.models.MLP(2, (16,), cond_dim=2, rngs=nnx.Rngs(0))(X, T, cond=cond)
    net = fm.models.UNet(1, num_classes=10, rngs=nnx.Rngs(0), **SMALL_UNET)
    return _jitted(net)(IMG, TI, jnp.array([3, 10]))


@pytest.mark.parametrize("name", sorted(ONE_TIME_REFERENCE))
def test_one_time_outputs_unchanged(name):
    out = np.asarray(_one_time_output(name), np.float64).ravel()
    first, sum_sq = ONE_TIME_REFERENCE[name]
    np.testing.assert_allclose(out[:6], first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sum(out**2), sum_sq, rtol=1e-5)


def test_one_time_parameter_shapes_unchanged():
    model = nnx.eval_shape(lambda: fm.models.MLP(2, (64, 64, 64), rngs=nnx.Rngs(0)))
    assert model.two_time is False and model.layers[0].kernel.shape == (3, 64)
    net = nnx.eval_shape(lambda: fm.models.UNet(1, rngs=nnx.Rngs(0), **SMALL_UNET))
    assert net.two_time is False and net.time_mlp1.kernel.shape == (8, 32)


# --- shapes and conditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, cond",
    [
        (dict(), None),
        (dict(time_frequencies=4), None),
        (dict(num_classes=3), jnp.array([0, 2, 3])),
        (dict(cond_dim=2), jnp.array([[1.0, 2.0], [0.0, -1.0], [jnp.nan, jnp.nan]])),
    ],
)
def test_mlp_two_time_shapes_and_null_condition(kwargs, cond):
    model = fm.models.MLP(6, (16,), two_time=True, rngs=nnx.Rngs(0), **kwargs)
    assert model.two_time is True
    x = jax.random.normal(jax.random.key(3), (3, 3, 2))
    out = model(x, T, cond=cond, r=R)
    assert out.shape == (3, 3, 2) and out.dtype == x.dtype and bool(jnp.isfinite(out).all())
    null = model.null_cond(3)
    if null is not None:  # cond omitted = the null condition (guidance), as for one-time models
        np.testing.assert_array_equal(model(x, T, r=R), model(x, T, cond=null, r=R))


def test_mlp_two_time_input_width():
    # [x, phi(t), phi(r - t)] with K = 4 frequencies: 2 + 2 * (1 + 2 * 4)
    model = fm.models.MLP(2, (8,), time_frequencies=4, two_time=True, rngs=nnx.Rngs(0))
    assert model.layers[0].kernel.shape == (20, 8)


# Building a UNet eagerly compiles every initialiser (slow on CPU): one real two-time UNet for
# the whole module; the other kinds are checked abstractly (nnx.eval_shape / jax.eval_shape).
@pytest.fixture(scope="module")
def unet2():
    return fm.models.UNet(1, num_classes=10, two_time=True, rngs=nnx.Rngs(0), **SMALL_UNET)


def test_unet_two_time_classes_and_null_condition(unet2):
    assert unet2.two_time is True and unet2.time_mlp1.kernel.shape == (16, 32)
    graph, state = nnx.split(unet2)

    @jax.jit
    def labelled_and_omitted(state, x, t, r, labels):
        net = nnx.merge(graph, state)
        return net(x, t, cond=labels, r=r), net(x, t, r=r)  # cond omitted: the null class

    x, t, r = jnp.concatenate([IMG, IMG]), jnp.tile(TI, 2), jnp.array([0.6, 0.9, 0.6, 0.9])
    labelled, omitted = labelled_and_omitted(state, x, t, r, jnp.array([3, 10, 10, 10]))
    assert labelled.shape == (4, 8, 8, 1) and labelled.dtype == IMG.dtype
    assert bool(jnp.isfinite(labelled).all())
    np.testing.assert_allclose(omitted[1:], labelled[1:], rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(labelled[0] - labelled[2]).max()) > 1e-5  # the label matters


@pytest.mark.parametrize("kwargs, cond", [(dict(), None), (dict(cond_dim=3), jnp.ones((2, 3)))])
def test_unet_two_time_shapes_abstract(kwargs, cond):
    net = nnx.eval_shape(lambda: fm.models.UNet(1, two_time=True, rngs=nnx.Rngs(0), **SMALL_UNET, **kwargs))
    graph, state = nnx.split(net)
    for c in (cond, net.null_cond(2)):
        out = jax.eval_shape(lambda s, c: nnx.merge(graph, s)(IMG, TI, c, r=TI + 0.1), state, c)
        assert out.shape == IMG.shape and out.dtype == IMG.dtype


# --- errors -------------------------------------------------------------------------------------


def test_errors():
    # the checks run before any arithmetic: abstract models are enough
    one = nnx.eval_shape(lambda: fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)))
    two = nnx.eval_shape(lambda: fm.models.MLP(2, (8,), two_time=True, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="this model takes one time; build it with two_time=True to pass r"):
        one(X, T, r=R)
    with pytest.raises(ValueError, match=r"a two-time model needs r=\.\.\."):
        two(X, T)
    with pytest.raises(ValueError, match=r"r must have shape \(3,\) like t, got \(3, 1\)"):
        two(X, T, r=R[:, None])
    with pytest.raises(ValueError, match="two_time must be True or False, got 1"):
        fm.models.MLP(2, two_time=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="two_time must be True or False"):
        fm.models.UNet(1, two_time="yes", rngs=nnx.Rngs(0))
    net1 = nnx.eval_shape(lambda: fm.models.UNet(1, rngs=nnx.Rngs(0), **SMALL_UNET))
    net2 = nnx.eval_shape(lambda: fm.models.UNet(1, two_time=True, rngs=nnx.Rngs(0), **SMALL_UNET))
    for net, kwargs, match in [
        (net1, dict(r=TI), "this model takes one time; build it with two_time=True to pass r"),
        (net2, dict(), r"a two-time model needs r=\.\.\."),
        (net2, dict(r=jnp.zeros(3)), r"r must have shape \(2,\) like t, got \(3,\)"),
    ]:
        graph, state = nnx.split(net)
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(lambda s, kw=kwargs, g=graph: nnx.merge(g, s)(IMG, TI, **kw), state)


# --- transforms: jit, split / merge, grad, jvp --------------------------------------------------


def test_mlp_jit_split_merge_and_r_equal_t():
    model = fm.models.MLP(2, (16, 16), time_frequencies=4, num_classes=3, two_time=True, rngs=nnx.Rngs(0))
    cond = jnp.array([0, 1, 3])
    eager = model(X, T, cond=cond, r=R)
    np.testing.assert_allclose(_jitted(model)(X, T, cond, r=R), eager, rtol=1e-5, atol=1e-6)
    graph, state = nnx.split(model)
    merged = nnx.merge(graph, state)
    assert merged.two_time is True
    np.testing.assert_array_equal(merged(X, T, cond=cond, r=R), eager)
    # r = t is an ordinary input: the model is a field of (x, t) there, varying with t
    x = jnp.broadcast_to(X[:1], (2, 2))
    ends = jnp.array([0.0, 1.0])
    at_zero_gap = model(x, ends, r=ends)
    assert float(jnp.abs(at_zero_gap[0] - at_zero_gap[1]).max()) > 1e-3


def test_gradient_with_respect_to_r_is_nonzero():
    model = fm.models.MLP(2, (16,), two_time=True, rngs=nnx.Rngs(0))  # phi(d) = d alone
    g = jax.grad(lambda r: jnp.sum(model(X, T, r=r) ** 2))(R)
    assert bool(jnp.all(jnp.abs(g) > 1e-6)), g  # r = t included (rows 1 and 2)


@pytest.mark.parametrize("freqs", [0, 4])
def test_mlp_jvp_matches_vjp_and_finite_difference(freqs):
    # MeanFlow's total derivative: tangents (v, 0, 1) for (x, t, r), under jit
    model = fm.models.MLP(2, (32, 32), activation="silu", time_frequencies=freqs, num_classes=3,
                          two_time=True, rngs=nnx.Rngs(0))
    graph, state = nnx.split(model)
    cond = jnp.array([0, 2, 3])

    def f(x, t, r):
        return nnx.merge(graph, state)(x, t, cond=cond, r=r)

    v, dt, dr = jax.random.normal(jax.random.key(4), X.shape), jnp.zeros(3), jnp.ones(3)
    out, tangent = jax.jit(lambda x, t, r: jax.jvp(f, (x, t, r), (v, dt, dr)))(X, T, R)
    np.testing.assert_allclose(out, f(X, T, R), rtol=1e-5, atol=1e-6)
    # forward mode agrees with reverse mode: <w, J u> = <J^T w, u>
    w = jax.random.normal(jax.random.key(6), X.shape)
    _, pullback = jax.vjp(f, X, T, R)
    gx, gt, gr = pullback(w)
    np.testing.assert_allclose(
        jnp.vdot(w, tangent), jnp.vdot(gx, v) + jnp.vdot(gt, dt) + jnp.vdot(gr, dr), rtol=1e-4
    )
    if freqs == 0:  # smooth at the scale of eps (frequencies up to 100 would need eps << 1e-2)
        eps = 1e-2
        fd = (f(X + eps * v, T, R + eps) - f(X - eps * v, T, R - eps)) / (2 * eps)
        np.testing.assert_allclose(tangent, fd, rtol=1e-2, atol=1e-3)


def test_unet_jvp_in_x_t_r_with_conditions_under_jit(unet2):
    graph, state = nnx.split(unet2)

    @jax.jit
    def derivatives(state, x, t, r, labels, v):
        f = lambda x, t, r: nnx.merge(graph, state)(x, t, cond=labels, r=r)
        # two tangents at once: d/dt along dx/dt = v (MeanFlow's total derivative), and d/dr
        tangents = (jnp.stack([v, jnp.zeros_like(x)]), jnp.stack([jnp.ones_like(t), jnp.zeros_like(t)]),
                    jnp.stack([jnp.zeros_like(r), jnp.ones_like(r)]))
        out, (total, d_dr) = jax.vmap(lambda tan: jax.jvp(f, (x, t, r), tan), out_axes=(None, 0))(tangents)
        return out, total, d_dr

    v = jax.random.normal(jax.random.key(5), IMG.shape)
    r = jnp.array([0.1, 0.9])  # the first row at r = t
    out, total, d_dr = derivatives(state, IMG, TI, r, jnp.array([3, 10]), v)
    assert out.shape == total.shape == d_dr.shape == IMG.shape
    assert bool(jnp.isfinite(total).all()) and float(jnp.abs(total).max()) > 1e-4
    # the UNet uses r: per row, the derivative in r is not zero
    assert bool(jnp.all(jnp.abs(d_dr).reshape(2, -1).max(axis=1) > 1e-6)), d_dr


def test_mlp_reverse_over_forward():
    # a MeanFlow-style loss: the jvp inside, gradients w.r.t. the parameters outside
    model = fm.models.MLP(2, (16,), activation="silu", time_frequencies=2, two_time=True, rngs=nnx.Rngs(0))
    graph, params = nnx.split(model)
    v = jax.random.normal(jax.random.key(7), X.shape)

    def loss(params, stop):
        f = lambda x, t, r: nnx.merge(graph, params)(x, t, r=r)
        u, du_dt = jax.jvp(f, (X, T, R), (v, jnp.ones(3), jnp.zeros(3)))
        du_dt = jax.lax.stop_gradient(du_dt) if stop else du_dt
        return jnp.mean((u - (v + (R - T)[:, None] * du_dt)) ** 2)

    for stop in (True, False):
        grads = jax.jit(jax.grad(loss), static_argnums=1)(params, stop)
        leaves = jax.tree.leaves(grads)
        assert all(bool(jnp.isfinite(g).all()) for g in leaves)
        assert sum(float(jnp.abs(g).sum()) for g in leaves) > 1e-4
