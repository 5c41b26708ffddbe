"""Bad inputs of ``fm.couplings.SinkhornCoupling``'s ``domain`` (issue 13).

The run-time cases of ``cases_couplings.py`` run the default domain (``"auto"``: the kernel
domain); the log domain's run-time check is covered here once.
"""

from __future__ import annotations

import jax

import flowjax_fm as fm
from bad_input import Case

SK = fm.couplings.SinkhornCoupling
NAME = "couplings.SinkhornCoupling"
KEY = jax.random.key(0)
X0 = jax.random.normal(jax.random.key(1), (8, 2))
X1 = jax.random.normal(jax.random.key(2), (8, 2)) + 1.0
HARD = dict(epsilon=1e-4, max_iterations=20)  # far from converged, fast

CASES = [
    Case(NAME, "domain=lse", lambda: SK(domain="lse"), ValueError,
         r"unknown domain 'lse'; choose one of 'auto', 'kernel', 'log'"),
    Case(NAME, "domain=None", lambda: SK(domain=None), ValueError, r"unknown domain None"),
    Case(NAME, "domain=kernel+anderson", lambda: SK(domain="kernel", anderson=5), ValueError,
         r"anderson=5 needs domain='log' or 'auto' .*got domain='kernel'"),
    Case(NAME, "unconverged-kernel-reported", lambda: SK(**HARD, domain="kernel", throw=False)(KEY, X0, X1),
         None, reported=lambda p: not bool(p.converged) and float(p.marginal_error) > 0.01),
    Case(NAME, "unconverged-log-raises", lambda: SK(**HARD, domain="log")(KEY, X0, X1), RuntimeError,
         r"marginal error \(relative L1\) is above marginal_tol=0.01.*epsilon=0.0001"),
]
