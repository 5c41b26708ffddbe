"""The UNet: shapes, class conditioning, time embedding, input checks; guided sampling fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm


def _jitted(net):
    """``net``'s forward as one jitted function (eager NNX compiles op by op: slow on CPU)."""
    return jax.jit(fm.training.make_vector_field(net))


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((3, 8, 8, 1), dict(channels=8, channel_mult=(1, 2))),
        ((2, 16, 16, 3), dict(channels=8, channel_mult=(1, 2, 2), num_res_blocks=2)),
        ((2, 32, 32, 1), dict(channels=8, channel_mult=(1, 1, 2, 2))),
    ],
)
def test_output_shape(shape, kwargs):
    net = fm.models.UNet(shape[-1], num_classes=10, rngs=nnx.Rngs(0), **kwargs)
    x = jax.random.normal(jax.random.key(0), shape)
    t = jnp.linspace(0.0, 1.0, shape[0])
    out = _jitted(net)(x, t, cond=jnp.arange(shape[0]) % 10)
    assert out.shape == shape and out.dtype == x.dtype
    assert bool(jnp.isfinite(out).all())


def test_unconditional_shape_and_time_embedding():
    e = fm.models.sinusoidal_embedding(jnp.array([0.0, 1.0]), 32)
    assert float(jnp.abs(e[0] - e[1]).max()) > 0.5
    net = fm.models.UNet(1, channels=8, rngs=nnx.Rngs(0))
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(2), (1, 8, 8, 1)), (2, 8, 8, 1))
    out = _jitted(net)(x, jnp.array([0.0, 1.0]))
    assert out.shape == (2, 8, 8, 1)
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-3  # same image, t = 0 vs t = 1


def test_class_conditioning_null_default_and_row_independence():
    net = fm.models.UNet(1, channels=8, num_classes=10, rngs=nnx.Rngs(0))
    f = _jitted(net)
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 8, 8, 1)), (4, 8, 8, 1))
    t = jnp.full((4,), 0.3)
    out = f(x, t, cond=jnp.array([1, 7, 10, 10]))
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-4  # labels matter
    np.testing.assert_allclose(out[2], out[3], rtol=1e-6)
    np.testing.assert_allclose(f(x, t)[0], out[2], rtol=1e-5, atol=1e-6)  # None = null class
    # GroupNorm is per example: a row's output does not depend on the other rows
    x4 = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))
    full = f(x4, t, cond=jnp.array([0, 1, 2, 3]))
    swapped = f(x4[::-1], t, cond=jnp.array([3, 2, 1, 0]))
    np.testing.assert_allclose(full, swapped[::-1], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def unet_122():
    # built once: an eager UNet build is 10-30 s of the default run on 2 loaded cores
    return fm.models.UNet(1, channels=8, channel_mult=(1, 2, 2), rngs=nnx.Rngs(0))


@pytest.mark.xdist_group("unet_122")  # one worker builds it (the first build compiles 54 initialisers)
@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 6, 6, 1), r"divisible by 4, got x of shape \(2, 6, 6, 1\)"),
        ((2, 8, 8), r"channels-last images \(B, H, W, 1\), got x of shape \(2, 8, 8\)"),
        ((2, 8, 8, 3), r"\(B, H, W, 1\), got x of shape \(2, 8, 8, 3\)"),
    ],
)
def test_bad_input_shape(shape, match, unet_122):
    with pytest.raises(ValueError, match=match):
        unet_122(jnp.zeros(shape), jnp.zeros(shape[0]))


def test_bad_cond():
    plain = fm.models.UNet(1, channels=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no conditioning"):
        plain(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.array([0, 1]))
    cond = fm.models.UNet(1, channels=8, num_classes=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2,\)"):
        cond(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.zeros(2))
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        cond(jnp.zeros((2, 8, 8, 1)), jnp.zeros(()))


# --- guidance ---------------------------------------------------------------------------


def _toy_field():
    """A class-conditional field with distinct conditional and null velocities, and a counter."""
    calls = []

    def field(x, t, cond=None):
        calls.append(x.shape[0])
        offset = jnp.where(cond == 5, -1.0, cond.astype(x.dtype))
        return x * t[:, None] + offset[:, None]

    return field, calls


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_guidance_formula(scale):
    field, calls = _toy_field()
    g = fm.sampling.guided_field(field, scale, null_label=5)
    x = jax.random.normal(jax.random.key(0), (3, 2))
    t = jnp.array([0.2, 0.5, 0.9])
    y = jnp.array([0, 2, 4])
    v_c = field(x, t, cond=y)
    v_u = field(x, t, cond=jnp.full((3,), 5))
    calls.clear()
    out = g(x, t, y)
    assert calls == [6]  # one call on the doubled batch
    np.testing.assert_allclose(out, v_u + scale * (v_c - v_u), rtol=1e-6, atol=1e-6)
    if scale == 1.0:
        np.testing.assert_allclose(out, v_c, rtol=1e-6)
    if scale == 0.0:
        np.testing.assert_allclose(out, v_u, rtol=1e-6)


def test_guidance_with_unet_single_forward_in_sample():
    net = fm.models.UNet(1, channels=8, num_classes=4, rngs=nnx.Rngs(0))
    base = fm.training.make_vector_field(net)
    batches = []

    def counted(x, t, cond=None):
        batches.append(x.shape[0])
        return base(x, t, cond=cond)

    x0 = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    y = jnp.array([0, 1, 3])
    g = fm.sampling.guided_field(counted, 1.0, null_label=4)
    res = fm.sampling.sample(g, x0, cond=y, solver="euler", num_steps=2)
    ref = fm.sampling.sample(base, x0, cond=y, solver="euler", num_steps=2)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-4, atol=1e-5)  # w = 1: conditional
    assert batches and set(batches) == {6}  # each call saw the doubled batch, never two halves


def test_guidance_needs_labels():
    field, _ = _toy_field()
    g = fm.sampling.guided_field(field, 2.0, null_label=5)
    with pytest.raises(ValueError, match="needs class labels"):
        g(jnp.zeros((2, 2)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2,\)"):
        g(jnp.zeros((2, 2)), jnp.zeros(2), jnp.zeros((2, 1), jnp.int32))


# --- continuous conditions ----------------------------------------------------------------------


def test_cond_dim_conditions_null_and_guidance():
    net = fm.models.UNet(1, channels=8, cond_dim=2, rngs=nnx.Rngs(0))
    f = _jitted(net)
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(4), (1, 8, 8, 1)), (4, 8, 8, 1))
    t = jnp.full((4,), 0.4)
    null = net.null_cond(4)
    assert null.shape == (4, 2) and bool(jnp.isnan(null).all())
    c = jnp.array([[0.0, 0.0], [1.5, -0.5], [jnp.nan, jnp.nan], [0.0, 0.0]])
    out = f(x, t, cond=c)
    assert out.shape == x.shape and bool(jnp.isfinite(out).all())
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-4  # the condition matters
    assert float(jnp.abs(out[0] - out[2]).max()) > 1e-4  # null is not the zero condition
    np.testing.assert_allclose(out[0], out[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(x, t)[2], out[2], rtol=1e-5, atol=1e-6)  # None = null
    # guidance over float conditions: w = 0 is the null field, one doubled forward
    g = fm.sampling.guided_field(f, 0.0, null_cond=jnp.full(2, jnp.nan))
    np.testing.assert_allclose(g(x, t, c), f(x, t), rtol=1e-4, atol=1e-5)


def test_cond_dim_errors():
    with pytest.raises(ValueError, match="not both"):
        fm.models.UNet(1, channels=8, num_classes=3, cond_dim=2, rngs=nnx.Rngs(0))
    net = fm.models.UNet(1, channels=8, cond_dim=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"float array of shape \(2, 2\), got shape \(2,\)"):
        net(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.array([0, 1]))
