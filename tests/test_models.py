"""Models: shapes, time embedding, conditioning, errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flowjax_fm as fm


@pytest.mark.parametrize("event", [(2,), (3, 2), (4, 4, 1)])
def test_mlp_shapes(event):
    dim = int(np.prod(event))
    model = fm.models.MLP(dim, (16, 16), rngs=nnx.Rngs(0))
    out = model(jnp.ones((5, *event)), jnp.linspace(0, 1, 5))
    assert out.shape == (5, *event)


@pytest.mark.parametrize("freqs", [0, 8])
def test_time_embedding_keeps_ends_distinct(freqs):
    e = fm.models.time_features(jnp.array([0.0, 1.0]), freqs)
    assert float(jnp.abs(e[0] - e[1]).max()) > 0.5
    model = fm.models.MLP(2, (16,), time_frequencies=freqs, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    assert not jnp.allclose(model(x, jnp.zeros(1)), model(x, jnp.ones(1)))


def test_reference_network_size():
    # torchcfm's 2D MLP: (2+1)->64->64->64->2 with SELU: 3*64+64 + 2*(64*64+64) + 64*2+2 params
    model = fm.models.MLP(2, (64, 64, 64), rngs=nnx.Rngs(0))
    n = sum(p.size for p in __import__("jax").tree.leaves(nnx.state(model, nnx.Param)))
    assert n == 3 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 2 + 2


def test_class_conditioning():
    model = fm.models.MLP(2, (16,), num_classes=3, rngs=nnx.Rngs(0))
    x, t = jnp.ones((2, 2)), jnp.full(2, 0.5)
    a = model(x, t, cond=jnp.array([0, 1]))
    b = model(x, t)  # null class
    assert a.shape == (2, 2) and not jnp.allclose(a, b)


def test_errors():
    with pytest.raises(ValueError, match="unknown activation"):
        fm.models.MLP(2, rngs=nnx.Rngs(0), activation="swishy")
    model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="event size 2"):
        model(jnp.ones((3, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        model(jnp.ones((3, 2)), jnp.ones(()))
    with pytest.raises(ValueError, match="no class conditioning"):
        model(jnp.ones((3, 2)), jnp.ones(3), cond=jnp.zeros(3, jnp.int32))
