"""Integrate a vector field's ODE with diffrax: generate (noise to data), encode (back)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.sampling._solvers import evaluation_plan, resolve_solver

__all__ = ["SampleResult", "sample", "encode", "round_trip_error"]

VectorField = Callable[..., jax.Array]


@pytree_dataclass
class SampleResult:
    """What :func:`sample` returns.

    Attributes:
      x: the state at ``t1``, shape ``(B, *event)``.
      nfe: number of vector-field evaluations, an int32 scalar array (each evaluation is one
        call on the whole batch).
      trajectory: ``None``, or the states at ``ts``, shape ``(T, B, *event)``.
      ts: ``None``, or the save times, shape ``(T,)``.
      num_steps: attempted solver steps (accepted + rejected), int32 scalar.
      num_rejected: rejected steps (always 0 for fixed steps), int32 scalar.
      success: bool scalar; False only when ``throw=False`` and the solver failed.
      nfe_exact: whether ``nfe`` is exact (explicit Runge--Kutta and Euler methods) or an
        estimate from the step count (implicit or unknown solvers).
    """

    x: jax.Array
    nfe: jax.Array
    trajectory: jax.Array | None = None
    ts: jax.Array | None = None
    num_steps: jax.Array | None = None
    num_rejected: jax.Array | None = None
    success: jax.Array | None = None
    nfe_exact: bool = static_field(default=True)


class _BatchedField(eqx.Module):
    """diffrax's ``f(t, y, args)`` from a batched ``v(x, t[, cond=c])``.

    A module (pytree) rather than a closure, so that diffrax's compiled solve is reused
    across calls with the same vector field, and array leaves of the field (e.g. a Flax NNX
    model's parameters) are traced rather than baked in as constants.
    """

    vector_field: Any
    has_cond: bool = eqx.field(static=True)

    def __call__(self, t, y, args):
        t_batch = jnp.full((y.shape[0],), t, dtype=y.dtype)
        if self.has_cond:
            return self.vector_field(y, t_batch, cond=args)
        return self.vector_field(y, t_batch)


def _check_inputs(vector_field, x0, cond, num_steps, trajectory_points, max_steps):
    if not hasattr(x0, "shape") or len(x0.shape) < 2:
        shape = getattr(x0, "shape", type(x0).__name__)
        raise ValueError(f"x0 must be batched with shape (B, *event), at least 2D; got {shape}")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be a floating-point array, got dtype {x0.dtype}")
    if num_steps is not None and (
        isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1
    ):
        raise ValueError(f"num_steps must be None (adaptive) or an int >= 1, got {num_steps!r}")
    if isinstance(trajectory_points, bool) or not isinstance(trajectory_points, int):
        raise ValueError(f"trajectory_points must be an int >= 2, got {trajectory_points!r}")
    if trajectory_points < 2:
        raise ValueError(f"trajectory_points must be an int >= 2, got {trajectory_points!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")

    field = _BatchedField(vector_field, has_cond=cond is not None)
    t_probe = jax.ShapeDtypeStruct((), x0.dtype)
    x_probe = jax.ShapeDtypeStruct(x0.shape, x0.dtype)
    try:
        # through a lambda: jax caches on the function, and the module may hold tracers
        out = jax.eval_shape(lambda t, y, c: field(t, y, c), t_probe, x_probe, cond)
    except Exception as err:  # re-raised as a short ValueError, the original chained
        how = "v(x, t, cond=cond)" if cond is not None else "v(x, t)"
        raise ValueError(
            f"calling the vector field as {how} with x of shape {tuple(x0.shape)} and t of "
            f"shape ({x0.shape[0]},) failed: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(out, "shape") or out.shape != x0.shape or out.dtype != x0.dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if hasattr(out, "shape") else type(out).__name__
        raise ValueError(
            f"the vector field must return the shape and dtype of x, "
            f"{tuple(x0.shape)} {x0.dtype}; got {got}"
        )
    return field


def sample(
    vector_field: VectorField,
    x0: jax.Array,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t0: float = 0.0,
    t1: float = 1.0,
    save_trajectory: bool = False,
    cond: Any = None,
    trajectory_points: int = 101,
    max_steps: int | None = 4096,
    throw: bool = True,
) -> SampleResult:
    r"""Integrate the flow ODE of a vector field from ``t0`` to ``t1``.

    Solves, for the whole batch at once,

    .. math:: \frac{d x_t}{d t} = v(x_t, t), \qquad x_{t_0} = x_0,

    and returns :math:`x_{t_1}`. With the defaults this pushes source samples
    :math:`x_0 \sim p_0` (``t = 0``) to model samples of the data end (``t = 1``).
    ``t0 > t1`` integrates backwards (see :func:`encode`). Not to be confused with
    :mod:`flowjax_fm.time_sampling`, which draws training times.

    ``num_steps=None`` uses adaptive step sizes (a PID controller with ``rtol``/``atol``
    on the whole batch state, initial step chosen automatically); an int takes that many
    equal steps ``dt = (t1 - t0) / num_steps`` and ignores ``rtol``/``atol``.

    The vector field is called with ``x`` of shape ``(B, *event)`` and ``t`` of shape
    ``(B,)`` (all entries equal), as ``v(x, t)``, or as ``v(x, t, cond=cond)`` when
    ``cond`` is given. ``sample`` can be called inside ``jax.jit`` (with ``solver``,
    ``num_steps`` and the other Python options static). Outside ``jit``, pass the same
    vector-field object (a function or a pytree such as an NNX model) between calls to
    reuse the compiled solve: a fresh closure each call recompiles.

    Field evaluations (``nfe``, one per call on the whole batch) are counted from the
    steps diffrax attempted: ``s`` per step for an ``s``-stage explicit Runge--Kutta
    method, ``s - 1`` per step plus one for first-same-as-last methods (Tsit5, Dopri5).
    Adaptive solves start from a step of 1% of ``|t1 - t0|``.

    Args:
      vector_field: ``v(x, t) -> velocity``, ``x: (B, *event)``, ``t: (B,)``.
      x0: initial state, shape ``(B, *event)`` (at least 2D), floating point.
      solver: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``, ``"tsit5"``,
        ``"dopri5"``, or a diffrax solver object.
      num_steps: ``None`` for adaptive steps, or a number of equal steps (>= 1).
      rtol, atol: tolerances of the adaptive controller.
      t0, t1: start and end times; ``t0 > t1`` integrates backwards.
      save_trajectory: also return states at ``num_steps + 1`` evenly spaced times (fixed
        steps) or ``trajectory_points`` evenly spaced times (adaptive).
      cond: optional conditioning (any pytree), passed as ``cond=cond``.
      trajectory_points: number of saved times for adaptive solves (>= 2).
      max_steps: cap on attempted steps of an adaptive solve (fixed solves use exactly
        ``num_steps``).
      throw: raise if the solver fails (step cap reached, step size collapse, non-finite
        values). With ``throw=False`` the result's ``success`` flag says so instead.

    Returns:
      A :class:`SampleResult` with ``x``, ``nfe``, ``trajectory``, ``ts`` and statistics.

    Raises:
      ValueError: unknown solver name; ``x0`` not at least 2D; ``num_steps < 1``; a
        vector field whose output shape or dtype differs from ``x0``'s; adaptive steps
        with a solver that has no error estimate (Euler).
      RuntimeError: (at run time, ``throw=True``) the solver failed.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> v = lambda x, t: jnp.ones_like(x)  # constant velocity: x1 = x0 + 1
      >>> res = fm.sampling.sample(v, jnp.zeros((4, 2)), solver="rk4", num_steps=8)
      >>> res.x.shape, int(res.nfe), bool(jnp.allclose(res.x, 1.0))
      ((4, 2), 32, True)
      >>> res = fm.sampling.sample(v, jnp.zeros((4, 2)))  # adaptive tsit5
      >>> int(res.nfe) == 6 * int(res.num_steps) + 1
      True
    """
    solver_obj = resolve_solver(solver)
    field = _check_inputs(vector_field, x0, cond, num_steps, trajectory_points, max_steps)
    stages, fsal, exact = evaluation_plan(solver_obj)
    t0 = float(t0)
    t1 = float(t1)
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")

    if num_steps is None:
        if not isinstance(solver_obj, diffrax.AbstractAdaptiveSolver):
            raise ValueError(
                f"solver {type(solver_obj).__name__} has no error estimate, so it cannot take "
                "adaptive steps: pass num_steps=... for fixed steps"
            )
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        # An explicit first step (1% of the span) instead of diffrax's heuristic, so the
        # evaluation count below does not depend on how that heuristic is implemented.
        dt0 = 0.01 * (t1 - t0)
        steps_cap = max_steps
        num_saved = trajectory_points
    else:
        controller = diffrax.ConstantStepSize()
        dt0 = (t1 - t0) / num_steps
        steps_cap = num_steps
        num_saved = num_steps + 1

    if save_trajectory:
        save_ts = jnp.linspace(t0, t1, num_saved, dtype=x0.dtype)
        # The end points are exactly t0 and t1 (diffrax checks save times lie in [t0, t1]).
        save_ts = save_ts.at[0].set(t0).at[-1].set(t1)
        saveat = diffrax.SaveAt(ts=save_ts)
    else:
        saveat = diffrax.SaveAt(t1=True)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver_obj,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=x0,
        args=cond,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=steps_cap,
        throw=False,
    )
    ys = sol.ys
    success = sol.result == diffrax.RESULTS.successful
    if throw:
        ys = eqx.error_if(
            ys,
            jnp.logical_not(success),
            f"fm.sampling.sample: the {type(solver_obj).__name__} solve from t={t0} to t={t1} "
            f"failed (max_steps={steps_cap} reached, step size collapsed, or non-finite "
            "values); raise max_steps, loosen rtol/atol, or use fixed num_steps",
        )

    attempted = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    rejected = jnp.asarray(sol.stats["num_rejected_steps"], jnp.int32)
    if fsal:
        nfe = (stages - 1) * attempted + 1
    else:
        nfe = stages * attempted

    return SampleResult(
        x=ys[-1],
        nfe=nfe.astype(jnp.int32),
        trajectory=ys if save_trajectory else None,
        ts=sol.ts if save_trajectory else None,
        num_steps=attempted,
        num_rejected=rejected,
        success=success,
        nfe_exact=exact,
    )


def encode(
    vector_field: VectorField,
    x1: jax.Array,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_data: float = 1.0,
    t_source: float = 0.0,
    save_trajectory: bool = False,
    cond: Any = None,
    trajectory_points: int = 101,
    max_steps: int | None = 4096,
    throw: bool = True,
) -> SampleResult:
    r"""Integrate the flow backwards, data to source: :func:`sample` from t_data to t_source.

    .. math:: x_{t_\mathrm{source}} = x_{t_\mathrm{data}}
              - \int_{t_\mathrm{source}}^{t_\mathrm{data}} v(x_t, t)\, dt

    The inverse of the flow map, e.g. to get the latent noise of a data point, or for
    likelihoods. Arguments are those of :func:`sample`.

    Returns:
      A :class:`SampleResult`; ``x`` is the state at ``t_source``.

    Raises:
      ValueError: as :func:`sample`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> v = lambda x, t: jnp.ones_like(x)
      >>> z = fm.sampling.encode(v, jnp.ones((3, 2)), solver="euler", num_steps=4)
      >>> bool(jnp.allclose(z.x, 0.0))
      True
    """
    return sample(
        vector_field,
        x1,
        solver=solver,
        num_steps=num_steps,
        rtol=rtol,
        atol=atol,
        t0=t_data,
        t1=t_source,
        save_trajectory=save_trajectory,
        cond=cond,
        trajectory_points=trajectory_points,
        max_steps=max_steps,
        throw=throw,
    )


def round_trip_error(
    vector_field: VectorField,
    x0: jax.Array,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    cond: Any = None,
    max_steps: int | None = 4096,
) -> jax.Array:
    r"""Per-example error of sampling then encoding: a check of solver accuracy.

    .. math:: e_i = \max_j \left| \big(\Phi_{1 \to 0} \circ \Phi_{0 \to 1}(x_0)\big)_{ij}
              - x_{0,ij} \right|

    Args:
      vector_field, x0, solver, num_steps, rtol, atol, cond, max_steps: as :func:`sample`.

    Returns:
      Array of shape ``(B,)``: the max absolute error over each example's event entries.

    Raises:
      ValueError: as :func:`sample`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> v = lambda x, t: -x * t[:, None]
      >>> err = fm.sampling.round_trip_error(v, jnp.ones((5, 2)))
      >>> err.shape, bool(err.max() < 1e-4)
      ((5,), True)
    """
    options = dict(
        solver=solver, num_steps=num_steps, rtol=rtol, atol=atol, cond=cond, max_steps=max_steps
    )
    x1 = sample(vector_field, x0, **options).x
    back = encode(vector_field, x1, **options).x
    diff = jnp.abs(back - x0).reshape(x0.shape[0], -1)
    return diff.max(axis=1)
