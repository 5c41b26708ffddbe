"""Exact minibatch optimal transport between equal-size samples: the linear assignment problem.

One solver policy serves both the coupling (:func:`solve_assignment`, hence
:class:`~flowjax_fm.couplings.ExactOTCoupling`) and the metric
(:func:`flowjax_fm.metrics.wasserstein`): ``solver`` is ``"auto"``, ``"c"``, ``"scipy"``,
``"jax"`` or ``"auction"``, resolved by :func:`resolve_solver`.
"""

from __future__ import annotations

import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_choice, fail_if

__all__ = ["SOLVERS", "CompiledSolverMissingWarning", "resolve_solver", "solve_assignment"]

SOLVERS = ("auto", "c", "scipy", "jax", "auction")

_BUILD_HINT = (
    "the compiled assignment solver flowjax_fm.couplings._lap is missing; build it with "
    "`pip install -e .` (or `pip install .`) from the flowjax_fm source tree, which compiles "
    "flowjax_fm/couplings/_csrc/lap.c (a C compiler is needed), or pass solver='scipy' or "
    "solver='jax'"
)

class CompiledSolverMissingWarning(UserWarning):
    """``solver="auto"`` fell back to scipy: the compiled assignment solver is not built."""


_fallback_warned = False  # the fallback warns once per process


def _load_extension():
    """The compiled solver module; an ImportError that says how to build it."""
    try:
        return importlib.import_module("flowjax_fm.couplings._lap")
    except ImportError as err:
        raise ImportError(_BUILD_HINT) from err


def resolve_solver(solver: str, name: str = "solver") -> str:
    """The concrete assignment solver that ``solver`` stands for: ``"c"``, ``"scipy"``, ``"jax"``
    or ``"auction"``.

    ``"auto"`` is the compiled C solver when it is built, else scipy's
    ``linear_sum_assignment`` (the same optimum, slower), with one
    :class:`CompiledSolverMissingWarning` per process saying how to build it. ``"c"`` insists on
    the compiled solver.

    Raises:
      ValueError: ``solver`` is not one of ``"auto"``, ``"c"``, ``"scipy"``, ``"jax"``,
        ``"auction"``.
      ImportError: ``solver="c"`` and the extension is not built (the message says how to
        build it).

    Warns:
      CompiledSolverMissingWarning: ``solver="auto"`` without the extension (once).

    Examples:
      >>> resolve_solver("scipy"), resolve_solver("auto")  # the extension is built here
      ('scipy', 'c')
    """
    global _fallback_warned
    check_choice(name, solver, SOLVERS)
    if solver == "auto":
        try:
            _load_extension()
        except ImportError:
            if not _fallback_warned:
                _fallback_warned = True
                warnings.warn(
                    f"{_BUILD_HINT}; using scipy.optimize.linear_sum_assignment instead (same "
                    "optimum, slower); this warning is shown once",
                    CompiledSolverMissingWarning,
                    stacklevel=3,
                )
            return "scipy"
        return "c"
    if solver == "c":
        _load_extension()
    return solver


_NON_FINITE = (
    "solve_assignment: the cost matrix has a non-finite entry (nan or inf), or a range "
    "max - min that overflows float64, so it has no optimal assignment; check the data "
    "(or the cost) for nan / inf"
)


def _finite(flat: np.ndarray) -> np.ndarray:
    """Per problem of a ``(batch, n, n)`` stack: every entry and the range are finite."""
    rows = flat.reshape(flat.shape[0], -1)
    return np.isfinite(rows).all(axis=1) & np.isfinite(rows.max(axis=1) - rows.min(axis=1))


def _c_solve(lap, flat: np.ndarray) -> np.ndarray:
    """The C solver on a stack; a problem it refuses (non-finite) gets the row ``-1``."""
    out = np.empty(flat.shape[:2], dtype=np.int32)
    try:
        lap.solve(flat, out, flat.shape[0], flat.shape[1])
    except ValueError:  # the C loop stops at the first bad problem: redo them one by one
        for k in range(flat.shape[0]):
            try:
                lap.solve(flat[k : k + 1], out[k : k + 1], 1, flat.shape[1])
            except ValueError:
                out[k] = -1
    return out


def _host_c(cost: np.ndarray) -> np.ndarray:
    """The C solver on a cost ``(..., n, n)``; a problem with a non-finite cost gets ``-1``."""
    lap = _load_extension()
    cost = np.asarray(cost)
    *batch, n, _ = cost.shape
    flat = np.ascontiguousarray(cost.reshape(-1, n, n), dtype=np.float64)
    return _c_solve(lap, flat).reshape(*batch, n)


def _host_scipy(cost: np.ndarray) -> np.ndarray:
    """scipy on a cost ``(..., n, n)``; a problem with a non-finite cost gets ``-1``."""
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost)
    *batch, n, _ = cost.shape
    flat = np.asarray(cost.reshape(-1, n, n), dtype=np.float64)
    out = np.full(flat.shape[:2], -1, dtype=np.int32)
    for b in np.flatnonzero(_finite(flat)):
        rows, cols = linear_sum_assignment(flat[b])
        out[b, rows] = cols
    return out.reshape(*batch, n)


def _jax_hungarian(cost: jax.Array) -> jax.Array:
    from optax.assignment import hungarian_algorithm

    finite = jnp.isfinite(cost).all() & jnp.isfinite(cost.max() - cost.min())
    cost = fail_if(cost, ~finite, _NON_FINITE)
    rows, cols = hungarian_algorithm(cost)
    return jnp.zeros(cost.shape[0], jnp.int32).at[rows].set(cols.astype(jnp.int32))


def _auction_perm(cost: jax.Array) -> jax.Array:
    from flowjax_fm.couplings._auction import auction_assignment

    return auction_assignment(cost).perm


def host_assignment(cost: np.ndarray, solver: str = "auto") -> np.ndarray:
    """The assignment of a NumPy cost ``(n, n)`` (or a batch ``(..., n, n)``), on the host.

    The same solvers as :func:`solve_assignment` without the round trip through JAX (used by
    :func:`flowjax_fm.metrics.wasserstein`); ``solver`` as in :func:`resolve_solver`.

    Raises:
      ValueError: a non-finite cost (or range), or an unknown ``solver``.
    """
    concrete = resolve_solver(solver)
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[-1]
    if n <= 1:
        return np.zeros(cost.shape[:-1], np.int32)
    if not _finite(cost.reshape(-1, n, n)).all():
        raise ValueError(_NON_FINITE.replace("solve_assignment: ", ""))
    if concrete == "jax":
        with jax.enable_x64(True):
            return np.asarray(jax.jit(jnp.vectorize(_jax_hungarian, signature="(n,n)->(n)"))(cost))
    if concrete == "auction":  # float64 costs on the int64 grid: the finest tolerance it has
        with jax.enable_x64(True):
            return np.asarray(jax.jit(jnp.vectorize(_auction_perm, signature="(n,n)->(n)"))(cost))
    return _host_c(cost) if concrete == "c" else _host_scipy(cost)


def solve_assignment(cost: jax.Array, method: str = "auto") -> jax.Array:
    r"""Exact solution of the linear assignment problem (exact minibatch OT).

    Finds the permutation that pairs each row with one column at least total cost,

    .. math:: \sigma^\star = \arg\min_{\sigma \in S_n} \sum_{i=1}^n C_{i \sigma(i)},

    which is the exact optimal transport plan between two uniform empirical measures with
    ``n`` points each (the plan is ``1/n`` on the pairs ``(i, sigma(i))``).

    **Solver policy** (shared with :func:`flowjax_fm.metrics.wasserstein`): ``method="c"`` is a
    compiled C routine run on the host through :func:`jax.pure_callback`, so it works inside
    :func:`jax.jit` on any backend (on GPU/TPU the ``n x n`` cost goes to the host and ``n``
    indices come back). It runs a forward auction with epsilon-scaling for a near-optimal
    start, then a Hungarian (Jonker-Volgenant) shortest-augmenting-path repair from the
    auction's prices, which makes the result exactly optimal for the floating-point costs
    (up to rounding of the reduced costs, ~1e-16 of the cost range), ties and degenerate costs
    included. float32 costs are widened to float64 exactly before solving. Under
    :func:`jax.vmap` the whole batch is solved in one host call (a C loop, GIL released).
    ``method="auto"`` (default) is ``"c"`` when the extension is built, else ``"scipy"`` with
    one :class:`CompiledSolverMissingWarning` per process. ``method="scipy"`` uses
    :func:`scipy.optimize.linear_sum_assignment` through the same callback (a reference);
    ``method="jax"`` uses optax's pure-JAX Hungarian algorithm
    (:func:`optax.assignment.hungarian_algorithm`; no host round trip, but much slower on
    CPU: about 50 ms at ``n = 256``). ``method="auction"`` is
    :func:`~flowjax_fm.couplings.auction_assignment` with its defaults: a pure-JAX forward
    auction (no host round trip, vmappable, for accelerators), optimal to within a stated
    tolerance rather than exactly (about ``1e-6`` of the cost range, with a floor of
    ``2 n 2^-27 max|C|`` in float32; see there), and on one CPU core far slower than ``"c"``.

    **Cost range.** The auction's prices grow to the scale of the cost range ``max C - min C``,
    so when the range dwarfs the optimum (one entry of ``1e16`` among entries of order 1),
    the rounding of the reduced costs would become part of the optimum (measured 1.5% to 40%
    above it at a range of ``1e16``). ``"c"`` therefore checks the cost ``T`` of the assignment
    found (above ``n min C``, an ``O(n)`` sum in the C loop): when the range exceeds ``1e6 T``,
    entries above ``min C + T``, which no optimal assignment uses, are clipped to
    ``min C + 2 T`` and the problem solved again (same optimal assignments, a range of at
    most ``2 T``). A uniform rescale needs nothing: the solver is scale-free (exact for
    ranges ``1e0`` to ``1e20``).

    Non-finite costs (``nan``, ``inf``, or ``max - min`` overflowing float64) cannot be
    detected at trace time. Every method refuses them when the computation runs, with one
    ``RuntimeError`` ("... non-finite entry ...", raised through
    :func:`equinox.error_if`: ``equinox.EquinoxRuntimeError`` eagerly,
    ``jax.errors.JaxRuntimeError`` under jit). No permutation is returned.

    Speed (one CPU thread, squared-Euclidean cost of 2D Gaussian clouds, jitted, cost matrix
    included): about 1 ms at ``n = 256`` and 20 ms at ``n = 1024``, 5 to 8 times faster than
    POT's network simplex (``ot.emd``); see ``benchmarks/bench_assignment.py``.

    Args:
      cost: cost matrix of shape ``(n, n)``, real dtype (float32 or float64; integers are
        accepted and solved as float64). Batch it with :func:`jax.vmap`.
      method: the solver, ``"auto"`` (default), ``"c"``, ``"scipy"``, ``"jax"`` or
        ``"auction"``.

    Returns:
      ``perm``, an ``int32`` array of shape ``(n,)``: row ``i`` is assigned column
      ``perm[i]``; a permutation of ``0..n-1``.

    Raises:
      ValueError: if ``cost`` is not a square 2D array, has a complex or boolean dtype, or
        ``method`` is unknown.
      RuntimeError: at run time, a non-finite cost (see above); with ``method="auction"``
        also an auction that did not finish within its ``max_rounds``.
      ImportError: with ``method="c"``, if the C extension was not compiled (run
        ``pip install -e .``).

    Warns:
      CompiledSolverMissingWarning: ``method="auto"`` without the C extension (once).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flowjax_fm.couplings import solve_assignment
      >>> cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
      >>> perm = jax.jit(solve_assignment)(cost)
      >>> perm.tolist(), float(cost[jnp.arange(3), perm].sum())
      ([1, 0, 2], 5.0)
      >>> jax.vmap(solve_assignment)(jnp.stack([cost, cost.T])).shape
      (2, 3)

    References:
      Bertsekas 1988, The auction algorithm: a distributed relaxation method for the
      assignment problem. Jonker and Volgenant 1987, A shortest augmenting path algorithm for
      dense and sparse linear assignment problems.
    """
    check_choice("method", method, SOLVERS)
    cost = jnp.asarray(cost)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square 2D array (n, n), got shape {cost.shape}")
    if jnp.issubdtype(cost.dtype, jnp.complexfloating) or cost.dtype == jnp.bool_:
        raise ValueError(f"cost must have a real dtype, got {cost.dtype} (shape {cost.shape})")
    n = cost.shape[0]
    if n <= 1:
        return jnp.zeros((n,), jnp.int32)
    solver = resolve_solver(method, "method")
    if solver == "jax":
        return _jax_hungarian(cost)
    if solver == "auction":
        return _auction_perm(cost)
    out_type = jax.ShapeDtypeStruct((n,), jnp.int32)
    host = _host_c if solver == "c" else _host_scipy
    perm = jax.pure_callback(host, out_type, cost, vmap_method="expand_dims")
    return fail_if(perm, perm[0] < 0, _NON_FINITE)  # the host marks a refused problem -1
