r"""Posterior models over integer tokens for discrete flow matching (Flax NNX).

Both models map tokens :math:`x_t` ``(B, L)`` and times ``(B,)`` to logits ``(B, L, V)`` of the
factorised posterior :math:`p_{1|t}(x_1^i \mid x_t)`, as :mod:`flowjax_fm.discrete` expects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flowjax_fm._checks import check_int, check_positive_int, is_concrete
from flowjax_fm.models._mlp import check_rngs, check_sizes, check_times, class_labels, time_features

__all__ = ["TokenMLP", "TokenTransformer"]

# the logit given to the mask token when a model never predicts it (finite: no NaN in gradients)
_NEVER = -1e9


def _check_vocab(vocab_size, length, num_classes, mask_token):
    vocab_size = check_int("vocab_size", vocab_size, 2)
    length = check_positive_int("length", length)
    num_classes = None if num_classes is None else check_positive_int("num_classes", num_classes)
    if mask_token is not None:
        mask_token = check_int("mask_token", mask_token, 0, vocab_size - 1)
    return vocab_size, length, num_classes, mask_token


def _embed_tokens(table: jax.Array, x: jax.Array) -> jax.Array:
    """Rows of ``table`` for tokens ``x``; a token outside ``[0, V)`` gives NaN (never a wrapped row)."""
    vocab = table.shape[0]
    safe = jnp.where((x < 0) | (x >= vocab), vocab, x)
    return jnp.take(table, safe, axis=0, mode="fill", fill_value=jnp.nan)


class _TokenModel(nnx.Module):
    """What both token models share: argument checks, the condition embedding, the mask logit."""

    vocab_size: int
    length: int
    num_classes: int | None
    mask_token: int | None

    def null_cond(self, batch: int):
        """``(batch,)`` null labels (``num_classes``) for a class-conditional model, else ``None``."""
        if self.num_classes is None:
            return None
        return jnp.full((batch,), self.num_classes, jnp.int32)

    def _check(self, x, t, cond):
        name = type(self).__name__
        shape, dtype = tuple(np.shape(x)), jnp.result_type(x)
        if len(shape) != 2 or shape[1] != self.length or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{name} takes integer tokens of shape (B, {self.length}), got shape {shape} and "
                f"dtype {dtype}"
            )
        if is_concrete(x) and shape[0]:
            v = np.asarray(x)
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(
                    f"x must lie in [0, {self.vocab_size}) (vocab_size), got tokens from {lo} to {hi}"
                )
        if jnp.shape(t) != (shape[0],):
            raise ValueError(f"t must have shape ({shape[0]},), got {jnp.shape(t)}")
        check_times(t)
        if self.num_classes is None:
            if cond is not None:
                raise ValueError(f"this {name} has no conditioning (num_classes=None) but got cond")
            return None
        if cond is None:
            return self.null_cond(shape[0])
        return class_labels(name, cond, shape[0], self.num_classes)

    def _mask_logit(self, logits):
        if self.mask_token is None:
            return logits
        is_mask = jnp.arange(self.vocab_size) == self.mask_token
        return jnp.where(is_mask, logits * 0 + _NEVER, logits)  # keeps a NaN row NaN


class TokenTransformer(_TokenModel):
    r"""A small pre-norm transformer over token sequences: logits of :math:`p_{1|t}(x_1^i \mid x_t)`.

    .. math::
       h^0_i = E[x_t^i] + P_i, \quad e = \mathrm{MLP}(\phi(t)) + C[c], \quad
       h^{k+1} = h^k + \mathrm{Attn}(\mathrm{LN}_e(h^k)), \;
       h^{k+1} \mathrel{+}= \mathrm{MLP}(\mathrm{LN}_e(h^{k+1})), \quad
       \text{logits}_i = W\, \mathrm{LN}(h^{\text{depth}}_i)

    with token and learned position embeddings :math:`E, P`, the time features
    :math:`\phi` of :func:`~flowjax_fm.models.time_features`, and layer norms modulated by the
    time (and class) embedding :math:`e` (adaptive layer norm: :math:`\mathrm{LN}_e(h) =
    \mathrm{LN}(h)(1 + s(e)) + b(e)`). Attention is bidirectional (every position sees the
    whole sequence), as the posterior of one token depends on all of :math:`x_t`.

    Class conditioning (``num_classes=K``): ``cond`` is integer labels ``(B,)`` in
    ``[0, K]``, label ``K`` (and ``cond=None``) the null class of classifier-free guidance
    (:func:`fm.discrete.sample(..., guidance_scale=w) <flowjax_fm.discrete.sample>` finds it
    through :meth:`null_cond`). Mask source: the vocabulary includes the mask id; with
    ``mask_token=m`` the model never predicts it (its logit is fixed at -1e9), as data never
    holds the mask.

    Out-of-range tokens: concrete ones raise; traced ones (under ``jit``) give NaN logits,
    never a silently wrapped embedding row.

    Args:
      vocab_size: ``V`` (the mask token included), an int >= 2.
      length: ``L``, the sequence length, an int >= 1.
      dim: model width, an int >= 1 divisible by ``heads``.
      depth: number of attention blocks, an int >= 1.
      heads: attention heads, an int >= 1.
      num_classes: optional number of labels ``K`` (an int >= 1) for class conditioning.
      mask_token: optional mask id in ``[0, V)`` that is never predicted.
      mlp_ratio: hidden width of the blocks' MLP over ``dim``, an int >= 1.
      time_frequencies: Fourier frequencies of the time features, an int >= 0.
      rngs: ``nnx.Rngs`` for initialisation.

    Raises:
      ValueError: at construction, a size out of range or ``dim`` not divisible by ``heads``;
        at call time, tokens not integers ``(B, L)`` (or concrete ones outside ``[0, V)``),
        ``t`` not float ``(B,)``, or a ``cond`` that does not fit (quoting the shapes).
      TypeError: ``rngs`` not an ``nnx.Rngs``.
      RuntimeError: at run time under ``jit``, labels outside ``[0, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.TokenTransformer(9, 4, dim=32, depth=1, heads=2, num_classes=3,
      ...                                     mask_token=8, rngs=nnx.Rngs(0))
      >>> logits = model(jnp.full((5, 4), 8), jnp.zeros(5), cond=jnp.array([0, 1, 2, 3, 0]))
      >>> logits.shape, bool((logits[..., 8] < -1e8).all())
      ((5, 4, 9), True)

    References:
      Vaswani et al. 2017, Attention Is All You Need; Peebles and Xie 2023, Scalable Diffusion
      Models with Transformers (adaptive layer norm); Gat et al. 2024, Discrete Flow Matching.
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        num_classes: int | None = None,
        mask_token: int | None = None,
        mlp_ratio: int = 4,
        time_frequencies: int = 16,
        rngs: nnx.Rngs,
    ):
        vocab_size, length, num_classes, mask_token = _check_vocab(
            vocab_size, length, num_classes, mask_token
        )
        dim = check_positive_int("dim", dim)
        depth = check_positive_int("depth", depth)
        heads = check_positive_int("heads", heads)
        mlp_ratio = check_positive_int("mlp_ratio", mlp_ratio)
        time_frequencies = check_int("time_frequencies", time_frequencies, 0)
        if dim % heads:
            raise ValueError(f"heads must divide dim, got dim={dim} and heads={heads}")
        check_rngs(rngs)
        self.vocab_size, self.length, self.dim, self.heads = vocab_size, length, dim, heads
        self.num_classes, self.mask_token, self.time_frequencies = num_classes, mask_token, time_frequencies
        self.token_embed = nnx.Embed(vocab_size, dim, rngs=rngs)
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, dim)))
        self.time1 = nnx.Linear(1 + 2 * time_frequencies, dim, rngs=rngs)
        self.time2 = nnx.Linear(dim, dim, rngs=rngs)
        self.class_embed = nnx.Embed(num_classes + 1, dim, rngs=rngs) if num_classes is not None else None
        self.blocks = nnx.List([_Block(dim, heads, mlp_ratio, rngs=rngs) for _ in range(depth)])
        self.norm_out = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, vocab_size, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        labels = self._check(x, t, cond)
        h = _embed_tokens(self.token_embed.embedding[...], x) + self.pos_embed[...]
        emb = self.time2(jax.nn.silu(self.time1(time_features(t.astype(h.dtype), self.time_frequencies))))
        if labels is not None:
            emb = emb + self.class_embed(labels)
        emb = jax.nn.silu(emb)
        for block in self.blocks:
            h = block(h, emb)
        return self._mask_logit(self.head(self.norm_out(h)))


class _Block(nnx.Module):
    """Pre-norm (time-modulated) self-attention and MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, *, rngs):
        self.heads = heads
        self.norm1 = nnx.LayerNorm(dim, use_scale=False, use_bias=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, use_scale=False, use_bias=False, rngs=rngs)
        self.modulation = nnx.Linear(dim, 4 * dim, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.mlp1 = nnx.Linear(dim, mlp_ratio * dim, rngs=rngs)
        self.mlp2 = nnx.Linear(mlp_ratio * dim, dim, rngs=rngs)

    def __call__(self, h, emb):
        b, n, c = h.shape
        d = c // self.heads
        s1, b1, s2, b2 = jnp.split(self.modulation(emb)[:, None, :], 4, axis=-1)
        qkv = self.qkv(self.norm1(h) * (1.0 + s1) + b1).reshape(b, n, 3, self.heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d), axis=-1)
        h = h + self.proj(jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, n, c))
        return h + self.mlp2(jax.nn.gelu(self.mlp1(self.norm2(h) * (1.0 + s2) + b2)))


class TokenMLP(_TokenModel):
    r"""An MLP posterior model for short sequences (a 2D point quantised to ``L = 2`` tokens).

    .. math::
       h_0 = [\,E[x_t^1], \dots, E[x_t^L],\ \phi(t),\ C[c]\,], \qquad
       \text{logits} = \mathrm{reshape}_{(L, V)}\big(W_{out}\, \sigma(\cdots \sigma(W_1 h_0))\big)

    The whole sequence enters one vector, so every output position sees every input token
    (what the posterior needs); cheaper than :class:`TokenTransformer` when ``L`` is small.
    Conditioning, the null class, ``mask_token`` and out-of-range tokens behave as in
    :class:`TokenTransformer`.

    Args:
      vocab_size: ``V`` (the mask token included), an int >= 2.
      length: ``L``, an int >= 1.
      hidden: hidden widths, a non-empty sequence of ints >= 1.
      embed_dim: size of the token embedding, an int >= 1.
      num_classes: optional number of labels ``K`` (an int >= 1) for class conditioning.
      mask_token: optional mask id in ``[0, V)`` that is never predicted.
      time_frequencies: Fourier frequencies of the time features, an int >= 0.
      rngs: ``nnx.Rngs`` for initialisation.

    Raises:
      ValueError: a size out of range at construction; at call time, as
        :class:`TokenTransformer`.
      TypeError: ``rngs`` not an ``nnx.Rngs``.
      RuntimeError: at run time under ``jit``, labels outside ``[0, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.TokenMLP(64, 2, hidden=(32, 32), rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((3, 2), jnp.int32), jnp.full(3, 0.5)).shape
      (3, 2, 64)
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        hidden: Sequence[int] = (256, 256, 256),
        embed_dim: int = 32,
        num_classes: int | None = None,
        mask_token: int | None = None,
        time_frequencies: int = 16,
        rngs: nnx.Rngs,
    ):
        vocab_size, length, num_classes, mask_token = _check_vocab(
            vocab_size, length, num_classes, mask_token
        )
        hidden = check_sizes("hidden", hidden)
        embed_dim = check_positive_int("embed_dim", embed_dim)
        time_frequencies = check_int("time_frequencies", time_frequencies, 0)
        check_rngs(rngs)
        self.vocab_size, self.length = vocab_size, length
        self.num_classes, self.mask_token, self.time_frequencies = num_classes, mask_token, time_frequencies
        self.token_embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        width = length * embed_dim + 1 + 2 * time_frequencies
        self.class_embed = (
            nnx.Embed(num_classes + 1, embed_dim, rngs=rngs) if num_classes is not None else None
        )
        width += 0 if num_classes is None else embed_dim
        widths = [width, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.out = nnx.Linear(widths[-1], length * vocab_size, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        labels = self._check(x, t, cond)
        e = _embed_tokens(self.token_embed.embedding[...], x)
        feats = [e.reshape(x.shape[0], -1), time_features(t.astype(e.dtype), self.time_frequencies)]
        if labels is not None:
            feats.append(self.class_embed(labels))
        h = jnp.concatenate(feats, axis=-1)
        for layer in self.layers:
            h = jax.nn.silu(layer(h))
        return self._mask_logit(self.out(h).reshape(x.shape[0], self.length, self.vocab_size))
