r"""A time-conditioned multilayer perceptron (Flax NNX)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MLP", "time_features", "ACTIVATIONS"]

ACTIVATIONS = {
    "selu": jax.nn.selu,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def time_features(t: jax.Array, num_frequencies: int) -> jax.Array:
    r"""Embed times ``(B,)`` as ``(B, 1 + 2K)``: :math:`[t, \sin(\omega_k t), \cos(\omega_k t)]`.

    The frequencies :math:`\omega_k` are spread geometrically over :math:`[1, 100]`, none a
    multiple of :math:`2\pi`, and ``t`` itself is the first feature, so the embeddings of
    ``t = 0`` and ``t = 1`` always differ (a purely periodic embedding with frequencies
    :math:`2\pi k` would map both ends to the same vector).

    Examples:
      >>> import jax.numpy as jnp
      >>> e = time_features(jnp.array([0.0, 1.0]), 4)
      >>> e.shape, bool(jnp.abs(e[0] - e[1]).max() > 0.5)
      ((2, 9), True)
    """
    t = t[:, None]
    if num_frequencies == 0:
        return t
    freqs = jnp.geomspace(1.0, 100.0, num_frequencies, dtype=t.dtype)
    return jnp.concatenate([t, jnp.sin(freqs * t), jnp.cos(freqs * t)], axis=-1)


class MLP(nnx.Module):
    r"""Time-conditioned MLP vector field :math:`v_\theta(x, t)` on flattened events.

    ``model(x, t)`` with ``x: (B, *event)``, ``t: (B,)`` returns ``(B, *event)``: the input
    is the flattened event concatenated with :func:`time_features` of ``t`` (and a learned
    label embedding when ``num_classes`` is set; label ``num_classes`` is the null class
    used by classifier-free guidance).

    Args:
      dim: event size (product of the event shape).
      hidden: hidden widths; torchcfm's 2D reference network is ``(64, 64, 64)`` with SELU.
      activation: a name in :data:`ACTIVATIONS` or a callable.
      time_frequencies: number of Fourier frequencies of the time embedding (0: ``t`` only,
        as torchcfm does).
      num_classes: optional number of labels for class conditioning (``cond=labels``).
      rngs: ``nnx.Rngs`` for initialisation.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = MLP(2, (16, 16), rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((5, 2)), jnp.zeros(5)).shape
      (5, 2)
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64, 64),
        *,
        activation="selu",
        time_frequencies: int = 0,
        num_classes: int | None = None,
        class_embed_dim: int = 16,
        rngs: nnx.Rngs,
    ):
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
                )
            activation = ACTIVATIONS[activation]
        if dim < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"dim and hidden widths must be positive, got {dim} and {hidden}")
        self.dim = dim
        self.activation = activation
        self.time_frequencies = time_frequencies
        self.num_classes = num_classes
        extra = 1 + 2 * time_frequencies
        if num_classes is not None:
            self.class_embed = nnx.Embed(num_classes + 1, class_embed_dim, rngs=rngs)
            extra += class_embed_dim
        widths = [dim + extra, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.out = nnx.Linear(widths[-1], dim, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        batch, event = x.shape[0], x.shape[1:]
        flat = x.reshape(batch, -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"MLP built for event size {self.dim}, got x of shape {x.shape}")
        if jnp.shape(t) != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {jnp.shape(t)}")
        feats = [flat, time_features(t.astype(flat.dtype), self.time_frequencies)]
        if self.num_classes is not None:
            labels = (
                jnp.full((batch,), self.num_classes, jnp.int32) if cond is None else cond
            )
            feats.append(self.class_embed(labels).astype(flat.dtype))
        elif cond is not None:
            raise ValueError("this MLP has no class conditioning (num_classes=None) but got cond")
        h = jnp.concatenate(feats, axis=-1)
        for layer in self.layers:
            h = self.activation(layer(h))
        return self.out(h).reshape(batch, *event)
