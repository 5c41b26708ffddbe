"""Flax NNX models: the only place in the package that defines ``nnx.Module`` s."""

from flowjax_fm.models._classifier import DigitClassifier
from flowjax_fm.models._mlp import ACTIVATIONS, MLP, time_features
from flowjax_fm.models._tokens import TokenMLP, TokenTransformer
from flowjax_fm.models._unet import UNet, sinusoidal_embedding

__all__ = [
    "ACTIVATIONS",
    "DigitClassifier", "MLP", "TokenMLP", "TokenTransformer", "UNet", "sinusoidal_embedding", "time_features"]
