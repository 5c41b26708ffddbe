r"""SD3's loss weightings as ``weight=`` functions of ``t``.

Each is ``w(t) -> weights`` elementwise (shape ``(B,)`` to ``(B,)`` in a loss), for
``fm.losses.cfm_loss(..., weight=w)`` and ``fm.training.make_train_step(..., weight=w)``.
Convention: ``t = 0`` at the source (noise), ``t = 1`` at the data; diffusers' SD3 code writes
the same weights in the noise level :math:`\sigma = 1 - t` (``compute_loss_weighting_for_sd3``).

Weighting the loss by a density :math:`p` under uniform ``t`` has the same expectation as
drawing ``t`` from :math:`p` unweighted,

.. math:: \mathbb{E}_{t \sim U[0, 1]}\big[p(t)\,\ell(t)\big] = \mathbb{E}_{t \sim p}\big[\ell(t)\big],

with a different variance: :func:`cosmap_weight` and :func:`logit_normal_weight` are such
densities (of SD3's cosmap sampler and of
:class:`~flowjax_fm.time_sampling.LogitNormalTime`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import as_floating, check_real
from flowjax_fm._pytree import pytree_dataclass

__all__ = ["LogitNormalWeight", "cosmap_weight", "logit_normal_weight", "sigma_sqrt_weight"]


def _times(t):
    """``(t, work dtype)``: ``t`` a floating array with (when concrete) values in [0, 1]."""
    t = as_floating("t", t)
    check_real("t", t, 0.0, 1.0)
    return t, jnp.promote_types(t.dtype, jnp.float32)


def cosmap_weight(t) -> jax.Array:
    r"""SD3's "cosmap" weighting: the density of its cosmap time sampler.

    .. math::
       w(t) = \frac{2}{\pi\,(1 - 2 t + 2 t^2)}
            = \frac{2}{\pi\,(1 - 2 \sigma + 2 \sigma^2)}, \quad \sigma = 1 - t,

    diffusers' ``compute_loss_weighting_for_sd3("cosmap", sigmas)``; the formula is symmetric
    under :math:`t \leftrightarrow 1 - t`, so it reads the same in both conventions. It is
    the density of SD3's :math:`t = 1 - 1 / (\tan(\pi u / 2) + 1)`, :math:`u \sim U[0, 1]`
    (integrates to 1 on [0, 1]), bounded in :math:`[2/\pi, 4/\pi]` (4/pi at ``t = 1/2``):
    finite everywhere, no clipping needed.

    Args:
      t: times in ``[0, 1]``, a floating array (``(B,)`` in a loss).

    Returns:
      The weights, shaped like ``t``, in ``t``'s dtype (computed in at least float32).

    Raises:
      ValueError: ``t`` not floating point, or (when concrete) outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> [round(float(w), 4) for w in cosmap_weight(jnp.array([0.0, 0.5, 1.0]))]  # 2/pi, 4/pi
      [0.6366, 1.2732, 0.6366]

    References:
      Esser et al. 2024, Scaling Rectified Flow Transformers (SD3), section 3.1 ("CosMap").
    """
    t, work = _times(t)
    x = t.astype(work)
    return (2.0 / (math.pi * (1.0 - 2.0 * x + 2.0 * jnp.square(x)))).astype(t.dtype)


def sigma_sqrt_weight(t, *, sigma_min: float = 1e-3) -> jax.Array:
    r"""diffusers' ``"sigma_sqrt"`` SD3 weighting :math:`\sigma^{-2}`, with :math:`\sigma = 1 - t` clipped.

    .. math:: w(t) = \max(1 - t,\ \sigma_{\min})^{-2}

    diffusers' ``compute_loss_weighting_for_sd3("sigma_sqrt", sigmas)`` is
    :math:`\sigma^{-2}` with :math:`\sigma = 1 - t` here (``sigma = 1`` at noise there,
    ``t = 0`` at noise here): weight 1 at the noise end, growing towards the data end, where
    it is infinite at ``t = 1``. The clip at ``sigma_min`` keeps it finite: the default
    1e-3 is the smallest noise level diffusers trains on (its 1000-step schedule's
    ``1 / 1000``), so ``t = 1`` weighs ``1e6``. In float16 (largest value 65504) pick
    ``sigma_min >= 4e-3``. Use another clip with
    ``functools.partial(sigma_sqrt_weight, sigma_min=...)``.

    Args:
      t: times in ``[0, 1]``, a floating array (``(B,)`` in a loss).
      sigma_min: the smallest :math:`\sigma` used, a finite number in ``(0, 1]``.

    Returns:
      The weights, shaped like ``t``, in ``t``'s dtype (computed in at least float32).

    Raises:
      ValueError: ``t`` not floating point, or (when concrete) outside ``[0, 1]``;
        ``sigma_min`` out of range.

    Examples:
      >>> import jax.numpy as jnp
      >>> [float(w) for w in sigma_sqrt_weight(jnp.array([0.0, 0.5, 1.0]))]  # 1e-3 ** -2 in float32
      [1.0, 4.0, 999999.875]

    References:
      Esser et al. 2024 (SD3); diffusers ``training_utils.compute_loss_weighting_for_sd3``.
    """
    t, work = _times(t)
    check_real("sigma_min", sigma_min, 0.0, 1.0, low_open=True)
    sigma = jnp.maximum(1.0 - t.astype(work), jnp.asarray(sigma_min, work))
    return (1.0 / jnp.square(sigma)).astype(t.dtype)


@pytree_dataclass
class LogitNormalWeight:
    r"""The logit-normal density as a loss weight; build it with :func:`logit_normal_weight`.

    A frozen pytree: ``loc`` and ``scale`` are leaves (sweepable), and equal values hash
    equal (a training step holding it as its static ``weight`` caches on them).
    """

    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        check_real("loc", self.loc)
        check_real("scale", self.scale, 0.0, low_open=True)

    def __call__(self, t) -> jax.Array:
        t, work = _times(t)
        x = t.astype(work)
        inside = (x > 0) & (x < 1)
        safe = jnp.where(inside, x, 0.5)  # no 0 * inf at the ends (nor in the gradient)
        loc, scale = jnp.asarray(self.loc, work), jnp.asarray(self.scale, work)
        z = (jnp.log(safe) - jnp.log1p(-safe) - loc) / scale
        density = jnp.exp(-0.5 * jnp.square(z)) / (scale * math.sqrt(2 * math.pi) * safe * (1 - safe))
        return jnp.where(inside, density, 0.0).astype(t.dtype)


def logit_normal_weight(loc: float = 0.0, scale: float = 1.0) -> LogitNormalWeight:
    r"""The weighting equivalent to :class:`~flowjax_fm.time_sampling.LogitNormalTime`: its density.

    .. math::
       w(t) = \frac{1}{s \sqrt{2 \pi}}\, \frac{1}{t (1 - t)}
              \exp\Big(-\frac{(\operatorname{logit} t - \mu)^2}{2 s^2}\Big),
       \qquad w(0) = w(1) = 0,

    the density of :math:`t = \mathrm{sigmoid}(\mu + s z)`, :math:`z \sim N(0, 1)`, in our
    convention (``t = 0`` at noise). Training with uniform ``t`` and ``weight=w`` has the
    same expected loss as training with ``LogitNormalTime(loc, scale)`` unweighted (SD3's
    ``lognorm`` sampling as a weighting). SD3's paper writes :math:`\mathrm{lognorm}(m, s)`
    for its noise level :math:`\sigma = 1 - t`, which is ``loc = -m`` here (the same for
    its recommended :math:`m = 0`); diffusers' training scripts look their draw up in a
    schedule stored from noise to data, so their ``logit_mean = m`` is ``loc = m`` here.

    Args:
      loc: :math:`\mu`, a finite number.
      scale: :math:`s`, a finite number in ``(0, inf)``.

    Returns:
      A function ``w(t) -> weights`` (shaped like ``t``, in ``t``'s dtype; 0 at ``t = 0``
      and ``t = 1``): a :class:`LogitNormalWeight` whose ``loc`` and ``scale`` are pytree
      leaves.

    Raises:
      ValueError: ``loc`` or ``scale`` out of range (checked when concrete); at a call,
        ``t`` not floating point or (when concrete) outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> w = logit_normal_weight(0.0, 1.0)
      >>> [round(float(v), 4) for v in w(jnp.array([0.0, 0.5, 1.0]))]  # 4 / sqrt(2 pi) at 1/2
      [0.0, 1.5958, 0.0]

    References:
      Esser et al. 2024, Scaling Rectified Flow Transformers (SD3), section 3.1.
    """
    return LogitNormalWeight(loc=loc, scale=scale)
