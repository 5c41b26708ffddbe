"""The manifold toy distributions: points on the manifold, the vMF mean resultant length against
its closed form, the mixtures' weights, and input errors (fixed keys, honest Monte Carlo bounds)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from flowjax_fm.data import _manifold_toys as mt
from flowjax_fm.manifolds import FlatTorus, Sphere

N = 20_000
Z = 4.0  # Monte Carlo bound in standard errors (a fixed key: the test is deterministic)


def _on(manifold, x, atol=1e-5):
    return bool(jnp.all(jax.vmap(lambda p: manifold.belongs(p, atol))(x)))


@pytest.mark.parametrize("name", ["sphere_uniform", "sphere_vmf_mixture"])
def test_sphere_samplers_lie_on_the_sphere(name):
    x = getattr(mt, name)(jax.random.key(0), 4096)
    assert x.shape == (4096, 3) and x.dtype == jnp.float32
    assert _on(Sphere(), x)
    assert float(jnp.max(jnp.abs(jnp.linalg.norm(x, axis=1) - 1.0))) < 1e-5


@pytest.mark.parametrize("name", ["torus_uniform", "torus_wrapped_mixture"])
def test_torus_samplers_lie_on_the_torus(name):
    x = getattr(mt, name)(jax.random.key(0), 4096)
    assert x.shape == (4096, 2) and x.dtype == jnp.float32
    assert bool(jnp.all((x >= 0.0) & (x < 2 * math.pi)))
    assert _on(FlatTorus(), x, atol=0.0)


def test_samplers_are_deterministic_and_jit():
    key = jax.random.key(3)
    for f in (mt.sphere_vmf_mixture, mt.torus_wrapped_mixture):
        eager = f(key, 4096)  # the shape of the tests above: compiled once
        np.testing.assert_array_equal(eager, f(key, 4096))
        np.testing.assert_allclose(jax.jit(lambda k, f=f: f(k, 4096))(key), eager, rtol=1e-6, atol=1e-6)
        assert not np.allclose(f(jax.random.key(4), 4096), eager)


@pytest.mark.parametrize("kappa", [0.5, 5.0, 50.0, 500.0])
def test_vmf_mean_resultant_length_on_s2(kappa):
    """E[mu . x] = A_3(kappa) = coth(kappa) - 1/kappa, within Z standard errors."""
    mean = jnp.array([0.3, -0.5, 0.8])
    mu = mean / jnp.linalg.norm(mean)
    x = mt.sample_vmf(jax.random.key(1), N, mean, kappa)
    assert _on(Sphere(), x)
    w = np.asarray(x @ mu, np.float64)
    expected = 1.0 / math.tanh(kappa) - 1.0 / kappa
    se = w.std(ddof=1) / math.sqrt(N)
    assert abs(w.mean() - expected) < Z * se, (w.mean(), expected, se)


def test_vmf_mean_resultant_length_in_another_dimension():
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) on S^4 (Wood's Beta(2, 2) envelope)."""
    d, kappa = 5, 4.0
    mean = jnp.zeros(d).at[-1].set(1.0)
    x = mt.sample_vmf(jax.random.key(2), N, mean, kappa)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    w = np.asarray(x[:, -1], np.float64)
    expected = scipy.special.ive(d / 2, kappa) / scipy.special.ive(d / 2 - 1, kappa)
    assert abs(w.mean() - expected) < Z * w.std(ddof=1) / math.sqrt(N)


def test_vmf_is_symmetric_about_its_mean():
    """The component orthogonal to the mean averages to zero (the reflection keeps the law)."""
    mean = jnp.array([0.0, 1.0, 0.0])
    x = np.asarray(mt.sample_vmf(jax.random.key(5), N, mean, 3.0), np.float64)
    for j in (0, 2):
        assert abs(x[:, j].mean()) < Z * x[:, j].std(ddof=1) / math.sqrt(N)


def test_vmf_mixture_components():
    """Each point's nearest mean takes 1/K of the points, and the points of component k have
    the mean resultant length A_3(kappa_k). The means are ~100 degrees apart, so at these
    kappas (spreads 10 to 6 degrees) a point lies beyond the half-way angle with probability
    below 1e-4; at the default kappa = 8 it is ~6%, which would bias both checks."""
    kappas = (30.0, 45.0, 60.0, 90.0)
    means = mt.vmf_mixture_means(4, seed=0)
    x = np.asarray(mt.sphere_vmf_mixture(jax.random.key(6), N, kappa=kappas), np.float64)
    cos = x @ means.T.astype(np.float64)
    comp = cos.argmax(axis=1)
    share = np.bincount(comp, minlength=4) / N
    np.testing.assert_allclose(share, 0.25, atol=Z * math.sqrt(0.25 * 0.75 / N))
    for k, kappa in enumerate(kappas):
        w = cos[comp == k, k]
        expected = 1.0 / math.tanh(kappa) - 1.0 / kappa
        assert abs(w.mean() - expected) < Z * w.std(ddof=1) / math.sqrt(len(w)), (k, w.mean(), expected)


def test_vmf_mixture_means_are_fixed_by_the_seed():
    a, b = mt.vmf_mixture_means(4, seed=0), mt.vmf_mixture_means(4, seed=1)
    np.testing.assert_array_equal(a, mt.vmf_mixture_means(4, seed=0))
    assert not np.allclose(a, b)
    gram = a.astype(np.float64) @ a.T
    assert gram[~np.eye(4, dtype=bool)].max() < math.cos(math.radians(60))  # well apart


def test_torus_mixture_weights_and_centres():
    """With the spreads shrunk, every point sits at a mode centre, in the modes' proportions."""
    modes = np.asarray(mt.RAMACHANDRAN_MODES)
    centres = np.mod(np.deg2rad(modes[:, :2]), 2 * math.pi)
    weights = modes[:, 5] / modes[:, 5].sum()
    x = np.asarray(mt.torus_wrapped_mixture(jax.random.key(7), N, scale=1e-3), np.float64)
    gap = np.asarray(FlatTorus().squared_distances(jnp.asarray(x), jnp.asarray(centres, jnp.float32)))
    comp = gap.argmin(axis=1)
    assert np.sqrt(gap.min(axis=1)).max() < 0.01
    share = np.bincount(comp, minlength=len(modes)) / N
    np.testing.assert_allclose(share, weights, atol=Z * math.sqrt(0.25 / N))


def test_torus_mixture_wraps_across_the_seam():
    """The bridge mode (psi = 0) puts points on both sides of the [0, 2 pi) seam."""
    x = np.asarray(mt.torus_wrapped_mixture(jax.random.key(8), N))
    psi = x[:, 1]
    assert (psi < 0.2).mean() > 0.01 and (psi > 2 * math.pi - 0.2).mean() > 0.01


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mt.sphere_uniform(jax.random.key(0), 0), "n must be"),
        (lambda: mt.sphere_vmf_mixture(jax.random.key(0), 4, num_components=3), "kappa must be"),
        (lambda: mt.sphere_vmf_mixture(jax.random.key(0), 4, kappa=-1.0), "kappa must be"),
        (lambda: mt.sphere_vmf_mixture(jax.random.key(0), 4, num_components=0, kappa=1.0),
         "num_components must be"),
        (lambda: mt.sample_vmf(jax.random.key(0), 4, jnp.ones(1), 1.0), r"shape \(d,\)"),
        (lambda: mt.sample_vmf(jax.random.key(0), 4, jnp.ones((3, 3)), 1.0), r"shape \(d,\)"),
        (lambda: mt.sample_vmf(jax.random.key(0), 4, jnp.ones(3), jnp.ones(3)), "kappa must be"),
        (lambda: mt.sample_vmf(jax.random.key(0), 4, jnp.ones(3), 0.0), "kappa must be"),
        (lambda: mt.torus_wrapped_mixture(jax.random.key(0), 4, scale=0.0), "scale must be"),
        (lambda: mt.torus_uniform(jax.random.key(0), 2.5), "n must be"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
