"""No valid input under ``jit`` yields NaN silently (issue 12's property).

Valid hyperparameters at the edges of their accepted ranges, times at the ends of ``[0, 1]``
and a field of every solver: each result is finite, or the failure is raised or reported
(``success`` False). One jitted function per interface, the objects passed in as arguments,
so every case of one class reuses a compile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm

P, C, T, S = fm.paths, fm.couplings, fm.time_sampling, fm.sampling

# the smallest / largest values each path and sampler accepts, and ordinary ones
EDGE_PATHS = {
    "condot": P.CondOTPath(),
    "condot-sigma-min": P.CondOTPath(sigma_min=0.999),
    "gaussian-0": P.GaussianPath(sigma=0.0),
    "gaussian-wide": P.GaussianPath(sigma=10.0),
    "bridge-tiny": P.BrownianBridgePath(sigma=1e-6),
    "bridge": P.BrownianBridgePath(sigma=1.0),
    "vp": P.VPPath(),
}
EDGE_TIMES = {
    "uniform": T.UniformTime(),
    "beta-small": T.BetaTime(1e-2, 1e-2),
    "beta-large": T.BetaTime(50.0, 0.5),
    "logit-normal-wide": T.LogitNormalTime(0.0, 10.0),
    "logit-normal-shifted": T.LogitNormalTime(-5.0, 0.1),
}
TIMES = jnp.array([0.0, 1e-7, 0.5, 1.0 - 1e-7, 1.0])


@jax.jit
def _path_values(path, x0, x1, noise):
    def one(t):
        x_t = path.sample(x0, x1, t, noise)
        return x_t, path.target_velocity(x0, x1, t, noise)

    return jax.vmap(one)(TIMES)


@pytest.mark.parametrize("name", sorted(EDGE_PATHS))
def test_paths_are_finite_on_all_of_0_1(name):
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x0, x1, noise = (jax.random.normal(k, (3,)) for k in (k0, k1, k2))
    x_t, u_t = _path_values(EDGE_PATHS[name], x0, x1, noise)
    assert np.isfinite(np.asarray(x_t)).all() and np.isfinite(np.asarray(u_t)).all(), name


@jax.jit
def _draw(sampler, key):
    return sampler(key, 4096)


@pytest.mark.parametrize("name", sorted(EDGE_TIMES))
def test_time_samplers_draw_finite_times_in_0_1(name):
    t = np.asarray(_draw(EDGE_TIMES[name], jax.random.key(1)))
    assert np.isfinite(t).all() and (t >= 0).all() and (t <= 1).all(), name


def _field(x, t):
    return jnp.tanh(x) - 0.5 * x * t[:, None]


@jax.jit
def _losses(paths, couplings, key, x0, x1):
    out = [fm.losses.cfm_loss(_field, key, x0, x1, path=p)[0] for p in paths]
    path = P.BrownianBridgePath(sigma=1e-3)
    return out + [fm.losses.cfm_loss(_field, key, x0, x1, path=path, coupling=c)[0] for c in couplings]


def test_losses_are_finite_for_every_path_and_coupling():
    x0 = jax.random.normal(jax.random.key(2), (32, 2))
    x1 = jax.random.normal(jax.random.key(3), (32, 2)) * 3.0 + 5.0
    couplings = [C.ExactOTCoupling(), C.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean")]
    values = _losses(list(EDGE_PATHS.values()), couplings, jax.random.key(4), x0, x1)
    assert all(np.isfinite(float(v)) for v in values)


@pytest.mark.parametrize("solver", S.SOLVER_NAMES)
def test_every_solver_is_finite_or_reports_failure(solver):
    @jax.jit
    def run(x0):
        fixed = S.sample(_field, x0, solver=solver, num_steps=8, throw=False)
        stiff = S.sample(lambda x, t: x**3 * 100.0, x0, solver=solver, num_steps=8, throw=False)
        return fixed, stiff

    x0 = jax.random.normal(jax.random.key(5), (16, 2)) * 3.0
    fixed, stiff = run(x0)
    assert bool(fixed.success) and np.isfinite(np.asarray(fixed.x)).all()
    # an exploding field: either finite values or reported failure, never NaN with success
    assert (not bool(stiff.success)) or np.isfinite(np.asarray(stiff.x)).all()


def test_adaptive_and_likelihood_are_finite_or_report_failure():
    x0 = jax.random.normal(jax.random.key(6), (16, 2))

    @jax.jit
    def run(x0):
        ok = S.sample(_field, x0, throw=False)
        capped = S.sample(lambda x, t: 50.0 * jnp.sin(50.0 * x), x0, max_steps=4, throw=False)
        return ok, capped

    ok, capped = run(x0)
    assert bool(ok.success) and np.isfinite(np.asarray(ok.x)).all()
    assert not bool(capped.success)
    logp = fm.likelihood.log_prob(_field, x0, solver="rk4", num_steps=8)
    assert np.isfinite(np.asarray(logp)).all()
