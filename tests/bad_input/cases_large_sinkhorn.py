"""Bad inputs of ``fm.couplings.LargeSinkhornCoupling`` (issue 13)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

LS = fm.couplings.LargeSinkhornCoupling
NAME = "couplings.LargeSinkhornCoupling"
KEY = jax.random.key(0)
X0 = jax.random.normal(jax.random.key(1), (8, 2))
X1 = jax.random.normal(jax.random.key(2), (8, 2)) + 1.0
LABELS = jnp.array([0, 1, 0, 1, 0, 1, 0, 1])
# far from converged: a tiny epsilon and a tiny iteration budget (fast)
HARD = dict(epsilon=1e-4, max_iterations=20, chunk=4)


def _make(**kwargs):
    return lambda: LS(**kwargs)


def _call(coupling, *args):
    return lambda: coupling(KEY, *args)


_FIELDS = [
    ("epsilon=0", dict(epsilon=0.0), r"epsilon must be a finite number in \(0, inf\), got 0.0"),
    ("epsilon<0", dict(epsilon=-1.0), r"epsilon must be a finite number in \(0, inf\)"),
    ("epsilon=inf", dict(epsilon=float("inf")), r"epsilon must be a finite number"),
    ("epsilon=str", dict(epsilon="0.1"), r"epsilon must be a real number"),
    ("threshold=0", dict(threshold=0.0), r"threshold must be a finite number in \(0, inf\)"),
    ("chunk=0", dict(chunk=0), r"chunk must be an int >= 1, got 0"),
    ("chunk=float", dict(chunk=512.0), r"chunk must be an int >= 1"),
    ("max_iterations=0", dict(max_iterations=0), r"max_iterations must be an int >= 1"),
    ("inner_iterations=True", dict(inner_iterations=True), r"inner_iterations must be an int >= 1"),
    ("anderson=1", dict(anderson=1), r"anderson must be 0 \(off\) or an int >= 2"),
    ("sampling=rounded", dict(sampling="rounded"), r"unknown sampling 'rounded'; choose one of 'rows'"),
    ("relative_epsilon=median", dict(relative_epsilon="median"), r"unknown relative_epsilon 'median'"),
    ("cond_weight=-1", dict(cond_weight=-1.0), r"cond_weight must be a finite number in \[0, inf\)"),
    ("marginal_tol=0", dict(marginal_tol=0.0), r"marginal_tol must be a number in \(0, inf\)"),
    ("throw=1", dict(throw=1), r"throw must be True or False, got 1"),
]

CASES = [
    *(Case(NAME, label, _make(**kw), ValueError, match) for label, kw, match in _FIELDS),
    Case(NAME, "x0-x1-shapes", _call(LS(), X0, X1[:4]), ValueError,
         r"same shape, got \(8, 2\) and \(4, 2\)"),
    Case(NAME, "labels-refused", _call(LS(), X0, X1, LABELS, LABELS), ValueError,
         r"does not take integer labels \(label leaves of shapes \[\(8,\)\]\)"),
    Case(NAME, "float-cond-without-weight", _call(LS(), X0, X1, X0[:, :1], X1[:, :1]), ValueError,
         r"cond_weight is None"),
    Case(NAME, "unconverged-raises", _call(LS(**HARD), X0, X1), RuntimeError,
         r"marginal error \(relative L1\) is above marginal_tol=0.01.*epsilon=0.0001.*Raise epsilon"),
    Case(NAME, "unconverged-reported", _call(LS(**HARD, throw=False), X0, X1), None,
         reported=lambda p: not bool(p.converged) and float(p.marginal_error) > 0.01),
]
