r"""A small time- and class-conditioned UNet for images (Flax NNX, channels-last)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from flowjax_fm._checks import check_bool, check_int, check_positive_int, check_real
from flowjax_fm.models._mlp import (
    check_conditioning,
    check_rngs,
    check_sizes,
    check_times,
    class_labels,
    cond_features,
    end_time,
)

__all__ = ["UNet", "sinusoidal_embedding"]


def sinusoidal_embedding(t: jax.Array, dim: int, *, scale: float = 1000.0) -> jax.Array:
    r"""Sinusoidal embedding of times ``(B,)`` as ``(B, dim)`` (``dim`` even).

    .. math::
       e(t) = [\sin(s t \omega_k), \cos(s t \omega_k)]_{k < d/2}, \qquad
       \omega_k = 10^{-4 k / (d/2)}

    With ``s = 1000`` (times in :math:`[0, 1]` scaled as DDPM's integer steps) no
    :math:`s \omega_k` is a multiple of :math:`2\pi`, so ``t = 0`` and ``t = 1`` map to clearly
    different vectors (a period-1 embedding would not tell the two ends apart).

    Args:
      t: float times of shape ``(B,)``.
      dim: the embedding size, an even int >= 2.
      scale: :math:`s`, a finite number in ``(0, inf)``.

    Raises:
      ValueError: ``t`` not a float array ``(B,)``, ``dim`` not an even int >= 2, or
        ``scale`` out of its range.

    Examples:
      >>> import jax.numpy as jnp
      >>> e = sinusoidal_embedding(jnp.array([0.0, 1.0]), 8)
      >>> e.shape, bool(jnp.abs(e[0] - e[1]).max() > 0.5)
      ((2, 8), True)
    """
    dim = check_int("dim", dim, 2)
    if dim % 2:
        raise ValueError(f"dim (the time embedding size) must be even, got {dim}")
    check_real("scale", scale, 0.0, low_open=True)
    check_times(t)
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=t.dtype) / half)
    arg = scale * t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


def _groups(channels: int, num_groups: int) -> int:
    return math.gcd(channels, num_groups)


class _ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv, add the projected embedding, GroupNorm-SiLU-conv, skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, num_groups: int, *, rngs):
        self.norm1 = nnx.GroupNorm(c_in, num_groups=_groups(c_in, num_groups), rngs=rngs)
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), rngs=rngs)
        self.emb = nnx.Linear(emb_dim, c_out, rngs=rngs)
        self.norm2 = nnx.GroupNorm(c_out, num_groups=_groups(c_out, num_groups), rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), rngs=rngs)
        self.skip = nnx.Conv(c_in, c_out, (1, 1), rngs=rngs) if c_in != c_out else None

    def __call__(self, x, emb):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.emb(jax.nn.silu(emb))[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class _Attention(nnx.Module):
    """Multi-head self-attention over the pixels of one resolution, with a residual."""

    def __init__(self, channels: int, num_heads: int, num_groups: int, *, rngs):
        if channels % num_heads:
            raise ValueError(
                f"attention width {channels} is not divisible by num_heads={num_heads}"
            )
        self.num_heads = num_heads
        self.norm = nnx.GroupNorm(channels, num_groups=_groups(channels, num_groups), rngs=rngs)
        self.qkv = nnx.Linear(channels, 3 * channels, rngs=rngs)
        self.out = nnx.Linear(channels, channels, rngs=rngs)

    def __call__(self, x):
        b, h, w, c = x.shape
        d = c // self.num_heads
        qkv = self.qkv(self.norm(x)).reshape(b, h * w, 3, self.num_heads, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
        y = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return x + self.out(y.reshape(b, h, w, c))


class _Level(nnx.Module):
    """The residual (and attention) blocks of one resolution."""

    def __init__(self, widths, emb_dim, num_groups, attention, num_heads, *, rngs):
        self.blocks = nnx.List(
            [_ResBlock(a, b, emb_dim, num_groups, rngs=rngs) for a, b in widths]
        )
        self.attn = nnx.List(
            [_Attention(b, num_heads, num_groups, rngs=rngs) for _, b in widths]
            if attention
            else []
        )


class UNet(nnx.Module):
    r"""A small UNet vector field :math:`v_\theta(x, t, y)` for images ``(B, H, W, C)``.

    The standard DDPM-style layout, kept small: a 3x3 input convolution; per resolution level
    ``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3x3 convolutions, the time / class
    embedding added between the convolutions) and a stride-2 downsampling convolution; a
    middle of two residual blocks around self-attention; the mirror-image upsampling path
    (nearest-neighbour upsampling and a 3x3 convolution) with skip connections; GroupNorm,
    SiLU and a 3x3 output convolution. Self-attention also runs in the residual blocks of the
    lowest resolution.

    The embedding is an MLP of :func:`sinusoidal_embedding` of ``t``, plus a condition
    embedding:

    .. math:: e = \mathrm{MLP}_t(\phi(t)) + e_c(c)

    * ``num_classes=K``: ``cond`` is integer labels ``(B,)``, :math:`e_c` a learned class
      embedding; label ``K`` is the null class (the "unconditional" model of classifier-free
      guidance).
    * ``cond_dim=k``: ``cond`` is a float array ``(B, k)``, :math:`e_c` a two-layer MLP of
      ``[c, 0]`` for a condition and of ``[0, 1]`` for the null condition (a row of all NaN,
      as :meth:`null_cond` returns; see :func:`~flowjax_fm.models._mlp.cond_features`), so
      the null condition has its own learned embedding, distinct from ``c = 0``.

    ``cond=None`` on a conditional UNet means the null condition for the whole batch.

    **Two times** (``two_time=True``, for few-step objectives such as MeanFlow and shortcut
    models): ``net(x, t, r=r)`` represents the average velocity over the jump from ``t`` to
    ``r`` (both ``(B,)``), :math:`x_r = x_t + (r - t)\, u_\theta(x_t, t, r)` (see
    :class:`~flowjax_fm.models.MLP`). The gap :math:`d = r - t` gets the same sinusoidal
    embedding as ``t``, and the time MLP reads both:

    .. math:: e = \mathrm{MLP}_t([\,\phi(t),\ \phi(r - t)\,]) + e_c(c)

    (only the first layer of :math:`\mathrm{MLP}_t` is wider). :math:`d = 0` is an ordinary
    input, not a special case: at ``r = t`` the UNet is an ordinary velocity field.

    Args:
      in_channels: image channels ``C`` (also the output channels), an int >= 1.
      channels: base width (channels of the first level), an int >= 1.
      channel_mult: width multiplier per level, a non-empty sequence of ints >= 1;
        ``len(channel_mult) - 1`` downsamplings, so ``H`` and ``W`` must be divisible by
        ``2 ** (len(channel_mult) - 1)``.
      num_res_blocks: residual blocks per level on the way down (one more on the way up), an
        int >= 1.
      num_classes: optional number of labels ``K`` for class conditioning, an int >= 1
        (labels ``0..K-1``, ``K`` the null class).
      cond_dim: optional size ``k`` of a continuous condition (not with ``num_classes``), an
        int >= 1.
      num_heads: attention heads at the lowest resolution, an int >= 1 that divides its
        width ``channels * channel_mult[-1]``.
      num_groups: GroupNorm groups, an int >= 1 (each norm uses the gcd of its width and
        ``num_groups``).
      two_time: ``True`` for a two-time UNet ``net(x, t, r=r)`` (above); ``False`` (the
        default) for ``net(x, t)``. Read back as ``net.two_time``.
      time_scale: ``s`` of :func:`sinusoidal_embedding`, a finite number in ``(0, inf)``;
        default ``1000`` for one time (DDPM's step scale) and ``10`` for two times. The
        few-step objectives differentiate the network in ``t`` (``jax.jvp``): with ``s =
        1000`` the features oscillate a thousand times over ``[0, 1]``, ``du/dt`` is of that
        order and the MeanFlow target explodes (measured on digits: a training MSE of 10^3
        and collapsed samples). sCM (Lu and Song 2024) makes the same point.
      rngs: ``nnx.Rngs`` for initialisation.

    Ints may be Python or NumPy ints; bools are refused.

    Raises:
      ValueError: at construction, a size out of its range, ``num_heads`` not dividing the
        lowest-resolution width, both ``num_classes`` and ``cond_dim``, or ``two_time`` not a
        bool; at call time, if ``x`` is not ``(B, H, W, in_channels)`` with ``H`` and ``W``
        divisible by ``2 ** (len(channel_mult) - 1)``, or ``t`` is not ``(B,)``; if ``r`` is
        given to a one-time UNet, missing for a two-time UNet or not ``(B,)``; if ``cond`` is
        given to an unconditional UNet, or is not ``(B,)`` integer labels (``num_classes``;
        float labels point to ``cond_dim``) / a ``(B, cond_dim)`` float array (``cond_dim``),
        or concrete labels fall outside ``[0, K]``.
      TypeError: ``rngs`` not an ``nnx.Rngs``.
      RuntimeError: at run time under ``jit``, labels outside ``[0, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> net = UNet(1, channels=8, channel_mult=(1, 2), num_classes=10, rngs=nnx.Rngs(0))
      >>> net(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.array([3, 10])).shape
      (2, 8, 8, 1)
      >>> vnet = UNet(1, channels=8, channel_mult=(1, 2), cond_dim=3, rngs=nnx.Rngs(0))
      >>> vnet(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.ones((2, 3))).shape
      (2, 8, 8, 1)
      >>> unet = UNet(1, channels=8, channel_mult=(1, 2), num_classes=10, two_time=True,
      ...             rngs=nnx.Rngs(0))
      >>> unet(jnp.zeros((2, 8, 8, 1)), jnp.zeros(2), cond=jnp.array([3, 10]),
      ...      r=jnp.array([0.5, 1.0])).shape
      (2, 8, 8, 1)
    """

    def __init__(
        self,
        in_channels: int,
        *,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        num_heads: int = 4,
        num_groups: int = 8,
        two_time: bool = False,
        time_scale: float | None = None,
        rngs: nnx.Rngs,
    ):
        in_channels = check_positive_int("in_channels", in_channels)
        channels = check_positive_int("channels", channels)
        channel_mult = check_sizes("channel_mult", channel_mult)
        num_res_blocks = check_positive_int("num_res_blocks", num_res_blocks)
        num_heads = check_positive_int("num_heads", num_heads)
        num_groups = check_positive_int("num_groups", num_groups)
        num_classes, cond_dim = check_conditioning(num_classes, cond_dim)
        two_time = check_bool("two_time", two_time)
        if time_scale is None:
            time_scale = 10.0 if two_time else 1000.0
        check_real("time_scale", time_scale, 0.0, low_open=True)
        self.time_scale = float(time_scale)
        check_rngs(rngs)
        lowest = channels * channel_mult[-1]
        if lowest % num_heads:
            raise ValueError(
                f"num_heads must divide the lowest-resolution width channels * channel_mult[-1] = "
                f"{channels} * {channel_mult[-1]} = {lowest}, got num_heads={num_heads}"
            )
        self.in_channels = in_channels
        self.channel_mult = channel_mult
        self.num_classes = num_classes
        self.cond_dim = cond_dim
        self.two_time = two_time
        self.emb_size = 4 * channels
        emb = self.emb_size
        self.time_dim = channels + channels % 2  # sinusoidal features come in sin/cos pairs
        # phi(t), and phi(r - t) beside it for a two-time UNet
        self.time_mlp1 = nnx.Linear((2 if two_time else 1) * self.time_dim, emb, rngs=rngs)
        self.time_mlp2 = nnx.Linear(emb, emb, rngs=rngs)
        self.class_embed = (
            nnx.Embed(num_classes + 1, emb, rngs=rngs) if num_classes is not None else None
        )
        if cond_dim is not None:
            self.cond_mlp1 = nnx.Linear(cond_dim + 1, emb, rngs=rngs)
            self.cond_mlp2 = nnx.Linear(emb, emb, rngs=rngs)
        self.conv_in = nnx.Conv(in_channels, channels, (3, 3), rngs=rngs)

        widths = [channels * m for m in channel_mult]
        last = len(widths) - 1
        down, downsample, skip_widths = [], [], [channels]
        c = channels
        for i, w in enumerate(widths):
            pairs = []
            for _ in range(num_res_blocks):
                pairs.append((c, w))
                c = w
                skip_widths.append(c)
            down.append(_Level(pairs, emb, num_groups, i == last, num_heads, rngs=rngs))
            if i != last:
                downsample.append(nnx.Conv(c, c, (3, 3), strides=(2, 2), rngs=rngs))
                skip_widths.append(c)
        self.down = nnx.List(down)
        self.downsample = nnx.List(downsample)
        self.mid1 = _ResBlock(c, c, emb, num_groups, rngs=rngs)
        self.mid_attn = _Attention(c, num_heads, num_groups, rngs=rngs)
        self.mid2 = _ResBlock(c, c, emb, num_groups, rngs=rngs)
        up, upsample = [], []
        for i in reversed(range(len(widths))):
            pairs = []
            for _ in range(num_res_blocks + 1):
                pairs.append((c + skip_widths.pop(), widths[i]))
                c = widths[i]
            up.append(_Level(pairs, emb, num_groups, i == last, num_heads, rngs=rngs))
            if i != 0:
                upsample.append(nnx.Conv(c, c, (3, 3), rngs=rngs))
        self.up = nnx.List(up)
        self.upsample = nnx.List(upsample)
        self.norm_out = nnx.GroupNorm(c, num_groups=_groups(c, num_groups), rngs=rngs)
        self.conv_out = nnx.Conv(c, in_channels, (3, 3), rngs=rngs)

    def _check(self, x, t, cond, r):
        """The checked ``cond`` and ``r``."""
        factor = 2 ** (len(self.channel_mult) - 1)
        shape = jnp.shape(x)
        if len(shape) != 4 or shape[-1] != self.in_channels:
            raise ValueError(
                f"UNet expects channels-last images (B, H, W, {self.in_channels}), got x of "
                f"shape {shape}"
            )
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"x must be floating point, got dtype {jnp.result_type(x)}")
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(
                f"UNet with {len(self.channel_mult)} levels needs H and W divisible by "
                f"{factor}, got x of shape {shape}"
            )
        if jnp.shape(t) != (shape[0],):
            raise ValueError(f"t must have shape ({shape[0]},), got {jnp.shape(t)}")
        r = end_time("UNet", self.two_time, r, shape[0])
        if cond is not None and self.cond_dim is None:
            if self.class_embed is None:
                raise ValueError(
                    "this UNet has no conditioning (num_classes=None, cond_dim=None) but got cond"
                )
            return class_labels("UNet", cond, shape[0], self.num_classes), r
        return cond, r

    def null_cond(self, batch: int):
        """What "no condition" means for this UNet, batched: ``(batch,)`` null labels
        (``num_classes``), ``(batch, cond_dim)`` NaN (the null vector), or ``None``."""
        if self.num_classes is not None:
            return jnp.full((batch,), self.num_classes, jnp.int32)
        if self.cond_dim is not None:
            return jnp.full((batch, self.cond_dim), jnp.nan, jnp.float32)
        return None

    def __call__(
        self, x: jax.Array, t: jax.Array, cond: jax.Array | None = None, r: jax.Array | None = None
    ) -> jax.Array:
        cond, r = self._check(x, t, cond, r)
        batch = x.shape[0]
        t = t.astype(x.dtype)
        emb = sinusoidal_embedding(t, self.time_dim, scale=self.time_scale)
        if r is not None:
            gap = sinusoidal_embedding(r.astype(x.dtype) - t, self.time_dim, scale=self.time_scale)
            emb = jnp.concatenate([emb, gap], axis=-1)
        emb = self.time_mlp2(jax.nn.silu(self.time_mlp1(emb)))
        if self.class_embed is not None:
            labels = jnp.full((batch,), self.num_classes, jnp.int32) if cond is None else cond
            emb = emb + self.class_embed(labels).astype(emb.dtype)
        if self.cond_dim is not None:
            feats = cond_features(cond, batch, self.cond_dim, emb.dtype)
            emb = emb + self.cond_mlp2(jax.nn.silu(self.cond_mlp1(feats)))

        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.blocks):
                h = block(h, emb)
                if len(level.attn):
                    h = level.attn[j](h)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for j, block in enumerate(level.blocks):
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), emb)
                if len(level.attn):
                    h = level.attn[j](h)
            if i < len(self.upsample):
                h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
                h = self.upsample[i](h)
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
