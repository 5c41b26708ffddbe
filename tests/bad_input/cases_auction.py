"""Bad inputs of ``fm.couplings.auction_assignment`` (issue 13): shapes, dtypes, options, and the
run-time failures (non-finite cost, ``max_rounds`` reached) raised or reported."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from bad_input import Case

auction = fm.couplings.auction_assignment
COST = jnp.asarray(np.random.default_rng(0).random((4, 4)), jnp.float32)
# a geometric cost that needs more than one bidding round
_X = np.random.default_rng(1).normal(size=(8, 2))
HARD = jnp.asarray(((_X[:, None] - _X[None, ::-1] - 0.5) ** 2).sum(-1), jnp.float32)


def _nan_cost():
    cost = np.ones((4, 4), np.float32)
    cost[1, 2] = np.nan
    return jnp.asarray(cost)


def _run(**kwargs):
    """Call and wait for the result (a run-time error surfaces on the first read)."""
    cost = kwargs.pop("cost", COST)
    return lambda: jax.block_until_ready(auction(cost, **kwargs))


def _is_permutation(perm) -> bool:
    return sorted(np.asarray(perm).tolist()) == list(range(len(perm)))


_NAME = "couplings.auction_assignment"
_OPTIONS = [
    ("not-square", dict(cost=jnp.zeros((4, 3))), r"square 2D array \(n, n\), got shape \(4, 3\)"),
    ("1d", dict(cost=jnp.zeros(4)), r"square 2D array \(n, n\), got shape \(4,\)"),
    ("batched", dict(cost=jnp.zeros((2, 4, 4))), r"got shape \(2, 4, 4\)"),
    ("complex", dict(cost=jnp.zeros((3, 3), jnp.complex64)), r"real dtype, got complex64"),
    ("bool", dict(cost=jnp.zeros((3, 3), bool)), r"real dtype, got bool"),
    ("not-array", dict(cost="cost"), r"square 2D array|real \(n, n\) array"),
    ("tol<0", dict(tol=-1e-3), r"tol must be a finite number in \[0, 1\], got -0.001"),
    ("tol>1", dict(tol=2.0), r"tol must be a finite number in \[0, 1\], got 2.0"),
    ("tol=nan", dict(tol=float("nan")), r"tol must be a finite number in \[0, 1\]"),
    ("tol=str", dict(tol="1e-6"), r"tol must be a real number"),
    ("max_rounds=0", dict(max_rounds=0), r"max_rounds must be an int in \[1, 2147483647\], got 0"),
    ("max_rounds=float", dict(max_rounds=10.0), r"max_rounds must be an int in \[1, "),
    ("max_rounds=2**31", dict(max_rounds=2**31), r"max_rounds must be an int in \[1, 2147483647\]"),
    ("throw=1", dict(throw=1), r"throw must be True or False, got 1"),
]

CASES = [
    *(Case(_NAME, label, _run(**kw), ValueError, match) for label, kw, match in _OPTIONS),
    Case(_NAME, "nan-raises", _run(cost=_nan_cost()), RuntimeError,
         r"auction_assignment: the cost matrix has a non-finite entry \(nan or inf\)"),
    Case(_NAME, "nan-reported", _run(cost=_nan_cost(), throw=False), None,
         reported=lambda r: not bool(r.converged) and _is_permutation(r.perm)
         and bool(jnp.isinf(r.gap_bound))),
    Case(_NAME, "max_rounds-raises", _run(cost=HARD, max_rounds=1), RuntimeError,
         r"did not finish within max_rounds=1 bidding rounds"),
    Case(_NAME, "max_rounds-reported", _run(cost=HARD, max_rounds=1, throw=False), None,
         reported=lambda r: not bool(r.converged) and _is_permutation(r.perm) and int(r.rounds) == 1),
    Case("couplings.solve_assignment", "auction-nan-raises",
         lambda: jax.block_until_ready(fm.couplings.solve_assignment(_nan_cost(), method="auction")),
         RuntimeError, r"non-finite entry \(nan or inf\)"),
]
