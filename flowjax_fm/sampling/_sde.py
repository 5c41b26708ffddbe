r"""Sample the bridge SDE of [SF]2M with diffrax, and its probability-flow ODE.

A flow :math:`v` and a score :math:`s \approx \nabla \log p_t` of the same marginals
:math:`p_t` (trained together by :class:`~flowjax_fm.losses.SF2MObjective`) define a family
of processes with those marginals: for any diffusion coefficient :math:`g(t)`,

.. math:: dx = \big[v(x, t) + \tfrac{g(t)^2}{2}\, s(x, t)\big]\, dt + g(t)\, dW_t

has marginals :math:`p_t` (its Fokker--Planck equation reduces to the continuity equation
of :math:`v`, because :math:`p\, \nabla \log p = \nabla p`), and :math:`g = 0` is the
flow's ODE. With :math:`g = \sigma`, the width of the Brownian-bridge path, it is the
Schrodinger bridge [SF]2M learns. :func:`sample_sde` integrates it;
:func:`probability_flow` turns a general SDE :math:`dx = f\, dt + g\, dW` and its score
into the ODE field :math:`f - \frac{g^2}{2} s` with the same marginals.

Times run from ``t = 0`` (source) to ``t = 1`` (data), as everywhere in flowjax_fm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from flowjax_fm import _ode
from flowjax_fm._checks import check_bool, check_int, check_key, check_real, fail_if, is_traced
from flowjax_fm.sampling._sample import SampleResult
from flowjax_fm.sampling._solvers import evaluation_plan

__all__ = ["SDE_SOLVER_NAMES", "probability_flow", "sample_sde"]

_SDE_SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "shark": diffrax.ShARK,
}
SDE_SOLVER_NAMES: tuple[str, ...] = tuple(_SDE_SOLVERS)

# Brownian objects from the cheapest up: the first that a solver accepts is drawn
_LEVY_AREAS = (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea, diffrax.SpaceTimeTimeLevyArea)


def _resolve_solver(solver) -> diffrax.AbstractSolver:
    if isinstance(solver, str):
        try:
            return _SDE_SOLVERS[solver.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown solver {solver!r}; valid names are {', '.join(SDE_SOLVER_NAMES)} "
                "(or pass a diffrax solver object, e.g. diffrax.SRA1())"
            ) from None
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    raise ValueError(
        f"solver must be one of {', '.join(SDE_SOLVER_NAMES)} or a diffrax solver object, got "
        f"{type(solver).__name__}"
    )


def _evaluations(solver) -> tuple[int, int, bool]:
    """``(per_step, initial, exact)``: drift evaluations of ``solver`` per attempted step,
    evaluations before the first step, and whether the count is exact."""
    if isinstance(solver, diffrax.Euler | diffrax.EulerHeun | diffrax.ItoMilstein
                  | diffrax.StratonovichMilstein):
        return 1, 0, True
    if isinstance(solver, diffrax.ReversibleHeun):
        return 1, 1, True
    if isinstance(solver, diffrax.AbstractSRK):
        tab = solver.tableau
        skipped = 0 if tab.ignore_stage_f is None else int(np.sum(tab.ignore_stage_f))
        return len(tab.b_sol) - skipped, 0, True
    if isinstance(solver, diffrax.AbstractRungeKutta):
        stages, fsal, exact = evaluation_plan(solver)
        return (stages - 1, 1, exact) if fsal else (stages, 0, exact)
    return 1, 0, False


def _levy_area(solver):
    minimal = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    for cls in _LEVY_AREAS:
        if issubclass(cls, minimal):
            return cls
    return diffrax.SpaceTimeTimeLevyArea  # pragma: no cover - diffrax has nothing richer


def _as_sigma(sigma, dtype):
    """A float ``sigma`` as a traced leaf (a new value reuses the compiled solve), checked
    ``>= 0`` when concrete; a function ``g(t)`` as it is."""
    if callable(sigma):
        return sigma
    check_real("sigma", sigma, 0.0)
    if is_traced(sigma):
        return jnp.asarray(sigma).astype(dtype)
    if np.ndim(sigma) != 0:
        raise ValueError(f"sigma must be a scalar or a function g(t), got shape {np.shape(sigma)}")
    return jnp.asarray(sigma, dtype)


def _check_sigma_fn(sigma, dtype) -> None:
    if not callable(sigma):
        return
    try:
        out = jax.eval_shape(sigma, jax.ShapeDtypeStruct((), dtype))
    except Exception as err:
        raise ValueError(
            f"calling sigma(t) with a scalar t failed: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        got = f"shape {out.shape} and dtype {out.dtype}" if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"sigma(t) must return a float scalar (shape ()) for a scalar t, got {got}")


def _g(sigma, t):
    return sigma(t) if callable(sigma) else sigma


def _call(fn, x, t, cond, has_cond):
    return fn(x, t, cond=cond) if has_cond else fn(x, t)


def _probe(name, fn, x, cond) -> None:
    """Probe ``fn(x, t[, cond=c])`` once (``jax.eval_shape``): a short ValueError if it fails
    or returns another shape than ``x``, or a non-float array."""
    if not callable(fn):
        raise TypeError(f"{name} must be a function {name}(x, t[, cond=c]), got {type(fn).__name__}")
    has_cond = cond is not None
    how = f"{name}(x, t, cond=cond)" if has_cond else f"{name}(x, t)"
    x_probe = jax.ShapeDtypeStruct(x.shape, x.dtype)
    t_probe = jax.ShapeDtypeStruct((x.shape[0],), x.dtype)
    try:
        out = jax.eval_shape(lambda y, t, c: _call(fn, y, t, c, has_cond), x_probe, t_probe, cond)
    except Exception as err:
        raise ValueError(
            f"calling {how} with x of shape {tuple(x.shape)} and t of shape ({x.shape[0]},) "
            f"failed: {type(err).__name__}: {err}"
        ) from err
    if not hasattr(out, "shape") or out.shape != x.shape or not jnp.issubdtype(out.dtype, jnp.floating):
        got = f"{tuple(out.shape)} {out.dtype}" if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"{name} must return x's shape {tuple(x.shape)} as floats, got {got}")


class _Diffusion(eqx.Module):
    """diffrax's diffusion ``g(t) I`` (diagonal, additive) in the solver's time ``tau = sign t``."""

    sigma: Any
    sign: float = eqx.field(static=True)

    def __call__(self, tau, y, args):
        g = jnp.asarray(_g(self.sigma, self.sign * tau), y.dtype)
        return lx.DiagonalLinearOperator(jnp.full(y.shape, g, y.dtype))


class _Drift(eqx.Module):
    r"""diffrax's drift ``sign * [drift + coef g^2 score](x, sign * tau)`` (see :func:`sample_sde`)."""

    drift: Any
    score: Any
    sigma: Any
    coef: float = eqx.field(static=True)
    sign: float = eqx.field(static=True)
    has_cond: bool = eqx.field(static=True)

    def __call__(self, tau, y, args):
        t = self.sign * tau
        t_batch = jnp.full((y.shape[0],), t, y.dtype)
        f = _call(self.drift, y, t_batch, args, self.has_cond).astype(y.dtype)
        if self.score is not None:
            g2 = jnp.square(jnp.asarray(_g(self.sigma, t), y.dtype))
            s = _call(self.score, y, t_batch, args, self.has_cond).astype(y.dtype)
            f = f + (self.coef * g2) * s
        return self.sign * f


def sample_sde(
    drift: Callable,
    score: Callable | None,
    x0: jax.Array,
    *,
    sigma: float | Callable,
    key: jax.Array,
    num_steps: int = 100,
    solver: str | diffrax.AbstractSolver = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    adaptive: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    cond: Any = None,
    save_trajectory: bool = False,
    throw: bool = True,
    reverse: bool | None = None,
    brownian_tol: float | None = None,
    max_steps: int = 4096,
) -> SampleResult:
    r"""Integrate the bridge SDE of a flow and a score from ``t0`` to ``t1``.

    For ``t1 > t0`` (forward in time) this solves, for the whole batch,

    .. math:: dx = \big[\mathrm{drift}(x, t) + \tfrac{g(t)^2}{2}\, \mathrm{score}(x, t)\big]
       \, dt + g(t)\, dW_t, \qquad x_{t_0} = x_0,

    with :math:`g` = ``sigma`` (a number, or a function of ``t``) and :math:`W` a Brownian
    motion in the event's shape (independent coordinates). With ``drift`` a flow
    :math:`v` and ``score`` :math:`\nabla \log p_t` of the same marginals, the marginals of
    :math:`x_t` are :math:`p_t` for any :math:`g` ([SF]2M's bridge SDE for :math:`g =
    \sigma`, torchcfm's ``torchsde`` sampling). ``score=None`` integrates
    :math:`dx = \mathrm{drift}\, dt + g\, dW` (pass any drift you built yourself).

    **Reverse time.** ``t0 > t1`` integrates backwards (negative steps): by default
    (``reverse=None``, read as ``t0 > t1``) it integrates the *time reversal* of the forward
    SDE above (Anderson 1982): for :math:`dx = f\, dt + g\, dW` the reversal is
    :math:`dx = [f - g^2 \nabla\log p_t]\, dt + g\, d\bar W` with :math:`dt < 0`, here

    .. math:: dx = \big[\mathrm{drift} - \tfrac{g^2}{2}\, \mathrm{score}\big]\, dt
       + g\, d\bar W_t,

    so samples of :math:`p_1` at ``t0 = 1`` come out as samples of :math:`p_0` at
    ``t1 = 0``: the same marginals in the other direction. ``reverse=False`` with
    ``t0 > t1`` integrates the forward formula literally backwards (rarely what you want);
    ``reverse=True`` with ``t0 < t1`` uses the reversal's sign forwards. With ``score=None``
    ``reverse`` changes nothing: the drift is yours. Internally the solve runs in
    :math:`\tau = -t` (increasing), so every diffrax solver sees an ordinary forward solve.

    **Solvers.** ``"euler"`` is Euler--Maruyama (one drift evaluation per step, strong
    order 1/2); ``"heun"`` (two evaluations, has an error estimate) and ``"shark"``
    (ShARK, two evaluations, draws space-time Levy area) are higher order; any diffrax
    SDE solver object works (``diffrax.SRA1()``, ``diffrax.SPaRK()``...). The noise is
    additive (:math:`g` does not depend on :math:`x`), where the Ito and Stratonovich
    solutions agree, so Stratonovich solvers (Heun, ShARK, SRA1) converge to the right
    process, with strong order 1 or 1.5 there.

    **Steps.** ``adaptive=False``: ``num_steps`` equal steps. ``adaptive=True``: a PID
    controller (``rtol``, ``atol``) on a solver with an error estimate (``"heun"``,
    ``diffrax.SPaRK()``), starting from ``dt = (t1 - t0) / num_steps``, at most
    ``max_steps`` attempted steps and none below ``brownian_tol``.

    **Noise.** A :class:`diffrax.VirtualBrownianTree` keyed by ``key``: the same key gives
    the same Brownian path (and the same samples), a different key an independent one, and
    the path does not depend on the solver's steps. Its resolution ``brownian_tol``
    defaults to half a step (``|t1 - t0| / (2 num_steps)``, where the increments between
    grid points are exact in distribution) or, adaptive, a sixteenth of the first step.

    **Evaluations.** ``nfe`` counts drift evaluations, each one call of ``drift`` and one
    of ``score`` on the whole batch (evaluations of ``sigma`` are not counted): one per
    step for Euler--Maruyama, the number of drift stages per attempted step for
    Runge--Kutta solvers (two for Heun and ShARK), exact for diffrax's explicit SDE solvers
    (``nfe_exact``; an estimate of one per step for others).

    **Compilation.** The solve is compiled once per configuration (shapes, solver, steps,
    direction) and function objects: pass the same ``drift``, ``score`` (and ``sigma``
    function) between calls to reuse it, since a fresh closure recompiles; a float
    ``sigma`` and ``key`` are traced values. ``sample_sde`` also runs inside ``jax.jit``
    (options other than ``x0``, ``key``, ``sigma`` and ``cond`` static).

    Errors: as :func:`~flowjax_fm.sampling.sample`: a non-finite result (or, adaptive, the
    step cap) raises a ``RuntimeError`` when ``throw`` (eagerly and under ``jax.jit``), or
    gives ``success = False``.

    Args:
      drift: ``drift(x, t) -> (B, *event)`` (``drift(x, t, cond=c)`` with ``cond``),
        ``x: (B, *event)``, ``t: (B,)`` (all entries equal).
      score: ``score(x, t)`` of the same form, or ``None``.
      x0: initial state ``(B, *event)``, floating point (a NumPy ``float64`` array with x64
        off becomes ``float32``; ``bfloat16`` / ``float16`` is integrated in ``float32`` and
        cast back).
      sigma: :math:`g`: a finite number ``>= 0``, or a function ``g(t)`` of a scalar time
        returning a scalar (then called at the solver's stages).
      key: a ``jax.random.key`` for the Brownian path.
      num_steps: the number of steps (adaptive: the first step ``(t1 - t0) / num_steps``),
        an int ``>= 1``; also the number of saved intervals with ``save_trajectory``.
      solver: a name in :data:`SDE_SOLVER_NAMES` or a diffrax solver object.
      t0, t1: finite numbers that differ (static under ``jit``).
      adaptive: a bool, see above.
      rtol, atol: the controller's tolerances (adaptive only), finite > 0.
      cond: optional condition, passed to ``drift`` and ``score`` as ``cond=``.
      save_trajectory: also return the states at ``num_steps + 1`` evenly spaced times.
      throw: a bool, the error policy above.
      reverse: ``None`` (``t0 > t1``), ``True`` or ``False``: the sign of the score term.
      brownian_tol: ``None`` or the Brownian tree's resolution, finite > 0.
      max_steps: cap on attempted adaptive steps, an int ``>= 1``.

    Returns:
      A :class:`~flowjax_fm.sampling.SampleResult`: ``x`` (at ``t1``, ``x0``'s dtype),
      ``nfe``, ``trajectory`` / ``ts`` (``(num_steps + 1, B, *event)`` and the times, with
      ``save_trajectory``), ``num_steps`` and ``num_rejected`` (attempted and rejected
      steps), ``success``, ``nfe_exact``.

    Raises:
      TypeError: ``drift`` or ``score`` (when not ``None``) not callable; ``key`` not one
        random key.
      ValueError: at trace time, ``x0`` not a float batch; ``sigma`` negative or not finite,
        or a ``sigma(t)`` that does not return a float scalar; ``drift`` / ``score`` failing
        on ``x`` or returning another shape (quoted); an unknown solver name or a
        non-solver; ``adaptive`` with a solver without an error estimate; ``num_steps`` /
        ``max_steps`` not ints ``>= 1``; ``t0 == t1`` or not finite; ``rtol`` / ``atol`` /
        ``brownian_tol`` not finite > 0; ``adaptive`` / ``save_trajectory`` / ``throw`` /
        ``reverse`` not bools.
      RuntimeError: at run time with ``throw=True``, a failed solve.

    Examples:
      Brownian motion from 0 (``drift = 0``, no score): the variance at ``t = 1`` is
      ``sigma^2 = 4`` (standard error 0.09 with 4000 samples).

      >>> import jax, jax.numpy as jnp
      >>> zero = lambda x, t: jnp.zeros_like(x)
      >>> res = sample_sde(zero, None, jnp.zeros((4000, 1)), sigma=2.0,
      ...                  key=jax.random.key(0), num_steps=4)
      >>> bool(abs(res.x.var() - 4.0) < 0.3), int(res.nfe)
      (True, 4)

      A flow and a score of the same marginals (here :math:`p_t = N(0, 1)` at every
      ``t``: :math:`v = 0`, :math:`s = -x`) keep the marginals, for any ``sigma``:

      >>> res = sample_sde(zero, lambda x, t: -x, jax.random.normal(jax.random.key(1), (4000, 1)),
      ...                  sigma=1.0, key=jax.random.key(2), num_steps=20, solver="heun")
      >>> round(float(res.x.std()), 1), int(res.nfe)
      (1.0, 40)

    References:
      Tong et al. 2024, Simulation-Free Schrodinger Bridges via Score and Flow Matching;
      Anderson 1982, Reverse-time diffusion equation models; Song et al. 2021, Score-Based
      Generative Modeling through Stochastic Differential Equations.
    """
    solver_obj = _resolve_solver(solver)
    if score is not None and not callable(score):
        raise TypeError(f"score must be None or a function score(x, t[, cond=c]), got {type(score).__name__}")
    check_key(key)
    _ode.check_options(rtol=rtol, atol=atol, t0=t0, t1=t1, num_steps=num_steps,
                       max_steps=max_steps, throw=throw)
    if num_steps is None:
        check_int("num_steps", num_steps, 1)
    check_bool("adaptive", adaptive)
    check_bool("save_trajectory", save_trajectory)
    if reverse is not None:
        check_bool("reverse", reverse)
    check_real("brownian_tol", brownian_tol, 0.0, low_open=True, none_ok=True)
    x = _ode.check_state(x0)
    dtype = np.dtype(x.dtype)
    work = _ode.working_dtype(dtype)
    x = x if work == dtype else x.astype(work)
    sig = _as_sigma(sigma, work)
    _check_sigma_fn(sig, work)
    _probe("drift", drift, x, cond)
    if score is not None:
        _probe("score", score, x, cond)
    if adaptive and not isinstance(solver_obj, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"solver {type(solver_obj).__name__} has no error estimate, so it cannot take adaptive "
            "steps: use solver='heun' (or diffrax.SPaRK()), or adaptive=False"
        )

    t0, t1 = float(t0), float(t1)
    sign = 1.0 if t1 > t0 else -1.0
    backwards = (t0 > t1) if reverse is None else bool(reverse)
    tau0, tau1 = sign * t0, sign * t1  # tau0 < tau1
    span = tau1 - tau0
    n = int(num_steps)
    tol = brownian_tol if brownian_tol is not None else span / (n * (16 if adaptive else 2))
    brownian = diffrax.VirtualBrownianTree(
        tau0, tau1, tol=tol, shape=jax.ShapeDtypeStruct(x.shape, work), key=key,
        levy_area=_levy_area(solver_obj),
    )
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(_Drift(drift, score, sig, -0.5 if backwards else 0.5, sign,
                               cond is not None)),
        diffrax.ControlTerm(_Diffusion(sig, sign), brownian),
    )
    grid = jnp.asarray(np.linspace(tau0, tau1, n + 1), work)
    if adaptive:
        controller = diffrax.PIDController(rtol=rtol, atol=atol, dtmin=tol)
        dt0, cap = span / n, int(max_steps)
    else:
        controller, dt0, cap = diffrax.StepTo(ts=grid), None, n
    saveat = diffrax.SaveAt(ts=grid) if save_trajectory else diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        terms, solver_obj, t0=grid[0], t1=grid[-1], dt0=dt0, y0=x, args=cond, saveat=saveat,
        stepsize_controller=controller, max_steps=cap, throw=False,
    )
    ys = sol.ys
    success = (sol.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(ys))
    name = type(solver_obj).__name__
    msg = (f"sample_sde: the {'adaptive' if adaptive else 'fixed-step'} {name} solve from t={t0} "
           f"to t={t1} failed (non-finite values{', or max_steps reached' if adaptive else ''}); "
           "take more (smaller) steps, or check drift, score and sigma")
    per_step, initial, exact = _evaluations(solver_obj)
    attempted = jnp.asarray(sol.stats["num_steps"], jnp.int32)
    rejected = jnp.asarray(sol.stats["num_rejected_steps"], jnp.int32)
    nfe = jnp.asarray(initial + per_step * attempted, jnp.int32)
    ys, nfe, attempted, rejected, success = fail_if(
        (ys, nfe, attempted, rejected, success), jnp.logical_not(success), msg, bool(throw)
    )
    ys = ys if work == dtype else ys.astype(dtype)
    return SampleResult(
        x=ys[-1],
        nfe=nfe,
        trajectory=ys if save_trajectory else None,
        ts=sign * sol.ts if save_trajectory else None,
        num_steps=attempted,
        num_rejected=rejected,
        success=success,
        nfe_exact=exact,
    )


class _ProbabilityFlow(eqx.Module):
    r"""The field :math:`f - \frac{g^2}{2} s` (see :func:`probability_flow`)."""

    drift: Any
    score: Any
    sigma: Any

    def __call__(self, x, t, cond=None):
        from flowjax_fm.losses import call_field

        f = call_field(self.drift, x, t, cond)
        s = call_field(self.score, x, t, cond)
        for name, out in (("drift", f), ("score", s)):
            if jnp.shape(out) != jnp.shape(x):
                raise ValueError(f"{name} must return x's shape {jnp.shape(x)}, got {jnp.shape(out)}")
        if callable(self.sigma):
            g = jax.vmap(self.sigma)(t)
            if jnp.shape(g) != jnp.shape(t):
                raise ValueError(
                    f"sigma(t) must return a scalar for a scalar t, got shape {jnp.shape(g)[1:]}"
                )
            g2 = jnp.square(g).reshape(jnp.shape(t) + (1,) * (x.ndim - 1))
        else:
            g2 = jnp.square(self.sigma)
        return (f - 0.5 * g2 * s).astype(jnp.result_type(f))


def probability_flow(drift: Callable, score: Callable, sigma: float | Callable) -> Callable:
    r"""The probability-flow ODE field of an SDE: the same marginals, no noise.

    For :math:`dx = f(x, t)\, dt + g(t)\, dW_t` with marginals :math:`p_t`,

    .. math:: \frac{dx}{dt} = f(x, t) - \frac{g(t)^2}{2}\, \nabla_x \log p_t(x)

    has the same marginals (Song et al. 2021, eq. 13): both Fokker--Planck equations are
    :math:`\partial_t p = -\nabla \cdot (p\, [f - \frac{g^2}{2} \nabla \log p])`. Here
    ``drift`` is the SDE's **full** drift :math:`f`. For the bridge SDE of
    :func:`sample_sde`, :math:`f = v + \frac{g^2}{2} s`, the field is the flow :math:`v`
    itself: an [SF]2M model samples its ODE as ``fm.sampling.sample(v, x0)``; this function
    is for SDEs given by their full drift (a diffusion model's forward SDE, or
    ``lambda x, t: v(x, t) + sigma**2 / 2 * s(x, t)``).

    Args:
      drift: :math:`f(x, t[, cond=c])`, batched (``t`` of shape ``(B,)``).
      score: :math:`\nabla \log p_t`, of the same form.
      sigma: :math:`g`, a finite number ``>= 0`` or a function of a scalar ``t``.

    Returns:
      A field ``v(x, t, cond=None)`` for :func:`~flowjax_fm.sampling.sample` (an equinox
      module: the same ``drift`` and ``score`` reuse a compiled solve, and a float
      ``sigma`` is a traced leaf).

    Raises:
      TypeError: ``drift`` or ``score`` not callable.
      ValueError: ``sigma`` negative or not finite; when called, outputs not of ``x``'s
        shape or a ``sigma(t)`` that is not scalar.

    Examples:
      The Ornstein--Uhlenbeck SDE :math:`dx = -x\, dt + \sqrt 2\, dW` keeps
      :math:`N(0, 1)` (score :math:`-x`); its probability-flow field is zero:

      >>> import jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> field = probability_flow(lambda x, t: -x, lambda x, t: -x, 2.0 ** 0.5)
      >>> res = fm.sampling.sample(field, jnp.array([[0.3], [-1.2]]), solver="euler", num_steps=4)
      >>> [round(float(v), 5) for v in res.x[:, 0]]
      [0.3, -1.2]

    References:
      Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole 2021, Score-Based Generative
      Modeling through Stochastic Differential Equations.
    """
    if not callable(drift):
        raise TypeError(f"drift must be a function drift(x, t[, cond=c]), got {type(drift).__name__}")
    if not callable(score):
        raise TypeError(f"score must be a function score(x, t[, cond=c]), got {type(score).__name__}")
    if not callable(sigma):
        check_real("sigma", sigma, 0.0)
        if np.ndim(sigma) != 0:
            raise ValueError(f"sigma must be a scalar or a function g(t), got shape {np.shape(sigma)}")
        sigma = jnp.asarray(sigma) if is_traced(sigma) else jnp.asarray(sigma, jnp.float32)
    return _ProbabilityFlow(drift, score, sigma)
