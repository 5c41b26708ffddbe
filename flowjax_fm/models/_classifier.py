"""A small image classifier (Flax NNX): the feature extractor of the image metrics."""

from __future__ import annotations

import jax
from flax import nnx

from flowjax_fm._checks import check_positive_int
from flowjax_fm.models._mlp import check_rngs, check_sizes

__all__ = ["DigitClassifier"]


class DigitClassifier(nnx.Module):
    """A small CNN for ``(B, H, W, C)`` images: two 3x3 conv layers, a hidden layer, logits.

    ``model.features(x)`` is the penultimate layer ``(B, feature_dim)`` (used by
    :func:`frechet_distance`); ``model(x)`` returns logits ``(B, num_classes)``.

    Args:
      image_shape: ``(H, W, C)``, three ints >= 1.
      num_classes: number of classes, an int >= 1.
      width: channels of the first convolution, an int >= 1.
      feature_dim: size of the feature layer, an int >= 1.
      rngs: ``nnx.Rngs`` for initialisation.

    Raises:
      ValueError: a size out of its range; at call time, images not of ``image_shape``.
      TypeError: ``rngs`` not an ``nnx.Rngs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx

from flowjax_fm._checks import check_positive_int
from flowjax_fm.models._mlp import check_rngs, check_sizes
      >>> clf = DigitClassifier((8, 8, 1), 10, rngs=nnx.Rngs(0))
      >>> clf(jnp.zeros((2, 8, 8, 1))).shape, clf.features(jnp.zeros((2, 8, 8, 1))).shape
      ((2, 10), (2, 64))
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 32,
        feature_dim: int = 64,
        rngs: nnx.Rngs,
    ):
        shape = check_sizes("image_shape", image_shape)
        if len(shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), three ints >= 1, got {image_shape!r}")
        num_classes = check_positive_int("num_classes", num_classes)
        width = check_positive_int("width", width)
        feature_dim = check_positive_int("feature_dim", feature_dim)
        check_rngs(rngs)
        h, w, c = shape
        self.image_shape = shape
        self.conv1 = nnx.Conv(c, width, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(width, 2 * width, (3, 3), strides=(2, 2), rngs=rngs)
        flat = ((h + 1) // 2) * ((w + 1) // 2) * 2 * width
        self.hidden = nnx.Linear(flat, feature_dim, rngs=rngs)
        self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"classifier built for images {self.image_shape}, got x of shape {x.shape}"
            )
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        return jax.nn.relu(self.hidden(h.reshape(h.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))
