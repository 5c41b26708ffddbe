"""Metrics between point sets: Wasserstein distance (exact or Sinkhorn) and MMD.

``wasserstein`` runs on the host (an exact assignment, or ott-jax's Sinkhorn) and returns a
NumPy scalar; ``mmd`` is a jit-able JAX function.
"""

from flowjax_fm.metrics._mmd import mmd
from flowjax_fm.metrics._wasserstein import wasserstein

__all__ = ["mmd", "wasserstein"]
