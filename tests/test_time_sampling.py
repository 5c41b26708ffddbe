"""Time samplers: one contract suite that every sampler in ``fm.time_sampling`` passes.

Values in [0, 1], shape and dtype, jit equals eager, vmap equals a loop, a leaf change does
not retrace, and the law of the draws (Kolmogorov-Smirnov against scipy.stats, fixed keys).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logit

import flowjax_fm as fm

T = fm.time_sampling

# Each case: the sampler, a copy with changed leaves (or itself: no leaves), its scipy CDF.
REGISTRY = {
    "uniform": (T.UniformTime(), T.UniformTime(), lambda s: stats.uniform().cdf),
    "logit-normal": (
        T.LogitNormalTime(loc=0.0, scale=1.0),
        T.LogitNormalTime(loc=0.5, scale=0.7),
        lambda s: (lambda t: stats.norm(s.loc, s.scale).cdf(logit(t))),
    ),
    "logit-normal-shifted": (
        T.LogitNormalTime(loc=-1.0, scale=2.0),
        T.LogitNormalTime(loc=1.0, scale=0.5),
        lambda s: (lambda t: stats.norm(s.loc, s.scale).cdf(logit(t))),
    ),
    "beta": (T.BetaTime(2.0, 5.0), T.BetaTime(0.5, 0.5), lambda s: stats.beta(s.a, s.b).cdf),
    "beta-uniform": (T.BetaTime(), T.BetaTime(3.0, 1.0), lambda s: stats.beta(s.a, s.b).cdf),
}
NAMES = sorted(REGISTRY)


def test_registry_covers_every_sampler():
    classes = {type(s) for s, _, _ in REGISTRY.values()}
    public = {getattr(T, n) for n in T.__all__ if isinstance(getattr(T, n), type)}
    assert public - {T.AbstractTime} == classes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", NAMES)
def test_values_shape_and_dtype(name, dtype):
    sampler, changed, _ = REGISTRY[name]
    for s in (sampler, changed):
        t = s(jax.random.key(0), 1000, dtype)
        assert t.shape == (1000,) and t.dtype == dtype
        t = np.asarray(t, np.float32)
        assert np.isfinite(t).all() and t.min() >= 0.0 and t.max() <= 1.0
    assert sampler(jax.random.key(1), 7).dtype == jnp.float32  # the default


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    sampler, _, _ = REGISTRY[name]
    key = jax.random.key(2)
    eager = sampler(key, 64)
    jitted = jax.jit(lambda s, k: s(k, 64))(sampler, key)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(name):
    sampler, changed, _ = REGISTRY[name]
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.vmap(lambda k: sampler(k, 16))(keys)
    loop = jnp.stack([sampler(k, 16) for k in keys])
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-7)
    # a stack of samplers (hyperparameters along the mapped axis) against a loop over them
    stack = jax.tree.map(lambda a, b: jnp.stack([jnp.asarray(a), jnp.asarray(b)]), sampler, changed)
    batched = jax.vmap(lambda s, k: s(k, 16))(stack, keys[:2])
    loop = jnp.stack([s(k, 16) for s, k in zip((sampler, changed), keys[:2], strict=True)])
    np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_leaf_change_does_not_retrace(name):
    sampler, changed, _ = REGISTRY[name]
    traces = []

    @jax.jit
    def f(s, key):
        traces.append(1)
        return s(key, 32)

    a = f(sampler, jax.random.key(4))
    b = f(changed, jax.random.key(4))
    assert len(traces) == 1
    if jax.tree.leaves(sampler):  # a real change of hyperparameters changes the draws
        assert not np.allclose(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_law_kolmogorov_smirnov(name):
    sampler, changed, cdf = REGISTRY[name]
    for i, s in enumerate((sampler, changed)):
        t = np.asarray(s(jax.random.key(10 + i), 20_000), np.float64)
        assert stats.kstest(t, cdf(s)).pvalue > 1e-3
    # the law is the sampler's own: the changed sampler's draws fail the first one's CDF
    if jax.tree.leaves(sampler):
        t = np.asarray(changed(jax.random.key(12), 20_000), np.float64)
        assert stats.kstest(t, cdf(sampler)).pvalue < 1e-6


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_n(name, n):
    with pytest.raises(ValueError, match="positive Python int"):
        REGISTRY[name][0](jax.random.key(0), n)


def test_get_time_sampler():
    assert isinstance(T.get_time_sampler("logit-normal", loc=0.3), T.LogitNormalTime)
    with pytest.raises(ValueError, match="unknown time sampler"):
        T.get_time_sampler("cosine")
