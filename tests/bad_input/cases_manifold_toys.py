"""Bad inputs of the manifold toys (fm.data.sphere_vmf_mixture, sample_vmf, ...)."""

# ruff: noqa: E501  (a table: one case per line)
from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

D = fm.data
K = jax.random.key(0)

CASES = [
    Case("data.sphere_uniform", "n=0", lambda: D.sphere_uniform(K, 0), ValueError, r"n must be an int >= 1"),
    Case("data.torus_uniform", "n=2.5", lambda: D.torus_uniform(K, 2.5), ValueError, r"n must be an int >= 1"),
    Case("data.sample_vmf", "1-D mean of size 1", lambda: D.sample_vmf(K, 4, jnp.ones(1), 1.0), ValueError, r"mean must have shape \(d,\) or \(n, d\) = \(4, d\) with d >= 2, got shape \(1,\)"),
    Case("data.sample_vmf", "mean rows != n", lambda: D.sample_vmf(K, 4, jnp.ones((3, 3)), 1.0), ValueError, r"got shape \(3, 3\)"),
    Case("data.sample_vmf", "kappa=0", lambda: D.sample_vmf(K, 4, jnp.ones(3), 0.0), ValueError, r"kappa must be a finite number in \(0"),
    Case("data.sample_vmf", "kappa shape", lambda: D.sample_vmf(K, 4, jnp.ones(3), jnp.ones(3)), ValueError, r"kappa must be a number or have shape \(4,\), got shape \(3,\)"),
    Case("data.vmf_mixture_means", "num_components=0", lambda: D.vmf_mixture_means(0), ValueError, r"num_components must be an int >= 1"),
    Case("data.vmf_mixture_means", "seed=-1", lambda: D.vmf_mixture_means(4, seed=-1), ValueError, r"seed must be an int >= 0"),
    Case("data.sphere_vmf_mixture", "kappa length", lambda: D.sphere_vmf_mixture(K, 4, num_components=2, kappa=[1.0, 2.0, 3.0]), ValueError, r"kappa must be a number or a sequence of num_components = 2 numbers, got shape \(3,\)"),
    Case("data.sphere_vmf_mixture", "kappa<0", lambda: D.sphere_vmf_mixture(K, 4, kappa=-1.0), ValueError, r"kappa must be a finite number in \(0"),
    Case("data.torus_wrapped_mixture", "scale=0", lambda: D.torus_wrapped_mixture(K, 4, scale=0.0), ValueError, r"scale must be a finite number in \(0"),
    Case("data.torus_wrapped_mixture", "n=0", lambda: D.torus_wrapped_mixture(K, 0), ValueError, r"n must be an int >= 1"),
]

EXEMPT = {"data.RAMACHANDRAN_MODES": "a constant (the modes of the torus mixture)"}
