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
    with pytest.raises(ValueError, match="no conditioning"):
        model(jnp.ones((3, 2)), jnp.ones(3), cond=jnp.zeros(3, jnp.int32))


# --- continuous conditions ----------------------------------------------------------------------


def test_mlp_cond_dim_conditions_and_null():
    model = fm.models.MLP(2, (16,), cond_dim=3, rngs=nnx.Rngs(0))
    x, t = jnp.ones((4, 2)), jnp.full(4, 0.5)
    c = jnp.array([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
    out = model(x, t, cond=c)
    assert out.shape == (4, 2)
    np.testing.assert_allclose(out[0], out[2], rtol=1e-6)
    assert not np.allclose(out[0], out[1])  # the condition matters
    null = model.null_cond(4)
    assert null.shape == (4, 3) and bool(jnp.isnan(null).all())
    v_null = model(x, t, cond=null)
    np.testing.assert_allclose(model(x, t), v_null, rtol=1e-6)  # cond=None: null for the batch
    assert not np.allclose(v_null[0], out[0])  # the null condition is not the zero vector
    # a batch mixing null and real rows: each row is its own
    mixed = model(x, t, cond=c.at[1].set(jnp.nan))
    np.testing.assert_allclose(mixed[1], v_null[1], rtol=1e-6)
    np.testing.assert_allclose(mixed[0], out[0], rtol=1e-6)


def test_mlp_null_rows_give_finite_gradients():
    import jax

    model = fm.models.MLP(2, (8,), cond_dim=2, rngs=nnx.Rngs(0))
    c = jnp.array([[0.3, 0.1], [jnp.nan, jnp.nan]])
    grads = nnx.grad(lambda m: (m(jnp.ones((2, 2)), jnp.ones(2), cond=c) ** 2).sum())(model)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_mlp_cond_dim_one_takes_a_vector():
    model = fm.models.MLP(2, (8,), cond_dim=1, rngs=nnx.Rngs(0))
    x, t, c = jnp.ones((3, 2)), jnp.ones(3), jnp.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(model(x, t, cond=c), model(x, t, cond=c[:, None]), rtol=1e-6)


def test_null_cond_per_kind():
    assert fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)).null_cond(3) is None
    labels = fm.models.MLP(2, (8,), num_classes=4, rngs=nnx.Rngs(0)).null_cond(3)
    assert labels.tolist() == [4, 4, 4]


def test_cond_errors():
    with pytest.raises(ValueError, match="not both"):
        fm.models.MLP(2, (8,), num_classes=3, cond_dim=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"cond_dim must be an int >= 1"):
        fm.models.MLP(2, (8,), cond_dim=0, rngs=nnx.Rngs(0))
    model = fm.models.MLP(2, (8,), cond_dim=2, rngs=nnx.Rngs(0))
    x, t = jnp.ones((3, 2)), jnp.ones(3)
    with pytest.raises(ValueError, match=r"float array of shape \(3, 2\), got shape \(3, 3\)"):
        model(x, t, cond=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="dtype int32"):
        model(x, t, cond=jnp.ones((3, 2), jnp.int32))
    labelled = fm.models.MLP(2, (8,), num_classes=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"integer labels of shape \(3,\) as cond, got shape \(3, 2\)"):
        labelled(x, t, cond=jnp.ones((3, 2)))


# --- guidance with float and pytree conditions ----------------------------------------------------


def _float_field(calls):
    def field(x, t, cond=None):
        calls.append(x.shape[0])
        c = cond["v"] if isinstance(cond, dict) else cond
        shift = jnp.where(jnp.isnan(c).all(-1), -1.0, jnp.nan_to_num(c).sum(-1))
        if isinstance(cond, dict):
            shift = shift + 10.0 * cond["y"]
        return x * t[:, None] + shift[:, None]

    return field


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("null_form", ["one", "batch-of-one", "batched", "callable"])
def test_guided_field_with_float_conditions(scale, null_form):
    calls = []
    field = _float_field(calls)
    x, t = jnp.arange(6.0).reshape(3, 2), jnp.array([0.1, 0.5, 0.9])
    c = jnp.array([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]])
    nan = jnp.full((2,), jnp.nan)
    null = {"one": nan, "batch-of-one": nan[None], "batched": jnp.tile(nan, (3, 1)),
            "callable": lambda b: jnp.full((b, 2), jnp.nan)}[null_form]
    g = fm.sampling.guided_field(field, scale, null_cond=null)
    v_c, v_u = field(x, t, cond=c), field(x, t, cond=jnp.tile(nan, (3, 1)))
    calls.clear()
    out = g(x, t, c)
    assert calls == [6]  # one forward over the doubled batch
    np.testing.assert_allclose(out, v_u + scale * (v_c - v_u), rtol=1e-6, atol=1e-6)


def test_guided_field_with_a_pytree_condition_and_the_mlp():
    calls = []
    field = _float_field(calls)
    x, t = jnp.ones((2, 2)), jnp.full(2, 0.5)
    cond = {"v": jnp.array([[1.0, 1.0], [2.0, 0.0]]), "y": jnp.array([1, 2])}
    null = {"v": jnp.full(2, jnp.nan), "y": jnp.array(0)}
    out = fm.sampling.guided_field(field, 2.0, null_cond=null)(x, t, cond)
    v_c = field(x, t, cond=cond)
    v_u = field(x, t, cond={"v": jnp.full((2, 2), jnp.nan), "y": jnp.zeros(2, jnp.int32)})
    np.testing.assert_allclose(out, v_u + 2.0 * (v_c - v_u), rtol=1e-6)
    # a cond_dim MLP with its own null condition; w = 1 is the conditional field
    model = fm.models.MLP(2, (8,), cond_dim=2, rngs=nnx.Rngs(0))
    g = fm.sampling.guided_field(model, 1.0, null_cond=model.null_cond)
    np.testing.assert_allclose(g(x, t, cond["v"]), model(x, t, cond=cond["v"]), rtol=1e-5, atol=1e-6)
    g0 = fm.sampling.guided_field(model, 0.0, null_cond=model.null_cond)
    np.testing.assert_allclose(g0(x, t, cond["v"]), model(x, t), rtol=1e-5, atol=1e-6)


def test_guided_field_errors():
    field = _float_field([])
    with pytest.raises(ValueError, match="exactly one of null_label"):
        fm.sampling.guided_field(field, 2.0)
    with pytest.raises(ValueError, match="exactly one of null_label"):
        fm.sampling.guided_field(field, 2.0, null_label=1, null_cond=1)
    g = fm.sampling.guided_field(field, 2.0, null_cond=jnp.zeros(2))
    with pytest.raises(ValueError, match="needs a condition"):
        g(jnp.ones((2, 2)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"shape \(2,\) \(one example\).*got \(3,\)"):
        fm.sampling.guided_field(field, 2.0, null_cond=jnp.zeros(3))(
            jnp.ones((2, 2)), jnp.ones(2), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="structure"):
        fm.sampling.guided_field(field, 2.0, null_cond={"v": jnp.zeros(2)})(
            jnp.ones((2, 2)), jnp.ones(2), jnp.ones((2, 2)))
