"""Metrics between point sets: Wasserstein distance (exact or Sinkhorn) and MMD.

``wasserstein`` runs on the host (an exact assignment, or ott-jax's Sinkhorn) and returns a
NumPy scalar; ``mmd`` is a jit-able JAX function.
"""

from flowjax_fm.metrics._classifier import (
    DigitClassifier,
    classifier_accuracy,
    classifier_features,
    frechet_distance,
    load_classifier,
    save_classifier,
    train_digit_classifier,
    train_or_load_classifier,
)
from flowjax_fm.metrics._flow import (
    curvature,
    evaluate,
    flow_integrals,
    nfe_at_tolerance,
    path_energy,
    straightness,
)
from flowjax_fm.metrics._mmd import mmd
from flowjax_fm.metrics._wasserstein import wasserstein

__all__ = [
    "DigitClassifier",
    "classifier_accuracy",
    "classifier_features",
    "curvature",
    "evaluate",
    "flow_integrals",
    "frechet_distance",
    "load_classifier",
    "mmd",
    "nfe_at_tolerance",
    "path_energy",
    "save_classifier",
    "straightness",
    "train_digit_classifier",
    "train_or_load_classifier",
    "wasserstein",
]
