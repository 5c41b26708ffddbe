r"""Few-step sampling with a model of two times (an average-velocity field)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from flowjax_fm._checks import as_floating, check_batched, check_bool, check_positive_int, check_real
from flowjax_fm.losses._few_step import call_two_time
from flowjax_fm.sampling._sample import SampleResult

__all__ = ["sample_few_step"]


def _grid(ts, num_steps, t0, t1, dtype):
    if ts is None:
        check_positive_int("num_steps", num_steps)
        check_real("t0", t0)
        check_real("t1", t1)
        return jnp.linspace(t0, t1, num_steps + 1, dtype=dtype)
    grid = jnp.asarray(ts, dtype)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times, got shape {grid.shape}")
    if not isinstance(grid, jax.core.Tracer):
        diffs = jnp.diff(grid)
        if not bool(jnp.all(jnp.isfinite(grid))) or not (
            bool(jnp.all(diffs > 0)) or bool(jnp.all(diffs < 0))
        ):
            raise ValueError(f"ts must be finite and strictly monotone, got {grid.tolist()}")
    return grid


def sample_few_step(
    u: Callable,
    x0: jax.Array,
    *,
    num_steps: int = 1,
    cond: Any = None,
    ts: Any = None,
    t0: float = 0.0,
    t1: float = 1.0,
    save_trajectory: bool = False,
) -> SampleResult:
    r"""Generate with one or a few jumps of a two-time (average-velocity) field.

    A model of two times trained by :func:`~flowjax_fm.losses.meanflow_loss` or
    :func:`~flowjax_fm.losses.shortcut_loss` predicts the average velocity over
    ``[t, r]``, so a jump of any length is one evaluation:

    .. math:: x_{t_{k+1}} = x_{t_k} + (t_{k+1} - t_k)\, u(x_{t_k}, t_k, t_{k+1}),
       \qquad k = 0, \dots, K - 1

    on the grid ``ts`` (default ``K = num_steps`` equal steps from ``t0`` to ``t1``). With
    the exact average velocity this is the exact flow map for every ``K``; with a model the
    error is the model's. A consistency model ``F(x, t)``
    (:func:`~flowjax_fm.losses.consistency_loss`) samples as ``lambda x, t, r: F(x, t)``.

    Args:
      u: ``u(x, t, r[, cond=c]) -> (B, *event)`` with ``t, r`` of shape ``(B,)`` (called
        with ``r=`` by keyword when it has a parameter named ``r``).
      x0: source samples ``(B, *event)``.
      num_steps: ``K``, an int ``>= 1`` (ignored when ``ts`` is given).
      cond: optional condition passed as ``cond=`` (for a model trained with MeanFlow
        guidance, the guided samples in one evaluation).
      ts: optional grid of ``K + 1`` strictly monotone times (for instance
        :func:`~flowjax_fm.sampling.time_grid`); ``ts[0]`` and ``ts[-1]`` are the ends.
      t0, t1: the ends of the default grid.
      save_trajectory: keep the states on the grid in ``trajectory``.

    Returns:
      A :class:`~flowjax_fm.sampling.SampleResult` with ``x``, ``nfe = K`` (exact),
      ``num_steps = K`` and, with ``save_trajectory``, ``trajectory`` ``(K + 1, B, *event)``
      and ``ts``.

    Raises:
      ValueError: ``x0`` not a float batch ``(B, *event)``, ``num_steps`` not an int
        ``>= 1``, a grid that is not 1-D, finite and strictly monotone, or a field output
        of another shape than ``x0`` (quoted).
      TypeError: ``u`` not callable.

    Examples:
      >>> import jax.numpy as jnp
      >>> # the average velocity of dx/dt = x over [t, r] at x_t is x (e^{r-t} - 1) / (r - t)
      >>> u = lambda x, t, r: x * ((jnp.expm1(r - t) / (r - t))[:, None])
      >>> res = sample_few_step(u, jnp.ones((1, 1)), num_steps=2)
      >>> round(float(res.x[0, 0]), 5), int(res.nfe)
      (2.71828, 2)
    """
    if not callable(u):
        raise TypeError(f"u must be a two-time field u(x, t, r[, cond=c]), got {type(u).__name__}")
    check_bool("save_trajectory", save_trajectory)
    x = as_floating("x0", x0)
    check_batched("x0", x, min_ndim=2)
    grid = _grid(ts, num_steps, t0, t1, x.dtype)
    batch = x.shape[0]

    def jump(x, ends):
        a, b = ends
        t = jnp.full((batch,), a, x.dtype)
        r = jnp.full((batch,), b, x.dtype)
        out = call_two_time(u, x, t, r, cond)
        if jnp.shape(out) != x.shape:
            raise ValueError(f"the two-time field returned shape {jnp.shape(out)}, expected {x.shape}")
        x = x + (b - a) * out.astype(x.dtype)
        return x, x

    x_end, states = jax.lax.scan(jump, x, (grid[:-1], grid[1:]))
    k = jnp.asarray(grid.shape[0] - 1, jnp.int32)
    return SampleResult(
        x=x_end,
        nfe=k,
        trajectory=jnp.concatenate([x[None], states]) if save_trajectory else None,
        ts=grid if save_trajectory else None,
        num_steps=k,
        num_rejected=jnp.zeros((), jnp.int32),
        success=jnp.all(jnp.isfinite(x_end)),
        nfe_exact=True,
    )
