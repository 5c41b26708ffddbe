r"""Time grids for fixed-step solves: uniform, shifted (SD3 / Flux) and EDM (Karras et al.).

A grid is the ``ts`` of :func:`flowjax_fm.sampling.sample` with a fixed-step solver: the
``num_steps + 1`` times, increasing from ``t0`` to ``t1``, whose intervals are the steps.
Convention: ``t = 0`` at the source (noise), ``t = 1`` at the data; diffusers / SD3 / Flux
write the same grids as noise levels :math:`\sigma = 1 - t`, decreasing from 1 to 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_choice, check_positive_int, check_real, is_concrete
from flowjax_fm.time_sampling._schedules import _shift

__all__ = ["TIME_GRID_KINDS", "time_grid"]

TIME_GRID_KINDS = ("edm", "shifted", "uniform")
_DEFAULTS = {"shift": ("shifted", 1.0), "rho": ("edm", 7.0), "sigma_min": ("edm", 0.002)}


def _floating_dtype(dtype):
    try:
        kind = jnp.dtype(dtype)
    except TypeError:
        kind = None
    if kind is None or not jnp.issubdtype(kind, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (float32, bfloat16, ...), got {dtype!r}")
    return jax.dtypes.canonicalize_dtype(kind)  # float64 is float32 with x64 off, as JAX casts


def _check(num_steps, kind, shift, rho, sigma_min, t0, t1, dtype):
    n = check_positive_int("num_steps", num_steps)
    check_choice("time grid kind", kind, TIME_GRID_KINDS)
    check_real("shift", shift, 0.0, low_open=True)
    check_real("rho", rho, 0.0, low_open=True)
    check_real("sigma_min", sigma_min, 0.0, 1.0, low_open=True, high_open=True)
    check_real("t0", t0, 0.0, 1.0)
    check_real("t1", t1, 0.0, 1.0)
    dtype = _floating_dtype(dtype)
    values = {"shift": shift, "rho": rho, "sigma_min": sigma_min}
    for name, (used_by, default) in _DEFAULTS.items():
        value = values[name]
        if kind != used_by and is_concrete(value) and np.any(np.asarray(value, np.float64) != default):
            raise ValueError(
                f"{name} applies to kind={used_by!r} only, got {name}={value!r} with kind={kind!r}"
            )
    if is_concrete((t0, t1)) and not float(t0) < float(t1):
        raise ValueError(f"t0 must be below t1 (a grid increases from t0 to t1), got t0={t0!r} and t1={t1!r}")
    if kind == "edm" and n > 1 and is_concrete((sigma_min, t0, t1)):
        if not 1.0 - float(t1) < float(sigma_min) < 1.0 - float(t0):
            raise ValueError(
                f"sigma_min must lie in (1 - t1, 1 - t0) = ({1.0 - float(t1):g}, {1.0 - float(t0):g}) "
                f"for kind='edm', got {sigma_min!r}"
            )
    return n, dtype


def time_grid(
    num_steps: int,
    *,
    kind: str = "uniform",
    shift: float = 1.0,
    rho: float = 7.0,
    sigma_min: float = 0.002,
    t0: float = 0.0,
    t1: float = 1.0,
    dtype=jnp.float32,
) -> jax.Array:
    r"""The ``num_steps + 1`` times of a fixed-step solve, increasing from ``t0`` to ``t1``.

    With :math:`N` = ``num_steps`` and :math:`i = 0, \dots, N`:

    * ``"uniform"``: :math:`t_i = t_0 + (t_1 - t_0)\, i / N`.
    * ``"shifted"``: the uniform grid through the SD3 / Flux shift :math:`s` (see
      :func:`~flowjax_fm.time_sampling.shift_time`),

      .. math:: t_i = \frac{u_i}{u_i + s (1 - u_i)}, \qquad
         u_i = u_0 + (u_N - u_0)\, i / N, \quad u_0, u_N = \text{shift}^{-1}(t_0), \text{shift}^{-1}(t_1),

      which for ``t0 = 0, t1 = 1`` is ``shift_time(linspace(0, 1, N + 1), s)``: the grid of
      Flux's reference sampler (``get_schedule``: ``linspace(1, 0, N + 1)`` in
      :math:`\sigma = 1 - t`, shifted) with ``shift = resolution_shift(seq_len)``; SD3 samples
      with ``shift = 3``. ``s > 1`` puts smaller steps at the noise end (``t = 0``).
    * ``"edm"``: Karras et al.'s :math:`\rho`-schedule of noise levels, with the flow's
      noise level :math:`\sigma = 1 - t` (so :math:`\sigma_{\max} = 1 - t_0`):

      .. math::
         \sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N - 1}
         \big(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho}
         \ (i < N), \qquad \sigma_N = 1 - t_1, \qquad t_i = 1 - \sigma_i,

      Karras et al.'s eq. 5 (there the last level is 0; here ``1 - t1``, 0 by default).
      :math:`N - 1` steps are :math:`\rho`-spaced down to ``sigma_min`` and the last step
      goes to ``t1``; steps shrink towards the data (``rho = 7``: EDM's choice). Letting
      :math:`\sigma_{\min} \to 0` in the formula instead (with :math:`i / N`) would make the
      last step :math:`N^{-\rho}` long (below float32 resolution at 1 for :math:`N \ge 12`
      and ``rho = 7``), hence the explicit ``sigma_min`` (EDM's 0.002; diffusers' flow
      scheduler with Karras sigmas stops near 0.001-0.003 before its final 0). With one
      step the grid is ``[t0, t1]``.

    Endpoints are exactly ``t0`` and ``t1``; the grid is computed in at least float32 and
    cast to ``dtype``. Use it as ``fm.sampling.sample(field, x0, solver="euler", ts=grid)``
    (``ts`` is then the step grid; ``num_steps`` stays None). Not
    :mod:`flowjax_fm.time_sampling`, which draws training times.

    Args:
      num_steps: :math:`N`, an int >= 1.
      kind: ``"uniform"``, ``"shifted"`` or ``"edm"``.
      shift: :math:`s` of ``"shifted"``, a finite number in ``(0, inf)`` (1 is uniform).
      rho: :math:`\rho` of ``"edm"``, a finite number in ``(0, inf)``.
      sigma_min: the last nonzero noise level of ``"edm"``, in ``(1 - t1, 1 - t0)``.
      t0, t1: the end times, finite numbers with ``0 <= t0 < t1 <= 1``.
      dtype: a floating dtype (float32 by default; float64 is float32 unless x64 is on; a
        bfloat16 grid ties neighbours sooner, which is refused).

    Returns:
      The grid, shape ``(num_steps + 1,)``, strictly increasing, in ``dtype``.

    Raises:
      ValueError: ``num_steps`` not an int >= 1; an unknown ``kind``; a value out of its
        range; ``shift`` / ``rho`` / ``sigma_min`` set (not its default) for a kind that does
        not use it; ``t0 >= t1``; ``dtype`` not floating; a grid whose neighbours tie in
        ``dtype`` (too many steps for its precision). Traced values pass unchecked.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> from flowjax_fm.sampling._grids import time_grid
      >>> [round(float(t), 4) for t in time_grid(4, kind="shifted", shift=3.0)]
      [0.0, 0.1, 0.25, 0.5, 1.0]
      >>> [round(float(t), 4) for t in time_grid(3, kind="edm")]
      [0.0, 0.9128, 0.998, 1.0]
      >>> res = fm.sampling.sample(lambda x, t: jnp.ones_like(x), jnp.zeros((2, 1)),
      ...                          solver="euler", ts=time_grid(8, kind="shifted", shift=3.0))
      >>> int(res.nfe), res.x.ravel().tolist()
      (8, [1.0, 1.0])

    References:
      Esser et al. 2024, Scaling Rectified Flow Transformers (SD3), section 5.3.2;
      Black Forest Labs 2024, FLUX.1 reference sampler; Karras et al. 2022, Elucidating the
      Design Space of Diffusion-Based Generative Models (EDM), eq. 5.
    """
    n, dtype = _check(num_steps, kind, shift, rho, sigma_min, t0, t1, dtype)
    work = jnp.promote_types(dtype, jnp.float32)
    t0_, t1_ = jnp.asarray(t0, work), jnp.asarray(t1, work)
    frac = jnp.arange(n + 1, dtype=work) / n
    if kind == "uniform":
        grid = t0_ + (t1_ - t0_) * frac
    elif kind == "shifted":
        s = jnp.asarray(shift, work)
        u0, u1 = _shift(t0_, 1 / s), _shift(t1_, 1 / s)
        grid = _shift(u0 + (u1 - u0) * frac, s)
    else:
        inv_rho = 1 / jnp.asarray(rho, work)
        if n == 1:
            sigma = jnp.stack([1 - t0_, 1 - t1_])
        else:
            hi, lo = (1 - t0_) ** inv_rho, jnp.asarray(sigma_min, work) ** inv_rho
            levels = (hi + jnp.arange(n, dtype=work) / (n - 1) * (lo - hi)) ** jnp.asarray(rho, work)
            sigma = jnp.concatenate([levels, (1 - t1_)[None]])
        grid = 1 - sigma
    grid = grid.at[0].set(t0_).at[-1].set(t1_).astype(dtype)
    if is_concrete(grid):
        steps = np.diff(np.asarray(grid, np.float64))
        if not np.all(steps > 0):
            first = int(np.argmin(steps > 0))
            raise ValueError(
                f"the {kind} grid of {n} steps is not strictly increasing in {dtype.name}: times "
                f"{first} and {first + 1} are both {float(grid[first])} (fewer steps, a smaller "
                "shift / rho, or a wider dtype)"
            )
    return grid
