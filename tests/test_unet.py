"""The UNet: shapes, class conditioning, time embedding, input checks; guided sampling fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((3, 8, 8, 1), dict(channels=8, channel_mult=(1, 2))),
        ((2, 16, 16, 3), dict(channels=8, channel_mult=(1, 2, 2), num_res_blocks=2)),
        ((2, 32, 32, 1), dict(channels=8, channel_mult=(1, 1, 2, 2))),
    ],
)
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_shape(shape, kwargs, num_classes):
    net = fm.models.UNet(shape[-1], num_classes=num_classes, rngs=nnx.Rngs(0), **kwargs)
    x = jax.random.normal(jax.random.key(0), shape)
    t = jnp.linspace(0.0, 1.0, shape[0])
    cond = None if num_classes is None else jnp.arange(shape[0]) % num_classes
    out = net(x, t, cond=cond)
    assert out.shape == shape and out.dtype == x.dtype
    assert bool(jnp.isfinite(out).all())


def test_class_conditioning_changes_output_and_null_is_default():
    net = fm.models.UNet(1, channels=8, num_classes=10, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    t = jnp.full((2,), 0.3)
    a = net(x, t, cond=jnp.array([1, 1]))
    b = net(x, t, cond=jnp.array([7, 7]))
    assert float(jnp.abs(a - b).max()) > 1e-4
    np.testing.assert_allclose(net(x, t), net(x, t, cond=jnp.array([10, 10])), rtol=1e-6)


def test_time_embedding_distinguishes_ends():
    e = fm.models.sinusoidal_embedding(jnp.array([0.0, 1.0]), 32)
    assert float(jnp.abs(e[0] - e[1]).max()) > 0.5
    net = fm.models.UNet(1, channels=8, rngs=nnx.Rngs(0))
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(2), (1, 8, 8, 1)), (2, 8, 8, 1))
    out = net(x, jnp.array([0.0, 1.0]))
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-3


def test_batch_rows_are_independent():
    """GroupNorm normalises per example: a row's output does not depend on the other rows."""
    net = fm.models.UNet(1, channels=8, num_classes=3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))
    t = jnp.array([0.1, 0.5, 0.7, 0.9])
    y = jnp.array([0, 1, 2, 3])
    full = net(x, t, cond=y)
    single = net(x[1:2], t[1:2], cond=y[1:2])
    np.testing.assert_allclose(full[1:2], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 6, 6, 1), r"divisible by 4, got x of shape \(2, 6, 6, 1\)"),
        ((2, 8, 8), r"channels-last images \(B, H, W, 1\), got x of shape \(2, 8, 8\)"),
        ((2, 8, 8, 3), r"\(B, H, W, 1\), got x of shape \(2, 8, 8, 3\)"),
    ],
)
def test_bad_input_shape(shape, match):
    net = fm.models.UNet(1, channels=8, channel_mult=(1, 2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=match):
        net(jnp.zeros(shape), jnp.zeros(shape[0]))


def test_bad_cond():
    plain = fm.models.UNet(1, channels=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no class conditioning"):
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
    for w, expected in [(1.0, base), (0.0, None)]:
        g = fm.sampling.guided_field(counted, w, null_label=4)
        res = fm.sampling.sample(g, x0, cond=y, solver="euler", num_steps=2)
        ref_field = (lambda x, t, cond: base(x, t, cond=jnp.full_like(cond, 4))) if expected is None else base
        ref = fm.sampling.sample(ref_field, x0, cond=y, solver="euler", num_steps=2)
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-4, atol=1e-5)
    assert set(batches) == {6}  # every traced call saw the doubled batch, never two halves


def test_guidance_needs_labels():
    field, _ = _toy_field()
    g = fm.sampling.guided_field(field, 2.0, null_label=5)
    with pytest.raises(ValueError, match="needs class labels"):
        g(jnp.zeros((2, 2)), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2,\)"):
        g(jnp.zeros((2, 2)), jnp.zeros(2), jnp.zeros((2, 1), jnp.int32))
