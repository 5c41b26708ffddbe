"""flowjax_fm: flow matching in JAX.

Sub-packages, one per concept: :mod:`paths` (probability paths x_t and targets u_t),
:mod:`couplings` (how x0 and x1 are paired), :mod:`time_sampling` (how training draws t),
:mod:`losses`, :mod:`models` (Flax NNX), :mod:`training`, :mod:`sampling` (integrating the
ODE to generate: not to be confused with ``time_sampling``), :mod:`likelihood`,
:mod:`metrics`, :mod:`reflow` (rectified flow, distillation) and :mod:`data`; the other
families: :mod:`discrete` (flows over tokens), :mod:`manifolds` (the sphere, the flat torus)
and :mod:`trajectories` (snapshot time courses through several marginals).

:mod:`experiments` (the jobs ``flowjax-fm`` runs: configs, run directories, plots) sits on top
of the library and is imported on first use (``fm.experiments``), never by the library itself.
"""

from flowjax_fm import (
    couplings,
    data,
    discrete,
    likelihood,
    losses,
    manifolds,
    metrics,
    models,
    paths,
    reflow,
    sampling,
    time_sampling,
    training,
    trajectories,
)

__version__ = "0.1.0"


def __getattr__(name):
    if name == "experiments":
        import importlib

        return importlib.import_module("flowjax_fm.experiments")
    raise AttributeError(f"module 'flowjax_fm' has no attribute {name!r}")


__all__ = [
    "couplings",
    "data",
    "discrete",
    "likelihood",
    "losses",
    "manifolds",
    "metrics",
    "models",
    "paths",
    "reflow",
    "sampling",
    "time_sampling",
    "trajectories",
    "training",
    "experiments",
    "__version__",
]
