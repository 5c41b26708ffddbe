"""Flax NNX models: the only place in the package that defines ``nnx.Module`` s."""

from flowjax_fm.models._mlp import ACTIVATIONS, MLP, time_features

__all__ = ["ACTIVATIONS", "MLP", "time_features"]
