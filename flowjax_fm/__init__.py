"""flowjax_fm: flow matching in JAX.

Sub-packages, one per concept: :mod:`paths` (probability paths x_t and targets u_t),
:mod:`couplings` (how x0 and x1 are paired), :mod:`time_sampling` (how training draws t),
:mod:`losses`, :mod:`models` (Flax NNX), :mod:`training`, :mod:`sampling` (integrating the
ODE to generate: not to be confused with ``time_sampling``), :mod:`likelihood`,
:mod:`metrics`, :mod:`reflow` (rectified flow, distillation) and :mod:`data`.
"""

from flowjax_fm import (
    couplings,
    data,
    likelihood,
    losses,
    metrics,
    models,
    paths,
    reflow,
    sampling,
    time_sampling,
    training,
)

__version__ = "0.1.0"

__all__ = [
    "couplings",
    "data",
    "likelihood",
    "losses",
    "metrics",
    "models",
    "paths",
    "reflow",
    "sampling",
    "time_sampling",
    "training",
    "__version__",
]
