r"""Diagnostics of a learned flow: path energy, straightness, curvature, NFE, one-call evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm import _ode
from flowjax_fm._checks import check_batched, check_finite, check_int
from flowjax_fm.sampling._sample import sample

__all__ = ["path_energy", "straightness", "curvature", "flow_integrals", "nfe_at_tolerance", "evaluate"]

VectorField = Callable[..., jax.Array]


class _Integrands(eqx.Module):
    """Dynamics of ``(x, energy, acceleration)``: ``||v||^2`` and ``||dv/dt + J v||^2`` per example."""

    field: _ode.BatchedField

    def __call__(self, t, y, args):
        x = y[0]
        batch = x.shape[0]
        # the velocity and its total time derivative along the path, in one jvp:
        # d/ds v(x + s v, t + s) = J v + dv/dt
        t = jnp.asarray(t, x.dtype)
        v, acc = jax.jvp(
            lambda z, s: self.field(s, z, args), (x, t), (self.field(t, x, args), jnp.ones_like(t))
        )
        sq = lambda a: jnp.sum(a.reshape(batch, -1) ** 2, axis=1)
        return v, sq(v), sq(acc)


def flow_integrals(
    vector_field: VectorField,
    x0: jax.Array,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    cond: Any = None,
    max_steps: int = 4096,
    throw: bool = True,
) -> dict[str, jax.Array]:
    r"""Per-example path integrals of a flow on :math:`[0, 1]`, from one augmented ODE solve.

    .. math::
       E_i = \int_0^1 \lVert v(x_t, t)\rVert^2 dt,\quad
       S_i = \int_0^1 \lVert (x_1 - x_0) - v(x_t, t)\rVert^2 dt = E_i - \lVert x_1 - x_0\rVert^2,
       \quad K_i = \int_0^1 \Big\lVert \tfrac{d}{dt} v(x_t, t) \Big\rVert^2 dt

    with :math:`\frac{d}{dt} v(x_t, t) = \partial_t v + (\nabla_x v)\, v` (one ``jax.jvp``).
    The identity for :math:`S_i` holds because :math:`\int_0^1 v\,dt = x_1 - x_0` exactly
    along the trajectory; it is clipped at 0 against rounding (:math:`S_i \ge 0` by Jensen).

    Dtypes and errors follow :func:`flowjax_fm.sampling.sample`: the results keep ``x0``'s
    floating dtype (a ``bfloat16`` ``x0`` is integrated in ``float32``); a failed solve
    (step cap, non-finite values, fixed steps included) raises with ``throw=True`` and is
    reported by ``success`` with ``throw=False``.

    Args:
      vector_field: ``v(x, t[, cond=c])``, ``x: (B, *event)``, ``t: (B,)``.
      x0: source points, ``(B, *event)``, floating point.
      solver, num_steps, rtol, atol, cond, max_steps, throw: as
        :func:`flowjax_fm.sampling.sample` (same ranges).

    Returns:
      dict of ``(B,)`` arrays ``energy``, ``straightness``, ``curvature``, the end points
      ``x1`` ``(B, *event)`` and ``success`` (a bool scalar, False only when ``throw=False``
      and the solve failed).

    Raises:
      ValueError: as :func:`flowjax_fm.sampling.sample`.
      RuntimeError: (at run time, ``throw=True``) the solve failed, as
        :func:`flowjax_fm.sampling.sample`.

    Examples:
      >>> import jax.numpy as jnp
      >>> v = lambda x, t: jnp.full_like(x, 2.0)
      >>> out = flow_integrals(v, jnp.zeros((3, 2)))
      >>> [round(float(out[k][0]), 4) for k in ("energy", "straightness", "curvature")]
      [8.0, 0.0, 0.0]
    """
    _ode.check_options(rtol=rtol, atol=atol, num_steps=num_steps, max_steps=max_steps, throw=throw)
    field, x0, dtype = _ode.prepare(vector_field, x0, cond)
    zeros = jnp.zeros((x0.shape[0],), x0.dtype)
    sol = _ode.solve(
        _Integrands(field), (x0, zeros, zeros), args=cond, solver=solver, t0=0.0, t1=1.0,
        num_steps=num_steps, rtol=rtol, atol=atol, max_steps=max_steps, throw=throw,
        what="fm.metrics.flow_integrals", checked=True,
    )
    x1, energy, acc = (y[-1] for y in sol.ys)
    disp = jnp.sum((x1 - x0).reshape(x0.shape[0], -1) ** 2, axis=1)
    out = {
        "energy": energy,
        "straightness": jnp.maximum(energy - disp, 0.0),
        "curvature": acc,
        "x1": x1,
    }
    out = {k: v.astype(dtype) for k, v in out.items()}
    out["success"] = sol.success
    return out


def _mean(integrals: dict, key: str, throw: bool) -> jax.Array:
    """The batch mean of ``integrals[key]``; ``nan`` when the solve failed (``throw=False``)."""
    value = integrals[key].mean()
    return value if throw else jnp.where(integrals["success"], value, jnp.nan)


def path_energy(vector_field: VectorField, x0: jax.Array, **kwargs) -> jax.Array:
    r"""Kinetic energy of the flow's trajectories, averaged over the batch.

    .. math:: \mathcal{E} = \frac1B \sum_{i=1}^{B} \int_0^1 \lVert v(x_t^{(i)}, t)\rVert^2 dt

    For a straight, constant-speed flow this equals the mean squared displacement
    :math:`\lVert x_1 - x_0\rVert^2`; it is the dynamic (Benamou--Brenier) cost of the flow,
    so it is at least :math:`W_2^2` between the source and the pushed-forward points.

    Args:
      vector_field: ``v(x, t[, cond=c])``; x0: source points ``(B, *event)``.
      **kwargs: ``solver``, ``num_steps``, ``rtol``, ``atol``, ``cond``, ``max_steps``,
        ``throw`` (as :func:`flow_integrals`).

    Returns:
      A scalar in ``x0``'s floating dtype; ``nan`` when ``throw=False`` and the solve failed.

    Raises:
      ValueError, RuntimeError: as :func:`flow_integrals`.

    Examples:
      >>> import jax.numpy as jnp
      >>> v = lambda x, t: jnp.ones_like(x) * jnp.array([3.0, 4.0])  # ||c||^2 = 25
      >>> round(float(path_energy(v, jnp.zeros((5, 2)))), 4)
      25.0
    """
    return _mean(flow_integrals(vector_field, x0, **kwargs), "energy", kwargs.get("throw", True))


def straightness(vector_field: VectorField, x0: jax.Array, **kwargs) -> jax.Array:
    r"""Liu et al.'s straightness: how far velocities stray from the end-to-end displacement.

    .. math:: S = \frac1B \sum_{i=1}^{B} \int_0^1
              \big\lVert (x_1^{(i)} - x_0^{(i)}) - v(x_t^{(i)}, t)\big\rVert^2 dt

    Zero exactly when every trajectory is a straight line travelled at constant speed (then
    one Euler step is exact). Computed as the path energy minus the squared displacement, so
    it carries a rounding error of about machine epsilon times the path energy.

    Args:
      vector_field, x0, **kwargs: as :func:`path_energy`.

    Returns:
      A scalar, ``>= 0``; ``nan`` when ``throw=False`` and the solve failed.

    Raises:
      ValueError, RuntimeError: as :func:`flow_integrals`.

    Examples:
      >>> import jax.numpy as jnp
      >>> rotate = lambda x, t: jnp.stack([-x[:, 1], x[:, 0]], axis=1)
      >>> round(float(straightness(lambda x, t: jnp.ones_like(x), jnp.zeros((4, 2)))), 5)
      0.0
      >>> bool(straightness(rotate, jnp.ones((4, 2))) > 0.1)
      True

    References:
      Liu et al. 2023, Flow Straight and Fast: Learning to Generate and Transfer Data with
      Rectified Flow.
    """
    return _mean(flow_integrals(vector_field, x0, **kwargs), "straightness", kwargs.get("throw", True))


def curvature(vector_field: VectorField, x0: jax.Array, **kwargs) -> jax.Array:
    r"""Mean squared acceleration along the flow's trajectories.

    .. math:: K = \frac1B \sum_{i=1}^{B} \int_0^1
              \big\lVert \partial_t v + (\nabla_x v)\, v \big\rVert^2_{(x_t^{(i)}, t)} dt

    Zero for straight constant-speed paths; positive when trajectories bend or change speed
    (a rotation :math:`v = \omega R x` has :math:`K = \omega^4 \lVert x\rVert^2`).

    Args:
      vector_field, x0, **kwargs: as :func:`path_energy`.

    Returns:
      A scalar, ``>= 0``; ``nan`` when ``throw=False`` and the solve failed.

    Raises:
      ValueError, RuntimeError: as :func:`flow_integrals`.

    Examples:
      >>> import jax.numpy as jnp
      >>> rotate = lambda x, t: jnp.stack([-x[:, 1], x[:, 0]], axis=1)
      >>> round(float(curvature(rotate, jnp.array([[1.0, 0.0]]))), 4)
      1.0
    """
    return _mean(flow_integrals(vector_field, x0, **kwargs), "curvature", kwargs.get("throw", True))


def nfe_at_tolerance(
    vector_field: VectorField,
    x0: jax.Array,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    *,
    solver: str | diffrax.AbstractSolver = "dopri5",
    cond: Any = None,
    max_steps: int = 4096,
    throw: bool = True,
) -> jax.Array:
    r"""Number of field evaluations an adaptive solver needs to generate from ``x0``.

    .. math:: \mathrm{NFE}(\mathrm{rtol}, \mathrm{atol}) = 2 + s \cdot \#\text{steps}
              \ (\text{less one per step for FSAL methods})

    (the 2 are the evaluations of the initial-step rule; see
    :func:`flowjax_fm.sampling.sample`).

    A practical measure of how hard the flow is to integrate: straighter flows need fewer.

    Args:
      vector_field: ``v(x, t[, cond=c])``; x0: source points ``(B, *event)``.
      rtol, atol: the adaptive controller's tolerances, finite > 0.
      solver: an adaptive solver (name or diffrax object).
      cond, max_steps: as :func:`flowjax_fm.sampling.sample`.
      throw: a bool: raise when the solve fails (``max_steps`` reached, non-finite values);
        with ``throw=False`` a failed solve returns ``-1``.

    Returns:
      An int32 scalar array (``-1``: the solve failed, ``throw=False``).

    Raises:
      ValueError: as :func:`flowjax_fm.sampling.sample`, or ``solver`` has no error estimate.
      RuntimeError: (at run time, ``throw=True``) the solve failed.

    Examples:
      >>> import jax.numpy as jnp
      >>> int(nfe_at_tolerance(lambda x, t: jnp.ones_like(x), jnp.zeros((2, 2)), 1e-3, 1e-3)) > 0
      True
    """
    res = sample(vector_field, x0, solver=solver, rtol=rtol, atol=atol, cond=cond,
                 max_steps=max_steps, throw=throw)
    return res.nfe if throw else jnp.where(res.success, res.nfe, -1)


def evaluate(
    vector_field: VectorField,
    x0: jax.Array,
    x_ref,
    *,
    solver: str | diffrax.AbstractSolver = "dopri5",
    num_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    cond: Any = None,
    max_exact: int = 4000,
    max_steps: int = 4096,
    throw: bool = True,
) -> dict[str, float]:
    r"""Generate from ``x0`` and report sample quality and flow diagnostics in one dict.

    .. math::
       W_2(\hat p_1, p_\mathrm{ref}),\ \mathrm{MMD}^2,\
       \mathcal{E} = \mathbb{E}\!\int\!\lVert v\rVert^2,\
       S = \mathbb{E}\!\int\!\lVert x_1 - x_0 - v\rVert^2,\
       K = \mathbb{E}\!\int\!\lVert \dot v\rVert^2,\ \mathrm{NFE}

    The generated points come from the same augmented solve as the path integrals
    (:func:`flow_integrals`); ``nfe`` is that of a plain adaptive :func:`~flowjax_fm.sampling.sample`
    at ``rtol``/``atol`` (or ``num_steps`` evaluations-worth with fixed steps). ``w2`` is exact
    when both sets have the same size of at most ``max_exact`` points, else Sinkhorn
    (``w2_method`` says which).

    Runs on the host (the Wasserstein distance is not traceable).

    Args:
      vector_field: ``v(x, t[, cond=c])``; x0: source points ``(B, *event)``.
      x_ref: reference data points ``(M, *event)`` (any finite real array, ``M >= 2``).
      solver, num_steps, rtol, atol, cond, max_steps: as :func:`flowjax_fm.sampling.sample`.
      max_exact: largest set size for the exact W2 (assignment, cubic time), an int >= 0.
      throw: a bool: raise when a solve fails (default); with ``throw=False`` a failed solve
        gives ``success`` False, ``nan`` for every float entry and ``nfe`` -1.

    Returns:
      dict with float ``w2``, ``mmd``, ``path_energy``, ``straightness``, ``curvature``, int
      ``nfe``, str ``w2_method`` and bool ``success``.

    Raises:
      ValueError: as :func:`flowjax_fm.sampling.sample`; ``x_ref`` not ``(M, *event)`` with
        ``x0``'s event shape, or holding NaN / inf; ``max_exact`` not an int >= 0.
      RuntimeError: (``throw=True``) a solve failed.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jax.random.normal(jax.random.key(0), (64, 2))
      >>> r = evaluate(lambda x, t: jnp.ones_like(x), x0, x0 + 1.0)
      >>> round(r["w2"], 4), r["w2_method"], round(r["straightness"], 4), round(r["path_energy"], 4)
      (0.0, 'exact', 0.0, 2.0)
    """
    from flowjax_fm.metrics._mmd import mmd
    from flowjax_fm.metrics._wasserstein import wasserstein

    max_exact = check_int("max_exact", max_exact, 0)
    x0 = _ode.check_state(x0)
    x_ref = np.asarray(x_ref)
    check_batched("x_ref", x_ref, what="(M, *event)")
    if tuple(x_ref.shape[1:]) != tuple(x0.shape[1:]):
        raise ValueError(
            f"x0 and x_ref must share the event shape, got {tuple(x0.shape)} and {x_ref.shape}"
        )
    check_finite("x_ref", x_ref)
    opts = dict(solver=solver, num_steps=num_steps, rtol=rtol, atol=atol, cond=cond,
                max_steps=max_steps, throw=throw)
    integrals = flow_integrals(vector_field, x0, **opts)
    if num_steps is None:
        nfe = int(nfe_at_tolerance(vector_field, x0, rtol, atol, solver=solver, cond=cond,
                                   max_steps=max_steps, throw=throw))
    else:
        res = sample(vector_field, x0, **opts)
        nfe = int(res.nfe) if bool(res.success) else -1
    n, m = len(x0), len(x_ref)
    method = "exact" if n == m and n <= max_exact else "sinkhorn"
    if not bool(integrals["success"]) or nfe < 0:  # throw=False and a solve failed
        nan = float("nan")
        return {"w2": nan, "w2_method": method, "mmd": nan, "path_energy": nan,
                "straightness": nan, "curvature": nan, "nfe": -1, "success": False}
    x1 = np.asarray(integrals["x1"], np.float32 if integrals["x1"].dtype.itemsize < 4 else None)
    flat = lambda a: a.reshape(len(a), -1)
    return {
        "w2": float(wasserstein(flat(x1), flat(x_ref), p=2, method=method)),
        "w2_method": method,
        "mmd": float(mmd(jnp.asarray(flat(x1)), jnp.asarray(flat(x_ref)))),
        "path_energy": float(integrals["energy"].mean()),
        "straightness": float(integrals["straightness"].mean()),
        "curvature": float(integrals["curvature"].mean()),
        "nfe": nfe,
        "success": True,
    }
