"""Data: 2D toy distributions drawn with :mod:`jax.random`, and point sets from ``.npy`` files.

A toy sampler is pure and jit-able (``name`` and ``n`` static)::

    x = fm.data.sample_toy("moons", key, 256)        # (256, 2) float32
    sampler = fm.data.make_sampler("8gaussians")     # (key, n) -> (n, 2)
    log_p = fm.data.toy_log_prob("8gaussians")       # (B, 2) -> (B,), exact

``8gaussians`` and ``moons`` follow torchcfm's conventions, so results compare with its
published numbers; the definitions are in :mod:`flowjax_fm.data._toy`.

Manifold toys (points on :class:`~flowjax_fm.manifolds.Sphere` and
:class:`~flowjax_fm.manifolds.FlatTorus`): ``sphere_uniform``, ``sphere_vmf_mixture``,
``sample_vmf``, ``torus_uniform``, ``torus_wrapped_mixture``. Token toys (integer arrays for
:mod:`flowjax_fm.discrete`): ``grid_tokens``, ``markov_digits``.
"""

from flowjax_fm.data._images import load_array_dataset, load_digits
from flowjax_fm.data._manifold_toys import (
    RAMACHANDRAN_MODES,
    sample_vmf,
    sphere_uniform,
    sphere_vmf_mixture,
    torus_uniform,
    torus_wrapped_mixture,
    vmf_mixture_means,
)
from flowjax_fm.data._points import load_points
from flowjax_fm.data._token_toys import (
    GRID_BOXES,
    grid_token_probs,
    grid_tokens,
    markov_chain,
    markov_digits,
    markov_log_prob,
)
from flowjax_fm.data._toy import TOY_NAMES, make_sampler, sample_toy, toy_log_prob

__all__ = [
    "GRID_BOXES",
    "grid_token_probs",
    "grid_tokens",
    "markov_chain",
    "markov_digits",
    "markov_log_prob",
    "RAMACHANDRAN_MODES",
    "sample_vmf",
    "sphere_uniform",
    "sphere_vmf_mixture",
    "torus_uniform",
    "torus_wrapped_mixture",
    "vmf_mixture_means",
    "TOY_NAMES",
    "load_array_dataset",
    "load_digits",
    "load_points",
    "make_sampler",
    "sample_toy",
    "toy_log_prob",
]
