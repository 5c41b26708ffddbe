r"""The one diffrax integration path of flowjax_fm (private).

Every ODE solve of the package (:func:`flowjax_fm.sampling.sample` and ``encode``,
:func:`flowjax_fm.likelihood.log_prob`, the flow metrics) goes through :func:`solve`:

.. math:: \frac{d y}{d t} = f(t, y), \qquad y(t_0) = y_0, \qquad \text{saved at } t_1
          \text{ or at the times } t_s

It owns what those callers used to write three times: solver resolution, the step-size
controller (adaptive or fixed steps, strings or diffrax objects), the first adaptive step
(Hairer's rule), the step cap, the adjoint (how the solve is differentiated), the save
times, the exact count of field evaluations, and one error policy.

Error policy: a solve *fails* when diffrax reports failure (step cap reached, step size
collapsed) or when a saved value is not finite (fixed-step solvers never reject a step, so
without this check ``nan`` would come back as success). With ``throw=True`` a failure raises
a ``RuntimeError`` through :func:`flowjax_fm._checks.fail_if` (:func:`equinox.error_if`), the
same inside and outside ``jax.jit`` (eagerly an ``equinox.EquinoxRuntimeError``, under
``jit`` a ``jax.errors.JaxRuntimeError``; both subclass ``RuntimeError`` and carry the
message); with ``throw=False`` nothing raises and ``success`` is False.

Dtype policy (:func:`prepare`): the state goes through :func:`flowjax_fm._checks.as_floating`
(a NumPy ``float64`` array with x64 off becomes ``float32``, as JAX casts it; integer states
are refused) and is integrated in its *working dtype*, at least ``float32``
(:func:`working_dtype`): a ``bfloat16`` / ``float16`` state is integrated in ``float32`` and
the callers cast their results back, so the output keeps the input's floating dtype.
Integrating in ``bfloat16`` itself was measured worse (an MLP-like rotation field, 256
points in 2D, max error against a float64-accurate solve: adaptive tsit5 at the default
``rtol = atol = 1e-5`` cannot meet its tolerance in ``bfloat16`` and stops at
``max_steps`` with error 5.3; at ``1e-2`` error 0.36 against 0.054 for the float32 solve
rounded to ``bfloat16``, whose rounding alone is 0.0075).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import (
    as_floating,
    check_batched,
    check_bool,
    check_int,
    check_real,
    fail_if,
    is_traced,
)
from flowjax_fm.sampling._solvers import evaluation_plan, resolve_solver

__all__ = [
    "ADJOINTS",
    "CONTROLLERS",
    "BatchedField",
    "Solution",
    "check_field",
    "check_options",
    "check_state",
    "initial_step",
    "prepare",
    "resolve_adjoint",
    "solve",
    "working_dtype",
]

ADJOINTS: dict[str, Callable[[], diffrax.AbstractAdjoint]] = {
    "recursive": diffrax.RecursiveCheckpointAdjoint,
    "direct": diffrax.DirectAdjoint,
    "forward": diffrax.ForwardMode,
    "backsolve": diffrax.BacksolveAdjoint,
}
CONTROLLERS = ("constant", "pid")

# adjoints that differentiate through the solver's own steps: a solver state computed before
# the loop (the first stage of an FSAL method, from the initial-step rule) may be passed in
_DISCRETE_ADJOINTS = (diffrax.RecursiveCheckpointAdjoint, diffrax.DirectAdjoint, diffrax.ForwardMode)


class BatchedField(eqx.Module):
    """diffrax's ``f(t, y, args)`` from a batched ``v(x, t[, cond=c])``.

    A module (pytree) rather than a closure, so that diffrax's compiled solve is reused
    across calls with the same vector field, and array leaves of the field (e.g. a Flax NNX
    model's parameters) are traced rather than baked in as constants. ``out_dtype``: None,
    or the working dtype to cast the field's output to (a ``bfloat16`` field of a
    ``bfloat16`` state integrated in ``float32``).
    """

    vector_field: Any
    has_cond: bool = eqx.field(static=True)
    out_dtype: Any = eqx.field(static=True, default=None)

    def __call__(self, t, y, args):
        t_batch = jnp.full((y.shape[0],), t, dtype=y.dtype)
        if self.has_cond:
            out = self.vector_field(y, t_batch, cond=args)
        else:
            out = self.vector_field(y, t_batch)
        return out if self.out_dtype is None else out.astype(self.out_dtype)


class Solution(NamedTuple):
    """What :func:`solve` returns.

    ``ys``: the saved states (a pytree shaped like ``y0`` with a leading time axis); ``ts``:
    the save times; ``nfe``: field evaluations (int32, exact when ``nfe_exact``);
    ``num_steps`` / ``num_rejected``: attempted / rejected steps; ``success``: bool scalar.
    """

    ys: Any
    ts: jax.Array
    nfe: jax.Array
    num_steps: jax.Array
    num_rejected: jax.Array
    success: jax.Array
    nfe_exact: bool


def working_dtype(dtype) -> np.dtype:
    """The dtype a state of ``dtype`` is integrated in: ``dtype``, at least ``float32``.

    Examples:
      >>> import jax.numpy as jnp
      >>> working_dtype(jnp.bfloat16), working_dtype(jnp.float32)
      (dtype('float32'), dtype('float32'))
    """
    return np.dtype(jnp.promote_types(dtype, jnp.float32))


def check_state(x0, name: str = "x0") -> jax.Array:
    """``x0`` by the dtype policy (:func:`~flowjax_fm._checks.as_floating`), shape ``(B, *event)``.

    Returns ``x0`` as a JAX floating array (its dtype kept; NumPy float64 cast as JAX casts it).

    Raises:
      ValueError: ``x0`` not floating point (quoting dtype and shape), not at least 2D, or an
        empty batch.
    """
    x0 = as_floating(name, x0)
    check_batched(name, x0)
    return x0


def check_field(vector_field, x0, cond, *, in_dtype=None) -> BatchedField:
    """Probe ``vector_field`` once at trace time (``jax.eval_shape``); a short ValueError if it fails.

    ``x0`` is the state in its working dtype. The field must return ``x0``'s shape, in
    ``x0``'s dtype or (when the input was of lower precision) in ``in_dtype``, which is then
    cast up. Returns the field as diffrax's ``f(t, y, args)`` (``args`` is ``cond``).

    Raises:
      TypeError: ``vector_field`` is not callable.
      ValueError: calling it fails, or its output has the wrong shape or dtype.
    """
    x0 = check_state(x0)
    if not callable(vector_field):
        raise TypeError(f"vector_field must be callable as v(x, t), got {type(vector_field).__name__}")
    field = BatchedField(vector_field, has_cond=cond is not None)
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
    low = in_dtype is not None and np.dtype(in_dtype) != x0.dtype
    ok_dtypes = (x0.dtype, np.dtype(in_dtype)) if low else (x0.dtype,)
    if not hasattr(out, "shape") or out.shape != x0.shape or out.dtype not in ok_dtypes:
        got = f"{tuple(out.shape)} {out.dtype}" if hasattr(out, "shape") else type(out).__name__
        note = (
            f" (a {np.dtype(in_dtype)} state is integrated in {x0.dtype}: the field is called "
            f"with {x0.dtype} x and may return {x0.dtype} or {np.dtype(in_dtype)})"
            if low else ""
        )
        raise ValueError(
            f"the vector field must return the shape and dtype of x, "
            f"{tuple(x0.shape)} {x0.dtype}; got {got}{note}"
        )
    if out.dtype != x0.dtype:
        field = BatchedField(vector_field, has_cond=cond is not None, out_dtype=x0.dtype)
    return field


def prepare(vector_field, x0, cond, *, name: str = "x0") -> tuple[BatchedField, jax.Array, np.dtype]:
    """The dtype policy of a solve: ``(field, x, dtype)``.

    ``x0`` is checked (:func:`check_state`) and cast to its :func:`working_dtype` (a no-op for
    ``float32`` / ``float64``); ``field`` is the probed :class:`BatchedField`; ``dtype`` is
    ``x0``'s own floating dtype, the dtype of the caller's results.

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> _, x, dtype = prepare(lambda x, t: -x, jnp.ones((2, 3), jnp.bfloat16), None)
      >>> x.dtype, dtype
      (dtype('float32'), dtype(bfloat16))
      >>> prepare(lambda x, t: -x, np.zeros((2, 3)), None)[1].dtype  # NumPy float64, x64 off
      dtype('float32')
    """
    x0 = check_state(x0, name)
    dtype = np.dtype(x0.dtype)
    work = working_dtype(dtype)
    x = x0 if work == dtype else x0.astype(work)
    return check_field(vector_field, x, cond, in_dtype=dtype), x, dtype


def check_options(*, rtol=1e-5, atol=1e-5, t0=0.0, t1=1.0, num_steps=None, max_steps=4096,
                  throw=True, names=("t0", "t1")) -> None:
    """The shared options of every solve, checked at trace time (ValueError naming each).

    ``rtol``, ``atol``: finite, > 0 (a traced tolerance passes); ``t0``, ``t1``: finite Python
    numbers that differ (they fix the solve's shape of work, so they cannot be traced);
    ``num_steps``: None or an int >= 1; ``max_steps``: None or an int >= 1; ``throw``: a bool.
    ``names``: what the caller calls ``t0`` and ``t1`` (``encode``: ``t_data``, ``t_source``).

    Examples:
      >>> check_options(rtol=-1.0)
      Traceback (most recent call last):
      ...
      ValueError: rtol must be a finite number in (0, inf), got -1.0
    """
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (type(tol) is float and 0.0 < tol < math.inf):  # the common case, fast
            check_real(name, tol, 0.0, low_open=True)
    for name, t in zip(names, (t0, t1), strict=True):
        if type(t) in (float, int) and math.isfinite(t):
            continue
        if is_traced(t):
            raise ValueError(f"{name} must be a concrete number (static under jit), got a traced value")
        check_real(name, t)
    if float(t0) == float(t1):
        raise ValueError(f"{names[0]} and {names[1]} must differ, got {names[0]} = {names[1]} = {float(t0)}")
    if num_steps is not None:
        check_int("num_steps", num_steps, 1)
    if max_steps is not None:
        check_int("max_steps", max_steps, 1)
    check_bool("throw", throw)


def resolve_adjoint(adjoint, fixed: bool) -> diffrax.AbstractAdjoint:
    """A diffrax adjoint from ``None``, a name in :data:`ADJOINTS`, or an adjoint object.

    ``None`` picks ``DirectAdjoint`` for fixed steps (forward *and* reverse mode; for a
    known number of steps it runs as fast as the default, measured) and diffrax's
    ``RecursiveCheckpointAdjoint`` (reverse mode only) for adaptive steps.
    """
    if adjoint is None:
        return diffrax.DirectAdjoint() if fixed else diffrax.RecursiveCheckpointAdjoint()
    if isinstance(adjoint, str):
        try:
            return ADJOINTS[adjoint.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown adjoint {adjoint!r}; valid names are {', '.join(ADJOINTS)} "
                "(or pass a diffrax adjoint object)"
            ) from None
    if isinstance(adjoint, diffrax.AbstractAdjoint):
        return adjoint
    raise ValueError(
        f"adjoint must be None, one of {', '.join(ADJOINTS)} or a diffrax adjoint object, "
        f"got {type(adjoint).__name__}"
    )


def _time_grid(ts, t0: float, t1: float, *, name: str = "ts"):
    """``ts`` checked against ``[t0, t1]`` (when concrete), end points snapped onto ``t0``/``t1``.

    Returns ``(ts, grid)``: the save times, and the step grid ``{t0} u ts u {t1}`` in order
    (``grid`` is ``ts`` itself when ``ts`` is traced: it must then start at t0 and end at t1).
    """
    if isinstance(ts, jax.core.Tracer):
        if ts.ndim != 1 or ts.shape[0] < 1:
            raise ValueError(f"{name} must be a 1D array of times, got shape {ts.shape}")
        return ts, ts
    arr = np.asarray(ts, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a 1D array of finite times, got shape {arr.shape}")
    sign = 1.0 if t1 > t0 else -1.0
    if arr.size > 1 and not np.all(sign * np.diff(arr) > 0):
        order = "increasing" if sign > 0 else "decreasing"
        raise ValueError(f"{name} must be strictly {order} (from t0={t0} to t1={t1}), got {arr}")
    slack = 1e-6 * max(1.0, abs(t1 - t0))
    lo, hi = min(t0, t1), max(t0, t1)
    if arr.min() < lo - slack or arr.max() > hi + slack:
        raise ValueError(f"{name} must lie within [t0, t1] = [{t0}, {t1}], got {arr}")
    arr = np.where(np.abs(arr - t0) <= slack, t0, arr)
    arr = np.where(np.abs(arr - t1) <= slack, t1, arr)
    grid = arr
    if grid[0] != t0:
        grid = np.concatenate([[t0], grid])
    if grid[-1] != t1:
        grid = np.concatenate([grid, [t1]])
    return arr, grid


def _rms(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    total = sum(jnp.sum(jnp.square(a)) for a in leaves)
    return jnp.sqrt(total / sum(a.size for a in leaves))


def initial_step(fn, t0, t1, y0, args, *, error_order, rtol, atol, norm=_rms):
    r"""The first step of an adaptive solve, by Hairer's rule; two evaluations of ``fn``.

    With :math:`s = \mathrm{atol} + \mathrm{rtol}\,|y_0|`, :math:`f_0 = f(t_0, y_0)`,
    :math:`d_0 = \lVert y_0 / s\rVert`, :math:`d_1 = \lVert f_0 / s\rVert`:

    .. math::
       h_0 = 0.01\, d_0 / d_1 \ (\text{or } 10^{-6} \text{ if either is below } 10^{-5}),
       \quad d_2 = \lVert (f(t_0 + h_0, y_0 + h_0 f_0) - f_0) / s\rVert / h_0,

       h = \min\big(100\, h_0,\ (0.01 / \max(d_1, d_2))^{1/q}\big)

    where :math:`q` is the order of the local error estimate (5 for Dopri5 and Tsit5), and
    :math:`h` is capped at :math:`|t_1 - t_0|`. (Hairer, Norsett and Wanner, *Solving
    Ordinary Differential Equations I*, II.4; torchdiffeq and diffrax use the same rule.)

    Args:
      fn: ``f(t, y, args)``; t0, t1: the span (``t1 < t0`` integrates backwards).
      y0: the initial state (a pytree); args: passed to ``fn``.
      error_order: ``q``; rtol, atol: the controller's tolerances; norm: of a pytree.

    Returns:
      ``(dt0, f0)``: the signed first step and :math:`f(t_0, y_0)` (to reuse as the first
      stage of a first-same-as-last method).

    Examples:
      >>> import jax.numpy as jnp
      >>> dt0, f0 = initial_step(lambda t, y, a: -y, 0.0, 1.0, jnp.ones(3), None,
      ...                        error_order=5, rtol=1e-3, atol=1e-3)
      >>> 0.0 < float(dt0) <= 1.0, f0.tolist()
      (True, [-1.0, -1.0, -1.0])
    """
    span = t1 - t0
    direction = 1.0 if span > 0 else -1.0
    f0 = fn(t0, y0, args)
    dtype = jnp.result_type(*jax.tree.leaves(y0))
    scale = jax.tree.map(lambda y: atol + rtol * jnp.abs(y), y0)
    divide = lambda a: jax.tree.map(lambda x, s: x / s, a, scale)
    d0, d1 = norm(divide(y0)), norm(divide(f0))
    tiny = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(tiny, 1e-6, 0.01 * d0 / jnp.where(tiny, 1.0, d1)).astype(dtype)
    y1 = jax.tree.map(lambda y, f: y + direction * h0 * f, y0, f0)
    f1 = fn(t0 + direction * h0, y1, args)
    d2 = norm(divide(jax.tree.map(lambda a, b: a - b, f1, f0))) / h0
    d_max = jnp.maximum(d1, d2)
    h1 = jnp.where(
        d_max <= 1e-15,
        jnp.maximum(1e-6, h0 * 1e-3),
        (0.01 / jnp.where(d_max <= 1e-15, 1.0, d_max)) ** (1.0 / error_order),
    )
    h = jnp.minimum(jnp.minimum(100.0 * h0, h1), abs(span))
    # non-finite input (then the solve fails anyway): a harmless finite first step
    h = jnp.where(jnp.isfinite(h) & (h > 0), h, 0.01 * abs(span))
    return direction * h, f0


class _Projected(diffrax.AbstractSolver):
    """A solver whose every accepted state is mapped by ``project`` (a manifold's ``projx``).

    Steps, error estimates and field evaluations are the inner solver's; the new state is
    projected after each step, and dense output between steps is linear between projected
    states (it is only read for save times inside a step of an adaptive solve).
    """

    inner: diffrax.AbstractSolver
    project: Callable = eqx.field(static=True)
    term_structure = diffrax.AbstractTerm
    interpolation_cls = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return self.inner.order(terms)

    def strong_order(self, terms):
        return self.inner.strong_order(terms)

    def error_order(self, terms):
        return self.inner.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.inner.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, _, state, result = self.inner.step(terms, t0, t1, y0, args, solver_state,
                                                        made_jump)
        y1 = self.project(y1)
        return y1, y_error, dict(y0=y0, y1=y1), state, result

    def func(self, terms, t0, y0, args):
        return self.inner.func(terms, t0, y0, args)


class _ProjectedAdaptive(_Projected, diffrax.AbstractAdaptiveSolver):
    """:class:`_Projected` around a solver with an error estimate."""


def project_solver(solver: diffrax.AbstractSolver, project: Callable) -> diffrax.AbstractSolver:
    """``solver`` with every accepted state mapped by ``project`` (see :class:`_Projected`)."""
    if isinstance(solver, diffrax.AbstractAdaptiveSolver):
        return _ProjectedAdaptive(solver, project)
    return _Projected(solver, project)


class _Plan(NamedTuple):
    controller: diffrax.AbstractStepSizeController
    fixed: bool
    dt0: float | None  # None: StepTo (fixed grid) or the initial-step rule (adaptive)
    cap: int | None


def _plan_steps(stepsize_controller, solver, *, num_steps, grid, t0, t1, rtol, atol, max_steps):
    """The controller, fixed or adaptive, the first step and the step cap of a solve."""
    c = stepsize_controller
    if isinstance(c, str):
        if c.lower() not in CONTROLLERS:
            raise ValueError(
                f"unknown stepsize_controller {c!r}; valid names are {', '.join(CONTROLLERS)} "
                "(or pass a diffrax step-size controller object)"
            )
        c = c.lower()
    elif c is not None and not isinstance(c, diffrax.AbstractStepSizeController):
        raise ValueError(
            f"stepsize_controller must be None, one of {', '.join(CONTROLLERS)} or a diffrax "
            f"step-size controller object, got {type(c).__name__}"
        )
    adaptive_solver = isinstance(solver, diffrax.AbstractAdaptiveSolver)
    if c is None:
        if num_steps is None and not adaptive_solver and grid is None:
            raise ValueError(
                f"solver {type(solver).__name__} has no error estimate, so it cannot take "
                "adaptive steps: pass num_steps=... (or ts=...) for fixed steps"
            )
        fixed = num_steps is not None or not adaptive_solver
    elif isinstance(c, diffrax.StepTo):
        if num_steps is not None or grid is not None:
            raise ValueError("a StepTo controller sets the steps: pass num_steps=None and ts=None")
        n = len(c.ts) - 1
        return _Plan(c, True, None, n)
    else:
        fixed = c == "constant" or isinstance(c, diffrax.ConstantStepSize)
    if fixed:
        if num_steps is not None and grid is not None:
            raise ValueError(
                "ts is the step grid of a fixed-step solve: pass num_steps=None with ts "
                "(the steps are the intervals of ts), or ts=None with num_steps"
            )
        if num_steps is not None:
            return _Plan(diffrax.ConstantStepSize(), True, (t1 - t0) / num_steps, num_steps)
        if grid is not None:
            return _Plan(diffrax.StepTo(ts=grid), True, None, int(grid.shape[0]) - 1)
        raise ValueError("a fixed-step solve needs num_steps=... or ts=... (the step grid)")
    if num_steps is not None:
        raise ValueError(
            f"num_steps={num_steps} asks for fixed steps, but the step-size controller is "
            "adaptive: pass num_steps=None, or stepsize_controller='constant'"
        )
    if not adaptive_solver:
        raise ValueError(
            f"solver {type(solver).__name__} has no error estimate, so it cannot take "
            "adaptive steps: pass num_steps=... for fixed steps"
        )
    controller = diffrax.PIDController(rtol=rtol, atol=atol) if c in (None, "pid") else c
    return _Plan(controller, False, None, max_steps)


def _tolerances(controller, rtol, atol):
    """``(rtol, atol, norm)`` of an adaptive controller (a PID one, possibly wrapped)."""
    inner = getattr(controller, "controller", controller)  # ClipStepSizeController
    return (getattr(inner, "rtol", rtol), getattr(inner, "atol", atol), getattr(inner, "norm", _rms))


def solve(
    fn,
    y0,
    *,
    args: Any = None,
    solver: str | diffrax.AbstractSolver = "tsit5",
    t0: float = 0.0,
    t1: float = 1.0,
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    save_ts=None,
    ts=None,
    stepsize_controller=None,
    adjoint=None,
    max_steps: int | None = 4096,
    throw: bool = True,
    what: str = "solve",
    checked: bool = False,
    project: Callable | None = None,
) -> Solution:
    r"""Solve :math:`dy/dt = f(t, y)` from ``t0`` to ``t1`` with diffrax: the package's one path.

    Fixed steps when ``num_steps`` is an int, ``ts`` is given with a solver or controller
    that cannot adapt (then ``ts`` is the step grid, diffrax ``StepTo``), or
    ``stepsize_controller`` is ``"constant"`` / a ``ConstantStepSize`` / a ``StepTo``;
    otherwise adaptive (``"pid"`` or a diffrax adaptive controller; by default a PID
    controller at ``rtol``/``atol``), starting from :func:`initial_step`.

    Field evaluations are counted from the steps diffrax attempted (see
    :func:`~flowjax_fm.sampling._solvers.evaluation_plan`), plus the two of the initial
    step rule; a first-same-as-last method reuses the rule's :math:`f(t_0, y_0)` as its
    first stage when the adjoint differentiates through the steps.

    Args:
      fn: ``f(t, y, args)``; y0: the initial state (a pytree of arrays).
      args: passed to ``fn``; solver: a name or a diffrax solver.
      t0, t1: the span; num_steps: fixed step count or None.
      rtol, atol: tolerances of the default PID controller.
      save_ts: times to save (in ``[t0, t1]``); never a step grid.
      ts: times to save that are also the step grid of a fixed-step solve.
      stepsize_controller: None, ``"constant"``, ``"pid"`` or a diffrax controller.
      adjoint: None, a name in :data:`ADJOINTS` or a diffrax adjoint (see
        :func:`resolve_adjoint`).
      max_steps: cap on attempted adaptive steps, an int >= 1 (None: no cap, no reverse
        mode); reaching it is a failure.
      throw: the error policy (module docstring), a bool.
      what: the caller's name, for the error message.
      checked: the caller has already run :func:`check_options` on these options.
      project: optional map applied to the state after every step (a manifold's
        ``projx``); the evaluation count is the inner solver's.

    Returns:
      A :class:`Solution`; without ``save_ts``/``ts``, ``ys`` holds the state at ``t1`` only.

    Raises:
      ValueError: a bad option (at trace time): unknown solver, controller or adjoint;
        ``rtol``/``atol`` not finite > 0; ``t0``/``t1`` not finite or equal; ``num_steps`` /
        ``max_steps`` not None or an int >= 1 (bool refused); ``throw`` not a bool.
      RuntimeError: (``throw=True``, at run time) the solve failed.

    Examples:
      >>> import jax.numpy as jnp
      >>> sol = solve(lambda t, y, a: -y, jnp.ones(2), solver="rk4", num_steps=10)
      >>> [round(float(v), 5) for v in sol.ys[-1]], int(sol.nfe), bool(sol.success)
      ([0.36788, 0.36788], 40, True)
      >>> sol = solve(lambda t, y, a: y * jnp.nan, jnp.ones(2), solver="rk4", num_steps=10,
      ...             throw=False)
      >>> bool(sol.success)
      False
    """
    solver_obj = resolve_solver(solver)
    if not checked:
        check_options(rtol=rtol, atol=atol, t0=t0, t1=t1, num_steps=num_steps,
                      max_steps=max_steps, throw=throw)
    t0, t1 = float(t0), float(t1)
    if ts is not None and save_ts is not None:
        raise ValueError("pass ts or save_ts, not both")
    dtype = jnp.result_type(*jax.tree.leaves(y0))
    grid = None
    if ts is not None:
        save_ts, grid = _time_grid(ts, t0, t1)
    elif save_ts is not None:
        save_ts, _ = _time_grid(save_ts, t0, t1)
    plan = _plan_steps(
        stepsize_controller, solver_obj, num_steps=None if num_steps is None else int(num_steps),
        grid=None if grid is None else jnp.asarray(grid, dtype), t0=t0, t1=t1, rtol=rtol,
        atol=atol, max_steps=max_steps,
    )
    adjoint_obj = resolve_adjoint(adjoint, plan.fixed)
    stages, fsal, exact = evaluation_plan(solver_obj)
    if project is not None:
        solver_obj = project_solver(solver_obj, project)

    dt0, solver_state, rule_evals, first_stage = plan.dt0, None, 0, 1 if fsal else 0
    if not plan.fixed:
        p_rtol, p_atol, norm = _tolerances(plan.controller, rtol, atol)
        order = solver_obj.error_order(diffrax.ODETerm(fn))
        dt0, f0 = initial_step(fn, t0, t1, y0, args, error_order=order or 1, rtol=p_rtol,
                               atol=p_atol, norm=norm)
        # the step size is a numerical choice: derivatives hold it fixed (f0 keeps its own)
        dt0 = jax.lax.stop_gradient(dt0)
        rule_evals = 2
        if fsal and exact and isinstance(adjoint_obj, _DISCRETE_ADJOINTS) and isinstance(
            getattr(solver_obj, "inner", solver_obj), diffrax.AbstractRungeKutta
        ):
            # diffrax's FSAL state: (first step?, stored first stage); handing it f0 saves
            # the re-evaluation of f(t0, y0) on the first step
            solver_state = (jnp.array(False), f0)
            first_stage = 0

    saveat = diffrax.SaveAt(t1=True) if save_ts is None else diffrax.SaveAt(ts=jnp.asarray(save_ts, dtype))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(fn),
        solver_obj,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        args=args,
        saveat=saveat,
        stepsize_controller=plan.controller,
        adjoint=adjoint_obj,
        max_steps=plan.cap,
        solver_state=solver_state,
        throw=False,
    )
    ys = sol.ys
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(ys)]))
    success = (sol.result == diffrax.RESULTS.successful) & finite
    name = type(getattr(solver_obj, "inner", solver_obj)).__name__
    if plan.fixed:
        msg = (f"{what}: the fixed-step {name} solve from t={t0} to t={t1} produced "
               "non-finite values; take more (smaller) steps, or check the vector field")
    else:
        msg = (f"{what}: the {name} solve from t={t0} to t={t1} failed (max_steps="
               f"{plan.cap} reached, step size collapsed, or non-finite values); raise "
               "max_steps, loosen rtol/atol, or use fixed num_steps")

    attempted = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    rejected = jnp.asarray(sol.stats["num_rejected_steps"], jnp.int32)
    # FSAL: s - 1 new stages per attempted step (a rejected step keeps the stored stage),
    # plus the very first stage unless it came from the initial-step rule
    per_step = stages - 1 if fsal else stages
    nfe = jnp.asarray(rule_evals + first_stage + per_step * attempted, jnp.int32)
    # the check is tied to every output: under jit a caller that reads only nfe (or success)
    # must not see it compiled away
    ys, ts, nfe, attempted, rejected, success = fail_if(
        (ys, sol.ts, nfe, attempted, rejected, success), jnp.logical_not(success), msg, bool(throw)
    )
    return Solution(
        ys=ys,
        ts=ts,
        nfe=nfe,
        num_steps=attempted,
        num_rejected=rejected,
        success=success,
        nfe_exact=exact,
    )
