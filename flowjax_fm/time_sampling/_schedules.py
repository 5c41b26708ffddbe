r"""The time schedules of production flow models: SD3's "mode" sampler and the time shift.

**Convention.** flowjax_fm puts the source (noise) at ``t = 0`` and the data at ``t = 1``.
diffusers, Stable Diffusion 3 and Flux use a noise level :math:`\sigma` with
:math:`\sigma = 1` at noise, so everything below translates through

.. math:: \sigma = 1 - t .

**The shift.** SD3 and Flux move training and sampling times towards the noise end with a
shift :math:`s` (written in their convention)

.. math:: \sigma' = \frac{s\,\sigma}{1 + (s - 1)\,\sigma},

which in ours (:math:`t' = 1 - \sigma'`, :math:`\sigma = 1 - t`) reads

.. math::
   t' = \frac{t}{t + s\,(1 - t)}, \qquad
   \operatorname{logit} t' = \operatorname{logit} t - \log s :

a translation by :math:`-\log s` in logit space. ``s > 1`` moves times towards the noise
(smaller ``t``), ``s = 1`` is the identity, ``0`` and ``1`` are fixed, and the inverse is the
shift by ``1 / s``. Flux's resolution-dependent shift is :math:`s = e^{\mu}` with :math:`\mu`
linear in the image sequence length (:func:`resolution_shift`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import as_floating, check_real, is_concrete
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.time_sampling._samplers import AbstractTime, check_draw

__all__ = ["ModeTime", "ShiftedTime", "resolution_shift", "shift_time"]

MODE_SCALE_MAX = 2.0 / (math.pi - 2.0)
"""The largest ``ModeTime`` scale for which SD3's map is monotone: :math:`2 / (\\pi - 2)`."""


def _work_dtype(dtype):
    """At least float32: the schedules are computed there and cast back."""
    return jnp.promote_types(dtype, jnp.float32)


def _shift(t, s):
    """The shift in our convention, no checks: ``t / (t + s (1 - t))`` (exact at 0 and 1)."""
    return t / (t + s * (1 - t))


def shift_time(t, shift) -> jax.Array:
    r"""Apply the SD3 / Flux time shift :math:`s` to times ``t`` (elementwise).

    .. math::
       t' = \frac{t}{t + s\,(1 - t)}
       \quad\Longleftrightarrow\quad
       \sigma' = \frac{s\,\sigma}{1 + (s - 1)\,\sigma}, \quad \sigma = 1 - t,

    the second form being diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s)`` in its
    convention (``sigma = 1`` at noise); ours has ``t = 0`` at noise. So the same ``shift``
    gives the same times: with ``s = 3``, diffusers' ``sigma = 0.5`` becomes
    ``sigma' = 0.75``, and here ``t = 0.5`` becomes ``t' = 0.25 = 1 - 0.75``. ``s > 1`` moves
    times towards the noise; equivalently :math:`\operatorname{logit} t' =
    \operatorname{logit} t - \log s`. Monotone increasing, ``0`` and ``1`` fixed; the inverse
    is ``shift_time(t, 1 / shift)``.

    (Applying diffusers' formula to our ``t`` directly, :math:`s t / (1 + (s - 1) t)`, would
    shift towards the *data*: it is this function with ``1 / shift``.)

    Args:
      t: times in ``[0, 1]``, a floating array of any shape (a Python float is accepted).
      shift: :math:`s`, a finite number in ``(0, inf)`` (or an array broadcasting with ``t``).

    Returns:
      The shifted times, shaped like ``t`` (broadcast with ``shift``), in ``t``'s floating
      dtype (computed in at least float32).

    Raises:
      ValueError: ``t`` not floating point or (when concrete) outside ``[0, 1]``;
        ``shift`` not a finite number in ``(0, inf)`` (traced values pass).

    Examples:
      >>> import jax.numpy as jnp
      >>> shift_time(jnp.array([0.0, 0.5, 1.0]), 3.0).tolist()
      [0.0, 0.25, 1.0]
      >>> float(shift_time(shift_time(0.3, 3.0), 1 / 3.0))  # the inverse
      0.30000001192092896

    References:
      Esser et al. 2024, Scaling Rectified Flow Transformers for High-Resolution Image
      Synthesis (SD3), section 5.3.2 (resolution-dependent shifting of timestep schedules).
    """
    t = as_floating("t", t)
    check_real("t", t, 0.0, 1.0)
    check_real("shift", shift, 0.0, low_open=True)
    work = _work_dtype(t.dtype)
    return _shift(t.astype(work), jnp.asarray(shift, work)).astype(t.dtype)


def resolution_shift(
    seq_len,
    base_seq_len=256,
    max_seq_len=4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> jax.Array:
    r"""Flux's resolution-dependent shift: :math:`s = e^{\mu}`, :math:`\mu` linear in ``seq_len``.

    .. math::
       \mu = \mu_b + (L - L_b)\,\frac{\mu_m - \mu_b}{L_m - L_b}, \qquad s = e^{\mu},

    with :math:`L` = ``seq_len``, :math:`(L_b, \mu_b)` = ``(base_seq_len, base_shift)`` and
    :math:`(L_m, \mu_m)` = ``(max_seq_len, max_shift)`` (extrapolated outside
    :math:`[L_b, L_m]`). Flux applies :math:`\sigma' = e^{\mu} \sigma / (e^{\mu} \sigma +
    1 - \sigma)` (its ``time_shift(mu, 1, t)``; diffusers' ``calculate_shift`` returns
    :math:`\mu`), which is :func:`shift_time` with ``shift = s`` in our ``t = 0`` at noise
    convention. For Flux, ``seq_len`` is the number of latent tokens, ``(H / 16) (W / 16)``
    for an ``H x W`` image: 4096 at 1024 x 1024 (``s = e^{1.15} = 3.158``), 1024 at
    512 x 512 (``s = e^{0.63} = 1.878``).

    Args:
      seq_len: the image sequence length :math:`L`, a finite number in ``(0, inf)`` (or an
        array of them).
      base_seq_len, max_seq_len: the two lengths of the line, finite numbers in ``(0, inf)``
        that differ.
      base_shift, max_shift: :math:`\mu` at those lengths, finite numbers.

    Returns:
      :math:`s`, a float32 JAX array shaped like ``seq_len`` (a scalar for a number); pass it
      as ``shift`` to :class:`ShiftedTime`, :func:`shift_time` or ``fm.sampling.time_grid``.

    Raises:
      ValueError: a value not finite or out of its range, or ``base_seq_len == max_seq_len``
        (checked when concrete; traced values pass).

    Examples:
      >>> round(float(resolution_shift(4096)), 4), round(float(resolution_shift(256)), 4)
      (3.1582, 1.6487)
      >>> round(float(resolution_shift(1024)), 4)  # 512 x 512 in Flux
      1.8776

    References:
      Black Forest Labs 2024, FLUX.1 reference sampler (``get_schedule``, ``time_shift``);
      Esser et al. 2024 (SD3), section 5.3.2.
    """
    check_real("seq_len", seq_len, 0.0, low_open=True)
    check_real("base_seq_len", base_seq_len, 0.0, low_open=True)
    check_real("max_seq_len", max_seq_len, 0.0, low_open=True)
    check_real("base_shift", base_shift)
    check_real("max_shift", max_shift)
    if is_concrete((base_seq_len, max_seq_len)) and float(base_seq_len) == float(max_seq_len):
        raise ValueError(
            f"base_seq_len and max_seq_len must differ, got {base_seq_len!r} and {max_seq_len!r}"
        )
    length, lo, hi = (jnp.asarray(v, jnp.float32) for v in (seq_len, base_seq_len, max_seq_len))
    mu_lo, mu_hi = jnp.asarray(base_shift, jnp.float32), jnp.asarray(max_shift, jnp.float32)
    mu = mu_lo + (length - lo) * (mu_hi - mu_lo) / (hi - lo)
    return jnp.exp(mu)


@pytree_dataclass
class ModeTime(AbstractTime):
    r"""SD3's "mode" sampler with heavy tails, :math:`t = 1 - f_{\mathrm{mode}}(u)`, :math:`u \sim U[0, 1]`.

    .. math::
       f_{\mathrm{mode}}(u; s) = 1 - u - s \Big(\cos^2\big(\tfrac{\pi}{2} u\big) - 1 + u\Big),
       \qquad
       t = 1 - f_{\mathrm{mode}}(u; s) = u + s \Big(u - \sin^2\big(\tfrac{\pi}{2} u\big)\Big).

    SD3 draws its noise level :math:`\sigma = f_{\mathrm{mode}}(u)` (``sigma = 1`` at noise);
    here ``t = 1 - sigma`` (``t = 0`` at noise). The law is symmetric about 1/2
    (:math:`f(1 - u) = 1 - f(u)`), so both conventions give the same distribution.
    ``scale > 0`` puts the mode at ``t = 1/2`` (density :math:`1 / (1 + s (1 - \pi/2))` there,
    :math:`1 / (1 + s)` at the ends); ``scale = 0`` is uniform; ``scale < 0`` favours the ends.
    The map is monotone, so an inverse CDF, only for :math:`-1 \le s \le 2 / (\pi - 2)
    \approx 1.752` (SD3, section 3.1): that range is enforced. diffusers'
    ``compute_density_for_timestep_sampling("mode", mode_scale=s)`` followed by its training
    scripts' lookup into the scheduler's shifted sigmas (``shift = k``) draws, up to the
    1/1000 grid, ``ShiftedTime(ModeTime(s), k)``.

    Args:
      scale: :math:`s`, a finite number in ``[-1, 2 / (pi - 2)]`` (SD3 recommends 1.29).

    Raises:
      ValueError: ``scale`` out of range (checked when concrete: traced leaves pass); at a
        draw, ``n`` not an int >= 1 or ``dtype`` not floating.

    Examples:
      >>> import jax
      >>> t = ModeTime(scale=1.29)(jax.random.key(0), 20000)
      >>> bool((t >= 0).all() and (t <= 1).all())
      True
      >>> round(float(((t > 0.3) & (t < 0.7)).mean()), 1)  # 0.4 for U[0, 1]
      0.7

    References:
      Esser et al. 2024, Scaling Rectified Flow Transformers for High-Resolution Image
      Synthesis (SD3), section 3.1, "Mode Sampling with Heavy Tails".
    """

    scale: float = 1.29

    def __post_init__(self):
        check_real("scale", self.scale, -1.0, MODE_SCALE_MAX)

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        work = _work_dtype(dtype)
        u = jax.random.uniform(key, (n,), work)
        s = jnp.asarray(self.scale, work)
        t = u + s * (u - jnp.square(jnp.sin(0.5 * jnp.pi * u)))
        return jnp.clip(t, 0.0, 1.0).astype(dtype)


@pytree_dataclass
class ShiftedTime(AbstractTime):
    r"""Times of any sampler passed through the SD3 / Flux shift: :math:`t' = t / (t + s (1 - t))`.

    .. math::
       t \sim \texttt{base}, \qquad t' = \frac{t}{t + s\,(1 - t)}
       \quad (\sigma' = \tfrac{s \sigma}{1 + (s - 1) \sigma},\ \sigma = 1 - t),

    see :func:`shift_time`: ``shift`` means what diffusers' ``shift`` means (``s > 1`` trains
    more at the noise end, ``t = 0`` here, ``sigma = 1`` there; SD3 uses ``s = 3`` at
    1024 x 1024, Flux :func:`resolution_shift`). In logit space the shift is a translation:
    ``ShiftedTime(LogitNormalTime(loc, scale), s)`` is ``LogitNormalTime(loc - log s,
    scale)``; shifting :class:`~flowjax_fm.time_sampling.UniformTime` gives the CDF
    :math:`P(t' \le x) = s x / (s x + 1 - x)`. diffusers' SD3 / Flux training scripts draw
    ``u`` from ``compute_density_for_timestep_sampling`` and look it up in the scheduler's
    shifted sigmas, which is (up to the 1/1000 grid) ``ShiftedTime(base, shift)`` with
    ``base`` the same density in our ``t`` (``LogitNormalTime(logit_mean, logit_std)``,
    ``ModeTime(mode_scale)``, ``UniformTime()``).

    Args:
      base: the sampler drawn from, an :class:`~flowjax_fm.time_sampling.AbstractTime`
        (a pytree child: its float fields stay leaves).
      shift: :math:`s`, a finite number in ``(0, inf)``.

    Raises:
      TypeError: ``base`` not an ``AbstractTime``.
      ValueError: ``shift`` out of range (checked when concrete: traced leaves pass); at a
        draw, ``n`` not an int >= 1 or ``dtype`` not floating.

    Examples:
      >>> import jax
      >>> from flowjax_fm.time_sampling import UniformTime
      >>> t = ShiftedTime(UniformTime(), shift=3.0)(jax.random.key(0), 20000)
      >>> float(jnp.median(t).round(2))  # the median of U[0, 1], 0.5, shifted: 0.5 / (0.5 + 1.5)
      0.25

    References:
      Esser et al. 2024 (SD3), section 5.3.2; Black Forest Labs 2024, FLUX.1.
    """

    base: AbstractTime
    shift: float

    def __post_init__(self):
        if not isinstance(self.base, AbstractTime):
            raise TypeError(
                "base must be an instance of fm.time_sampling.AbstractTime (e.g. "
                f"fm.time_sampling.UniformTime()), got {type(self.base).__name__}"
            )
        check_real("shift", self.shift, 0.0, low_open=True)

    def __call__(self, key, n, dtype=jnp.float32):
        n, dtype = check_draw(n, dtype)
        t = self.base(key, n, dtype)
        work = _work_dtype(dtype)
        return _shift(t.astype(work), jnp.asarray(self.shift, work)).astype(dtype)
