"""Time samplers: one contract suite that every sampler in ``fm.time_sampling`` passes.

Values in [0, 1], shape and dtype, jit equals eager, vmap equals a loop, a leaf change does
not retrace, and the law of the draws (Kolmogorov-Smirnov against scipy.stats, fixed keys).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logit

import flowjax_fm as fm

T = fm.time_sampling

def _mode_cdf(scale):
    """ModeTime's CDF: the inverse of t = u + s (u - sin^2(pi u / 2)), by bisection."""

    def cdf(t):
        lo, hi = np.zeros_like(t), np.ones_like(t)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = mid + scale * (mid - np.sin(0.5 * np.pi * mid) ** 2) < t
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    return cdf



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
    "mode": (T.ModeTime(scale=1.29), T.ModeTime(scale=-0.5), lambda s: _mode_cdf(s.scale)),
    "shifted-uniform": (
        T.ShiftedTime(T.UniformTime(), 3.0),
        T.ShiftedTime(T.UniformTime(), 0.5),
        lambda s: (lambda t: s.shift * t / (s.shift * t + 1 - t)),
    ),
    "shifted-logit-normal": (
        T.ShiftedTime(T.LogitNormalTime(0.0, 1.0), 3.0),
        T.ShiftedTime(T.LogitNormalTime(0.5, 0.7), 0.5),
        lambda s: (lambda t: stats.norm(s.base.loc - np.log(s.shift), s.base.scale).cdf(logit(t))),
    ),
}
NAMES = sorted(REGISTRY)
M = 4096  # one draw size for the suite (Beta's rejection sampler is costly to compile)


_TRACES = []


def _draw_fn(sampler, key, n=M, dtype=jnp.float32):
    _TRACES.append(1)
    return sampler(key, n, dtype)


# Shared jitted forms: each compiles once per sampler type (treedef), size and dtype, so two
# cases of one class share their compiles.
_draw = functools.partial(jax.jit, static_argnums=(2, 3))(_draw_fn)
_draw_keys = jax.jit(jax.vmap(_draw_fn, in_axes=(None, 0)))  # one sampler, a stack of keys
_draw_both = jax.jit(jax.vmap(_draw_fn))  # a stack of samplers and of keys


def test_registry_covers_every_sampler():
    classes = {type(s) for s, _, _ in REGISTRY.values()}
    public = {getattr(T, n) for n in T.__all__ if isinstance(getattr(T, n), type)}
    assert public - {T.AbstractTime} == classes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_values_shape_and_dtype(name, dtype):
    sampler, changed, _ = REGISTRY[name]
    for s in (sampler, changed):
        t = _draw(s, jax.random.key(0), M, dtype)
        assert t.shape == (M,) and t.dtype == dtype
        t = np.asarray(t, np.float32)
        assert np.isfinite(t).all() and t.min() >= 0.0 and t.max() <= 1.0
    assert sampler(jax.random.key(1), 7).dtype == jnp.float32  # the default


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    sampler, _, _ = REGISTRY[name]
    key = jax.random.key(2)
    eager = sampler(key, M)
    jitted = _draw(sampler, key)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(name):
    sampler, changed, _ = REGISTRY[name]
    keys = jax.random.split(jax.random.key(3), 4)
    batched = _draw_keys(sampler, keys)
    loop = jnp.stack([_draw(sampler, k) for k in keys])
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-7)
    # a stack of samplers (hyperparameters along the mapped axis) against a loop over them
    stack = jax.tree.map(lambda a, b: jnp.stack([jnp.asarray(a), jnp.asarray(b)]), sampler, changed)
    batched = _draw_both(stack, keys[:2])
    loop = jnp.stack([_draw(s, k) for s, k in zip((sampler, changed), keys[:2], strict=True)])
    np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_leaf_change_does_not_retrace(name):
    sampler, changed, _ = REGISTRY[name]
    a = _draw(sampler, jax.random.key(4))
    before = len(_TRACES)
    b = _draw(changed, jax.random.key(4))
    assert len(_TRACES) == before
    if jax.tree.leaves(sampler):  # a real change of hyperparameters changes the draws
        assert not np.allclose(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_law_kolmogorov_smirnov(name):
    sampler, changed, cdf = REGISTRY[name]
    for i, s in enumerate((sampler, changed)):
        t = np.asarray(_draw(s, jax.random.key(10 + i)), np.float64)
        assert stats.kstest(t, cdf(s)).pvalue > 1e-3
    # the law is the sampler's own: the changed sampler's draws fail the first one's CDF
    if jax.tree.leaves(sampler):
        t = np.asarray(_draw(changed, jax.random.key(12)), np.float64)
        assert stats.kstest(t, cdf(sampler)).pvalue < 1e-6


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_n(name, n):
    with pytest.raises(ValueError, match=r"n must be an int >= 1"):
        REGISTRY[name][0](jax.random.key(0), n)


def test_get_time_sampler():
    assert isinstance(T.get_time_sampler("logit-normal", loc=0.3), T.LogitNormalTime)
    with pytest.raises(ValueError, match="unknown time sampler"):
        T.get_time_sampler("cosine")
