"""SinkhornCoupling's domains (issue 13): the stabilised kernel domain (the default) runs the
log domain's iterates, so both give the same plan, the same iteration count and the same checks;
it stays right where ``exp(-C / eps)`` underflows in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm.couplings import _ot

C = fm.couplings
KEY = jax.random.key(0)


@jax.jit
def _solve(coupling, x0, x1, cond):
    """(plan, passed the check, marginal error, iterations); the coupling is an argument."""
    return coupling._solve(x0, x1, cond, cond)


def _clouds(n, d=2, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), 0.5 * jax.random.normal(k1, (n, d)) + 1.0


def _both(x0, x1, cond=None, **kwargs):
    """The kernel- and log-domain solves of one problem, as NumPy."""
    out = []
    for domain in ("kernel", "log"):
        cp = C.SinkhornCoupling(domain=domain, throw=False, **kwargs)
        plan, ok, error, iters = _solve(cp, x0, x1, cond)
        out.append((np.asarray(plan, np.float64), bool(ok), float(error), int(iters)))
    return out


def _assert_same(kernel, log, l1):
    assert np.isfinite(kernel[0]).all()
    assert np.abs(kernel[0] - log[0]).sum() < l1
    assert kernel[1] == log[1] and kernel[3] == log[3]  # the check's verdict, the iterations
    np.testing.assert_allclose(kernel[2], log[2], rtol=0.05, atol=1e-5)


# Measured L1 differences of the plans (n = 64): 2e-6 to 2e-5 converged, 1.5e-4 at
# epsilon = 2e-4 (stopped at max_iterations, the check failing in both). Problems share their
# static fields where they can: one compile per domain and static configuration.
PROBLEMS = {
    "default": (dict(), 1e-4),
    "eps=0.01 (rebuilds)": (dict(epsilon=0.01), 1e-4),
    "eps=2e-4 unconverged": (dict(epsilon=2e-4), 1e-3),
    "threshold 1e-5": (dict(epsilon=0.2, threshold=1e-5), 1e-5),
    "inner_iterations=1": (dict(epsilon=0.1, inner_iterations=1), 1e-5),
    "max_iterations=15 of inner 10": (dict(epsilon=0.01, max_iterations=15), 1e-4),
    "unbalanced 0.5": (dict(epsilon=0.1, tau_a=0.5, tau_b=0.5), 1e-5),
    "unbalanced, vanishing plan": (dict(epsilon=1e-4, tau_a=0.5, tau_b=0.5), 1e-6),
    "semi-unbalanced": (dict(epsilon=0.05, tau_b=0.7), 1e-5),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_kernel_and_log_domains_agree(name):
    kwargs, l1 = PROBLEMS[name]
    x0, x1 = _clouds(64)
    _assert_same(*_both(x0, x1, **kwargs), l1)


def test_kernel_domain_where_exp_of_the_cost_underflows():
    # exp(-C / eps) is 0 in float32 for most cells: an unstabilised kernel would divide 0 by 0
    x0, x1 = _clouds(64)
    x0 = x0.at[0].set(jnp.array([6.0, -6.0]))  # a source far from every target
    eps = 0.01
    cost = np.asarray(C.squared_distances(x0, x1))
    assert (np.exp(-cost / eps).astype(np.float32) == 0).mean() > 0.5
    # even shifted by each column's minimum, that source's row is all zeros: the first
    # iteration takes the log-domain branch
    shifted = np.exp(-(cost - cost.min(axis=0)) / eps).astype(np.float32)
    assert shifted[0].max() == 0.0
    kernel, log = _both(x0, x1, epsilon=eps)
    assert kernel[1] and log[1]
    _assert_same(kernel, log, 1e-4)


def test_kernel_domain_survives_a_cost_range_the_log_domain_does_not():
    # a source 1,000 away: float32 potentials of size 1e6 / eps lose the plan in the log domain
    # (ott-jax: the mass doubles); the kernel domain's scalings correct K's rounding
    x0, x1 = _clouds(64)
    x0 = x0.at[0].add(1e3)
    kernel, log = _both(x0, x1, epsilon=0.01)
    assert kernel[1] and kernel[2] < 2e-3
    np.testing.assert_allclose(kernel[0].sum(), 1.0, atol=1e-5)
    assert not log[1]  # documents ott-jax's failure; the kernel plan is the one that passes


def test_labels_and_cond_weight_in_the_kernel_domain():
    n = 48
    x0, x1 = _clouds(n, seed=3)
    labels = jnp.asarray(np.arange(n) % 3)
    kernel, log = _both(x0, x1, labels, epsilon=0.05)
    _assert_same(kernel, log, 1e-4)
    # (that pairs never cross labels is the contract suite's check, tests/test_couplings.py)
    cond = jax.random.normal(jax.random.key(5), (n, 2))
    kernel, log = _both(x0, x1, cond, epsilon=0.05, cond_weight=2.0)
    _assert_same(kernel, log, 1e-4)


@pytest.mark.slow
def test_unequal_label_counts_fail_alike():
    n = 48
    x0, x1 = _clouds(n, seed=3)
    labels = jnp.asarray(np.arange(n) % 3)
    # unequal label counts: some mass must cross labels, at a penalty neither domain's
    # potentials reach in 2,000 iterations: the same failed check, the same error
    other = labels.at[:8].set(0)
    errors = []
    for domain in ("kernel", "log"):
        cp = C.SinkhornCoupling(epsilon=0.05, domain=domain, throw=False)
        plan, ok, error, _ = jax.jit(lambda c, a, b: c._solve(x0, x1, a, b))(cp, labels, other)
        assert np.isfinite(np.asarray(plan)).all() and abs(float(plan.sum()) - 1.0) < 1e-4
        assert not bool(ok)
        errors.append(float(error))
    assert errors[0] > 0.05 and abs(errors[0] - errors[1]) < 1e-3


def test_checks_and_reports_in_the_kernel_domain():
    x0, x1 = _clouds(64)
    with pytest.raises(RuntimeError, match=r"marginal_tol=0.01.*epsilon=0.0002"):
        jax.block_until_ready(C.SinkhornCoupling(epsilon=2e-4)(KEY, x0, x1))
    p = C.SinkhornCoupling(epsilon=2e-4, throw=False)(KEY, x0, x1)
    assert not bool(p.converged) and float(p.marginal_error) > 0.1
    ok = C.SinkhornCoupling()(KEY, x0, x1)
    assert bool(ok.converged) and float(ok.marginal_error) <= 1e-3


def test_traced_epsilon_under_vmap_matches_each():
    x0, x1 = _clouds(64)
    eps = jnp.array([0.05, 0.5, 1e-4])
    vmapped = jax.jit(jax.vmap(lambda e: _solve(C.SinkhornCoupling(epsilon=e), x0, x1, None)))(eps)
    for i, e in enumerate(eps.tolist()):
        single = _solve(C.SinkhornCoupling(epsilon=e), x0, x1, None)  # compiled for PROBLEMS
        np.testing.assert_allclose(vmapped[0][i], single[0], atol=1e-6)
        assert bool(vmapped[1][i]) == bool(single[1]) and int(vmapped[3][i]) == int(single[3])
    assert np.asarray(vmapped[1]).tolist() == [True, True, False]


def test_auto_domain_and_validation():
    assert C.SinkhornCoupling().resolved_domain == "kernel"
    assert C.SinkhornCoupling(anderson=5).resolved_domain == "log"
    assert C.SinkhornCoupling(domain="log").resolved_domain == "log"
    with pytest.raises(ValueError, match=r"unknown domain 'lse'; choose one of 'auto', 'kernel', 'log'"):
        C.SinkhornCoupling(domain="lse")
    with pytest.raises(ValueError, match=r"anderson=5 needs domain='log' or 'auto'"):
        C.SinkhornCoupling(domain="kernel", anderson=5)
    # a static field: the domain is part of the jit cache key, epsilon a leaf
    leaves = jax.tree.leaves(C.SinkhornCoupling(domain="log"))
    assert "log" not in [str(v) for v in leaves]


def test_scaling_bound_keeps_lost_mass_negligible():
    # the documented bound on the mass a cell of K lost to underflow can hold
    assert _ot._LOST_MASS < 1e-16
    assert np.exp(np.float32(_ot._SCALING_BOUND)) < np.finfo(np.float32).max / 1e6
