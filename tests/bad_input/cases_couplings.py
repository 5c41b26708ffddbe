"""Bad inputs of ``fm.couplings`` and ``fm.metrics.wasserstein`` (issue 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from bad_input import Case

C = fm.couplings
KEY = jax.random.key(0)
X0 = jax.random.normal(jax.random.key(1), (8, 2))
X1 = jax.random.normal(jax.random.key(2), (8, 2)) + 1.0
LABELS = jnp.array([0, 1, 0, 1, 0, 1, 0, 1])
# Sinkhorn far from converged: a tiny epsilon and a tiny iteration budget (fast)
HARD = dict(epsilon=1e-4, max_iterations=20)


def _sk(**kwargs):
    return lambda: C.SinkhornCoupling(**kwargs)


def _call(coupling, *args):
    return lambda: coupling(KEY, *args)


def _nan_cost():
    cost = np.ones((4, 4), np.float32)
    cost[1, 2] = np.nan
    return jnp.asarray(cost)


_SINKHORN = [
    ("epsilon=0", dict(epsilon=0.0), r"epsilon must be a finite number in \(0, inf\), got 0.0"),
    ("epsilon<0", dict(epsilon=-0.1), r"epsilon must be a finite number in \(0, inf\)"),
    ("epsilon=nan", dict(epsilon=float("nan")), r"epsilon must be a finite number"),
    ("epsilon=str", dict(epsilon="0.1"), r"epsilon must be a real number"),
    ("threshold=-1", dict(threshold=-1.0), r"threshold must be a finite number in \(0, inf\)"),
    ("threshold=inf", dict(threshold=float("inf")), r"threshold must be a finite number"),
    ("tau_a=2", dict(tau_a=2.0), r"tau_a must be a finite number in \(0, 1\], got 2.0"),
    ("tau_a=0", dict(tau_a=0.0), r"tau_a must be a finite number in \(0, 1\]"),
    ("tau_b=nan", dict(tau_b=float("nan")), r"tau_b must be a finite number in \(0, 1\]"),
    ("max_iterations=0", dict(max_iterations=0), r"max_iterations must be an int >= 1, got 0"),
    ("max_iterations=True", dict(max_iterations=True), r"max_iterations must be an int >= 1"),
    ("max_iterations=float", dict(max_iterations=100.0), r"max_iterations must be an int >= 1"),
    ("inner_iterations=0", dict(inner_iterations=0), r"inner_iterations must be an int >= 1"),
    ("anderson=1", dict(anderson=1), r"anderson must be 0 \(off\) or an int >= 2"),
    ("anderson=-1", dict(anderson=-1), r"anderson must be 0 \(off\) or an int >= 2"),
    ("sampling=row", dict(sampling="row"), r"unknown sampling 'row'; choose one of"),
    ("relative_epsilon=max", dict(relative_epsilon="max"), r"unknown relative_epsilon 'max'"),
    ("cond_weight=-1", dict(cond_weight=-1.0), r"cond_weight must be a finite number in \[0, inf\)"),
    ("marginal_tol=0", dict(marginal_tol=0.0), r"marginal_tol must be a number in \(0, inf\)"),
    ("throw=1", dict(throw=1), r"throw must be True or False, got 1"),
]

CASES = [
    *(Case("couplings.SinkhornCoupling", label, _sk(**kw), ValueError, match)
      for label, kw, match in _SINKHORN),
    Case("couplings.SinkhornCoupling", "unconverged-raises",
         _call(C.SinkhornCoupling(**HARD), X0, X1), RuntimeError,
         r"marginal error \(relative L1\) is above marginal_tol=0.01.*epsilon=0.0001.*Raise epsilon"),
    Case("couplings.SinkhornCoupling", "unconverged-unbalanced-raises",
         _call(C.SinkhornCoupling(epsilon=1e-3, max_iterations=10, threshold=1e-8, tau_a=0.99,
                                  tau_b=0.99), X0, X1), RuntimeError,
         r"did not reach threshold=1e-08 \(unbalanced"),
    Case("couplings.SinkhornCoupling", "unbalanced-empty-plan-raises",
         _call(C.SinkhornCoupling(epsilon=1e-4, tau_a=0.5, tau_b=0.5), X0, X1), RuntimeError,
         r"or the plan has no mass left"),
    Case("couplings.SinkhornCoupling", "unbalanced-empty-plan-reported",
         _call(C.SinkhornCoupling(epsilon=1e-4, tau_a=0.5, tau_b=0.5, throw=False), X0, X1), None,
         reported=lambda p: not bool(p.converged)),
    Case("couplings.SinkhornCoupling", "unconverged-reported",
         _call(C.SinkhornCoupling(**HARD, throw=False), X0, X1), None,
         reported=lambda p: not bool(p.converged) and float(p.marginal_error) > 0.01),
    Case("couplings.SinkhornCoupling", "unconverged-rounded-reported",
         _call(C.SinkhornCoupling(**HARD, sampling="rounded", throw=False), X0, X1), None,
         reported=lambda p: not bool(p.converged)),
    Case("couplings.SinkhornCoupling", "float-cond-without-weight",
         _call(C.SinkhornCoupling(), X0, X1, X0[:, :1], X1[:, :1]), ValueError,
         r"cond_weight is None"),
    Case("couplings.ExactOTCoupling", "method=hungarian", lambda: C.ExactOTCoupling(method="hungarian"),
         ValueError, r"unknown method 'hungarian'; choose one of 'auto', 'c', 'scipy', 'jax'"),
    Case("couplings.ExactOTCoupling", "cond_weight=nan", lambda: C.ExactOTCoupling(cond_weight=float("nan")),
         ValueError, r"cond_weight must be a finite number in \[0, inf\)"),
    Case("couplings.ExactOTCoupling", "x0-x1-shapes", _call(C.ExactOTCoupling(), X0, X1[:4]),
         ValueError, r"same shape, got \(8, 2\) and \(4, 2\)"),
    Case("couplings.ExactOTCoupling", "labels-(B,1)",
         _call(C.ExactOTCoupling(), X0, X1, LABELS[:, None], LABELS[:, None]), ValueError,
         r"integer labels must have shape \(8,\)"),
    Case("couplings.IndependentCoupling", "unbatched", _call(C.IndependentCoupling(), X0[0], X1[0]),
         ValueError, r"batches shaped \(B, \*event\)"),
    Case("couplings.IndependentCoupling", "int-data",
         _call(C.IndependentCoupling(), jnp.zeros((4, 2), jnp.int32), jnp.zeros((4, 2), jnp.int32)),
         ValueError, r"x0 must be floating point, got dtype int32"),
    Case("couplings.IndependentCoupling", "one-cond-only",
         _call(C.IndependentCoupling(), X0, X1, LABELS), ValueError, r"both cond0 and cond1"),
    Case("couplings.check_batch", "empty", lambda: C.check_batch(jnp.zeros((0, 2)), jnp.zeros((0, 2))),
         ValueError, r"the batch is empty"),
    Case("couplings.check_batch", "short-label", lambda: C.check_batch(X0, X1, LABELS[:4], LABELS[:4]),
         ValueError, r"leading dimension 8"),
    Case("couplings.condition_cost", "structures", lambda: C.condition_cost({"a": X0}, {"b": X1}),
         ValueError, r"same pytree structure"),
    Case("couplings.condition_cost", "event-shapes", lambda: C.condition_cost(X0, X1[:, :1]),
         ValueError, r"same c, got shapes \(8, 2\) and \(8, 1\)"),
    Case("couplings.label_penalty", "cost-not-square",
         lambda: C.label_penalty(jnp.zeros((8, 4)), LABELS, LABELS),
         ValueError, r"square matrix \(B, B\), got shape \(8, 4\)"),
    Case("couplings.label_penalty", "labels-vs-cost",
         lambda: C.label_penalty(jnp.zeros((4, 4)), LABELS, LABELS),
         ValueError, r"\(8, 8\) mask for a cost of shape \(4, 4\)"),
    Case("couplings.squared_distances", "event-size", lambda: C.squared_distances(X0, jnp.zeros((8, 3))),
         ValueError, r"same event size, got shapes \(8, 2\) and \(8, 3\)"),
    Case("couplings.squared_distances", "scalar", lambda: C.squared_distances(jnp.float32(1.0), X1),
         ValueError, r"same event size"),
    Case("couplings.get_coupling", "unknown-name", lambda: C.get_coupling("hungarian"),
         ValueError, r"unknown coupling 'hungarian'; choose one of"),
    Case("couplings.get_coupling", "unknown-option", lambda: C.get_coupling("sinkhorn", eps=0.1),
         ValueError, r"unknown option 'eps' for coupling 'sinkhorn'; choose among epsilon"),
    Case("couplings.get_coupling", "bad-value", lambda: C.get_coupling("sinkhorn", epsilon=0),
         ValueError, r"epsilon must be a finite number in \(0, inf\), got 0"),
    Case("couplings.solve_assignment", "not-square", lambda: C.solve_assignment(jnp.zeros((3, 2))),
         ValueError, r"square 2D array \(n, n\), got shape \(3, 2\)"),
    Case("couplings.solve_assignment", "method",
         lambda: C.solve_assignment(jnp.zeros((2, 2)), method="lapjv"),
         ValueError, r"unknown method 'lapjv'; choose one of"),
    Case("couplings.solve_assignment", "complex",
         lambda: C.solve_assignment(jnp.zeros((2, 2), jnp.complex64)),
         ValueError, r"real dtype, got complex64"),
    Case("couplings.solve_assignment", "nan-cost",
         lambda: jax.block_until_ready(C.solve_assignment(_nan_cost())),
         RuntimeError, r"non-finite entry"),
    Case("couplings.solve_assignment", "nan-cost-scipy",
         lambda: jax.block_until_ready(C.solve_assignment(_nan_cost(), method="scipy")),
         RuntimeError, r"non-finite entry"),
    Case("couplings.solve_assignment", "nan-cost-jax",
         lambda: jax.block_until_ready(C.solve_assignment(_nan_cost(), method="jax")),
         RuntimeError, r"non-finite entry"),
    Case("metrics.wasserstein", "p=3", lambda: fm.metrics.wasserstein(X0, X1, p=3),
         ValueError, r"p must be 1 or 2, got 3"),
    Case("metrics.wasserstein", "p=True", lambda: fm.metrics.wasserstein(X0, X1, p=True),
         ValueError, r"p must be 1 or 2, got True"),
    Case("metrics.wasserstein", "method", lambda: fm.metrics.wasserstein(X0, X1, method="emd"),
         ValueError, r"unknown method 'emd'; choose one of 'exact', 'sinkhorn'"),
    Case("metrics.wasserstein", "solver", lambda: fm.metrics.wasserstein(X0, X1, solver="lapjv"),
         ValueError, r"unknown solver 'lapjv'; choose one of 'auto', 'c', 'scipy', 'jax'"),
    Case("metrics.wasserstein", "solver-with-sinkhorn",
         lambda: fm.metrics.wasserstein(X0, X1, method="sinkhorn", solver="c"),
         ValueError, r"solver is only used with method='exact'"),
    Case("metrics.wasserstein", "epsilon=0",
         lambda: fm.metrics.wasserstein(X0, X1, method="sinkhorn", epsilon=0.0),
         ValueError, r"epsilon must be a finite number in \(0, inf\), got 0.0"),
    Case("metrics.wasserstein", "epsilon=nan",
         lambda: fm.metrics.wasserstein(X0, X1, method="sinkhorn", epsilon=float("nan")),
         ValueError, r"epsilon must be a finite number"),
    Case("metrics.wasserstein", "nan-points", lambda: fm.metrics.wasserstein(X0, X1.at[0, 0].set(jnp.nan)),
         ValueError, r"y has non-finite values"),
    Case("metrics.wasserstein", "sizes", lambda: fm.metrics.wasserstein(X0, X1[:4]),
         ValueError, r"equal size, got shapes \(8, 2\) and \(4, 2\)"),
    Case("metrics.wasserstein", "one-point", lambda: fm.metrics.wasserstein(X0[:1], X1[:1]),
         None, r"one-point set", warns=UserWarning),
]

EXEMPT = {
    "couplings.AbstractCoupling": (
        "an abstract base class: its __call__ checks through check_batch (cases there)"
    ),
    "couplings.COUPLINGS": "a constant (the name -> class table of get_coupling)",
    "couplings.Pairing": "a result type built by the couplings (index arrays, no value to check)",
}
