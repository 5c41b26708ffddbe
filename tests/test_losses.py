"""The CFM loss and the time samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm


def _batch(n=32, d=2, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), jax.random.normal(k1, (n, d)) + 3.0


def test_zero_field_on_straight_path_is_mean_squared_displacement():
    x0, x1 = _batch()
    loss, aux = fm.losses.cfm_loss(
        lambda x, t: jnp.zeros_like(x), jax.random.key(0), x0, x1, path=fm.paths.CondOTPath()
    )
    np.testing.assert_allclose(loss, jnp.mean((x1 - x0) ** 2), rtol=1e-6)
    assert aux["per_example"].shape == (32,) and aux["t"].shape == (32,)


def test_loss_matches_a_hand_computation():
    x0, x1 = _batch(16, 3, 1)
    path = fm.paths.GaussianPath(sigma=0.2)
    field = lambda x, t: 0.5 * x + t[:, None]
    key = jax.random.key(3)
    loss, aux = fm.losses.cfm_loss(field, key, x0, x1, path=path)
    _, k_loss = jax.random.split(key)
    k_t, k_noise = jax.random.split(k_loss)
    t = jnp.stack([jax.random.uniform(jax.random.fold_in(k_t, i), (1,))[0] for i in range(16)])
    eps = jnp.stack([jax.random.normal(jax.random.fold_in(k_noise, i), (3,)) for i in range(16)])
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1 + 0.2 * eps
    expected = jnp.mean(jnp.mean((field(x_t, t) - (x1 - x0)) ** 2, axis=1))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux["t"], t)


def test_weight_and_time_sampler():
    x0, x1 = _batch()
    field = lambda x, t: jnp.zeros_like(x)
    kw = dict(path=fm.paths.CondOTPath(), time_sampler=fm.time_sampling.LogitNormalTime())
    base, aux = fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, **kw)
    weighted, _ = fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, weight=lambda t: 2 * t, **kw)
    np.testing.assert_allclose(weighted, jnp.mean(2 * aux["t"] * aux["per_example"]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"weight\(t\) must return shape \(32,\)"):
        fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, weight=lambda t: 1.0, **kw)
    del base


def test_ot_coupling_lowers_the_loss_of_the_straight_field():
    # under exact OT the pairs are closer: the regression target has less variance
    x0, x1 = _batch(128, 2, 2)
    field = lambda x, t: jnp.zeros_like(x) + 3.0
    kw = dict(path=fm.paths.CondOTPath())
    ind, _ = fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, **kw)
    ot, _ = fm.losses.cfm_loss(
        field, jax.random.key(0), x0, x1, coupling=fm.couplings.ExactOTCoupling(), **kw
    )
    assert ot < ind


def test_cond_follows_the_pairing_and_makes_ot_label_aware():
    n = 60
    x0, x1 = _batch(n, 2, 4)
    labels = (jnp.arange(n) % 3).astype(jnp.int32)
    seen = {}

    def field(x, t, cond):
        seen["cond"] = cond
        return jnp.zeros_like(x)

    fm.losses.cfm_loss(
        field, jax.random.key(0), x0, x1, path=fm.paths.CondOTPath(),
        coupling=fm.couplings.ExactOTCoupling(), cond=labels,
    )
    k_pair, _ = jax.random.split(jax.random.key(0))
    pairing = fm.couplings.ExactOTCoupling()(k_pair, x0, x1, labels, labels)
    np.testing.assert_array_equal(seen["cond"], labels[pairing.target])
    assert sorted(np.asarray(seen["cond"]).tolist()) == sorted(labels.tolist())


def test_loss_is_jittable_and_differentiable():
    x0, x1 = _batch()
    f = jax.jit(lambda w: fm.losses.cfm_loss(
        lambda x, t: w * x, jax.random.key(0), x0, x1, path=fm.paths.GaussianPath())[0])
    g = jax.grad(f)(jnp.float32(0.5))
    assert jnp.isfinite(g)


@pytest.mark.parametrize(
    "x0,x1,field,match",
    [
        (jnp.zeros((4, 2)), jnp.zeros((4, 3)), None, r"\(4, 2\) and \(4, 3\)"),
        (jnp.zeros((0, 2)), jnp.zeros((0, 2)), None, "empty"),
        (jnp.zeros((4, 2), jnp.int32), jnp.zeros((4, 2), jnp.int32), None, "floating"),
        (jnp.zeros((4, 2)), jnp.zeros((4, 2)), lambda x, t: x[:, :1], r"returned shape \(4, 1\)"),
    ],
)
def test_bad_input(x0, x1, field, match):
    field = field or (lambda x, t: x)
    with pytest.raises(ValueError, match=match):
        fm.losses.cfm_loss(field, jax.random.key(0), x0, x1, path=fm.paths.CondOTPath())


# --- time samplers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sampler,mean",
    [
        (fm.time_sampling.UniformTime(), 0.5),
        (fm.time_sampling.LogitNormalTime(0.0, 1.0), 0.5),
        (fm.time_sampling.LogitNormalTime(1.0, 0.5), None),
        (fm.time_sampling.BetaTime(2.0, 5.0), 2.0 / 7.0),
    ],
)
def test_time_samplers_range_and_mean(sampler, mean):
    n = 20_000
    t = jax.jit(sampler, static_argnums=1)(jax.random.key(0), n)
    assert t.shape == (n,) and t.dtype == jnp.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    if mean is not None:
        assert abs(float(t.mean()) - mean) < 4 * float(t.std()) / np.sqrt(n)


def test_logit_normal_matches_its_definition():
    from scipy.special import expit

    t = np.asarray(fm.time_sampling.LogitNormalTime(0.3, 0.7)(jax.random.key(1), 20_000))
    ref = expit(0.3 + 0.7 * np.random.default_rng(0).standard_normal(200_000))
    np.testing.assert_allclose(np.quantile(t, [0.1, 0.5, 0.9]), np.quantile(ref, [0.1, 0.5, 0.9]), atol=0.01)


def test_time_sampler_bad_n_and_names():
    with pytest.raises(ValueError, match=r"n must be an int >= 1"):
        fm.time_sampling.UniformTime()(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="unknown time sampler"):
        fm.time_sampling.get_time_sampler("cosine")
