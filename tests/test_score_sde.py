"""[SF]2M score matching and SDE sampling, checked against a Gaussian Schrodinger bridge.

Closed form: x0 ~ N(m0, s0^2), x1 ~ N(m1, s1^2) per coordinate, coupled by the entropic OT
plan of the bridge (cost |x0 - x1|^2, regularisation 2 sigma^2), a Gaussian with
cross-covariance c = (sqrt(sigma^4 + 4 s0^2 s1^2) - sigma^2) / 2, and the Brownian bridge
x_t = (1 - t) x0 + t x1 + sigma sqrt(t (1 - t)) eps. Everything is jointly Gaussian, so

    mu_t = (1 - t) m0 + t m1,
    V_t  = (1 - t)^2 s0^2 + t^2 s1^2 + 2 t (1 - t) c + sigma^2 t (1 - t),
    v(x, t) = m1 - m0 + V_t' / (2 V_t) (x - mu_t)     (the marginal velocity, E[u_t | x_t]),
    s(x, t) = -(x - mu_t) / V_t                         (the marginal score),

and the SDE dx = [v + sigma^2/2 s] dt + sigma dW started from N(m0, s0^2) has marginals
N(mu_t, V_t) (its Fokker-Planck equation is v's continuity equation). At t = 1/2:
mu = (m0 + m1) / 2, V = (s0^2 + s1^2 + 2c + sigma^2) / 4; at t = 1: N(m1, s1^2).

Monte-Carlo checks compare sample means and variances with these within K = 4 standard errors
(sd / sqrt(n) for the mean, V sqrt(2 / (n - 1)) for the variance; the n scalar samples are
independent rows and coordinates). The solvers' discretisation bias of the variance, from their
exact variance recursions on this linear SDE (test_discretisation_bias_is_below_the_stated_bound),
is under one standard error of the variance here (1.1 %): Euler-Maruyama at 64 steps forward
0.84 %, Heun at 16 steps forward 0.1 %, Heun at 32 steps in reverse time 0.36 % (the reverse
drift is stiffer near t = 0, where Euler-Maruyama at 64 steps would be 3 % off).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm

M0, S0, M1, S1, SIGMA = -1.0, 0.5, 2.0, 0.8, 1.0
C = (np.sqrt(SIGMA**4 + 4 * S0**2 * S1**2) - SIGMA**2) / 2
N, D, STEPS, K = 8000, 2, 64, 4.0
PATH = fm.paths.BrownianBridgePath(sigma=SIGMA)


def mu(t):
    return (1 - t) * M0 + t * M1


def var(t):
    return (1 - t) ** 2 * S0**2 + t**2 * S1**2 + 2 * t * (1 - t) * C + SIGMA**2 * t * (1 - t)


def dvar(t):
    return -2 * (1 - t) * S0**2 + 2 * t * S1**2 + 2 * (1 - 2 * t) * C + SIGMA**2 * (1 - 2 * t)


def drift(x, t):
    t = t[:, None]
    return (M1 - M0) + dvar(t) / (2 * var(t)) * (x - mu(t))


def score(x, t):
    t = t[:, None]
    return -(x - mu(t)) / var(t)


def joint_pairs(n, seed):
    """n pairs (x0, x1) of the bridge's Gaussian coupling, D coordinates each."""
    k0, k1 = jax.random.split(jax.random.key(seed))
    z0, z1 = jax.random.normal(k0, (n, D)), jax.random.normal(k1, (n, D))
    rho = C / (S0 * S1)
    x0 = M0 + S0 * z0
    x1 = M1 + S1 * (rho * z0 + np.sqrt(1 - rho**2) * z1)
    return x0, x1


def check_gaussian(x, t, what):
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    m, v = x.mean(), x.var(ddof=1)
    se_m, se_v = np.sqrt(var(t) / n), var(t) * np.sqrt(2.0 / (n - 1))
    assert abs(m - mu(t)) < K * se_m, f"{what}: mean {m:.4f} vs {mu(t):.4f} (SE {se_m:.4f})"
    assert abs(v - var(t)) < K * se_v, f"{what}: var {v:.4f} vs {var(t):.4f} (SE {se_v:.4f})"


def source(seed=0):
    return M0 + S0 * jax.random.normal(jax.random.key(seed), (N, D))


@pytest.fixture(scope="module")
def forward_euler():
    return fm.sampling.sample_sde(drift, score, source(), sigma=SIGMA, key=jax.random.key(1),
                                  num_steps=STEPS, save_trajectory=True)


# -- the SDE sampler reproduces the bridge's marginals ---------------------------------------
def test_closed_form_is_consistent():
    """The score and velocity above are those of the Gaussian marginal (finite differences)."""
    t = 0.3
    h = 1e-5
    assert abs((var(t + h) - var(t - h)) / (2 * h) - dvar(t)) < 1e-6
    assert var(0.0) == S0**2 and var(1.0) == S1**2


def test_euler_maruyama_marginals_at_half_and_one(forward_euler):
    res = forward_euler
    assert res.trajectory.shape == (STEPS + 1, N, D) and bool(res.success)
    np.testing.assert_allclose(np.asarray(res.ts)[[0, STEPS // 2, STEPS]], [0.0, 0.5, 1.0], atol=1e-6)
    check_gaussian(res.trajectory[STEPS // 2], 0.5, "euler t=1/2")
    check_gaussian(res.x, 1.0, "euler t=1")
    assert int(res.nfe) == STEPS and res.nfe_exact and int(res.num_steps) == STEPS


@pytest.mark.slow  # the default run checks Heun in reverse time (test_reverse_time_marginals)
@pytest.mark.parametrize("solver", ["heun", "shark"])
def test_higher_order_solver_marginals(solver):
    res = fm.sampling.sample_sde(drift, score, source(), sigma=SIGMA, key=jax.random.key(1),
                                 num_steps=16, solver=solver, save_trajectory=True)
    check_gaussian(res.trajectory[8], 0.5, f"{solver} t=1/2")
    check_gaussian(res.x, 1.0, f"{solver} t=1")
    assert int(res.nfe) == 2 * 16


def test_reverse_time_marginals():
    """From N(m1, s1^2) at t = 1 back to t = 0: the time reversal has the same marginals."""
    x1 = M1 + S1 * jax.random.normal(jax.random.key(5), (N, D))
    res = fm.sampling.sample_sde(drift, score, x1, sigma=SIGMA, key=jax.random.key(6),
                                 num_steps=32, solver="heun", t0=1.0, t1=0.0, save_trajectory=True)
    np.testing.assert_allclose(np.asarray(res.ts)[[0, 16, 32]], [1.0, 0.5, 0.0], atol=1e-6)
    check_gaussian(res.trajectory[16], 0.5, "reverse t=1/2")
    check_gaussian(res.x, 0.0, "reverse t=0")


def _variance_bias(method, steps, direction):
    """max over t = 1/2 and the end of |P_t / V_t - 1|, P the solver's exact variance."""
    ts = np.linspace(0, 1, steps + 1)[::direction]
    b = lambda t: dvar(t) / (2 * var(t)) - direction * SIGMA**2 / (2 * var(t))  # drift slope
    p, worst = var(ts[0]), 0.0
    for k, (a, c) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        h = c - a
        if method == "euler":
            p = (1 + h * b(a)) ** 2 * p + SIGMA**2 * abs(h)
        else:  # Heun on y = x - mu_t: y' = A y + B dW
            amp = 1 + h / 2 * (b(a) + b(c) * (1 + h * b(a)))
            p = amp**2 * p + (SIGMA * (1 + h * b(c) / 2)) ** 2 * abs(h)
        if k + 1 in (steps // 2, steps):
            worst = max(worst, abs(p / var(c) - 1))
    return worst


def test_discretisation_bias_is_below_the_stated_bound():
    assert _variance_bias("euler", STEPS, 1) < 0.009
    assert _variance_bias("heun", 16, 1) < 0.0015
    assert _variance_bias("heun", 32, -1) < 0.004
    assert _variance_bias("euler", STEPS, -1) > 0.025  # why the reverse test uses Heun


# -- the Brownian path -------------------------------------------------------------------------
def test_same_key_same_path_other_key_other_path(forward_euler):
    again = fm.sampling.sample_sde(drift, score, source(), sigma=SIGMA, key=jax.random.key(1),
                                   num_steps=STEPS, save_trajectory=True)
    other = fm.sampling.sample_sde(drift, score, source(), sigma=SIGMA, key=jax.random.key(2),
                                   num_steps=STEPS, save_trajectory=True)
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(forward_euler.x))
    diff = np.asarray(other.x - forward_euler.x)
    assert np.all(diff != 0.0) and diff.std() > 0.1


def _count_evaluations(solver, adaptive, sigma=0.5):
    """(drift calls, score calls, result) of a short solve, counted by run-time callbacks."""
    calls = {"drift": 0, "score": 0}

    def counted(name, fn):
        def wrapped(x, t):
            jax.debug.callback(lambda: calls.__setitem__(name, calls[name] + 1))
            return fn(x, t)

        return wrapped

    res = fm.sampling.sample_sde(counted("drift", drift), counted("score", score), source()[:5],
                                 sigma=sigma, key=jax.random.key(0), num_steps=7, solver=solver,
                                 adaptive=adaptive, rtol=1e-2, atol=1e-2)
    jax.effects_barrier()
    return calls["drift"], calls["score"], res


def test_nfe_exact_counted_by_callbacks():
    """Adaptive Heun: two evaluations per attempted step, rejected steps included (sigma a
    function of t here). Euler-Maruyama's one per step: the fixture's nfe == num_steps."""
    d, s, res = _count_evaluations("heun", True, sigma=lambda t: 0.5 + 0.5 * t)
    assert d == s == int(res.nfe) == 2 * int(res.num_steps) and res.nfe_exact
    assert int(res.num_steps) > 0 and int(res.num_rejected) > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "solver,per_step",
    [("euler", 1), ("heun", 2), ("shark", 2), (diffrax.SRA1(), 2), (diffrax.ReversibleHeun(), None),
     (diffrax.SPaRK(), 3), (diffrax.EulerHeun(), 1), (diffrax.Midpoint(), 2)],
    ids=["euler", "heun", "shark", "SRA1", "ReversibleHeun", "SPaRK", "EulerHeun", "Midpoint"])
def test_nfe_exact_for_more_solvers(solver, per_step):
    d, s, res = _count_evaluations(solver, False)
    assert d == s == int(res.nfe) and res.nfe_exact
    assert int(res.nfe) == (7 * per_step if per_step else 8)  # reversible Heun: 1 + 1 per step


def test_jit_equals_eager(forward_euler):
    run = jax.jit(lambda x, key: fm.sampling.sample_sde(drift, score, x, sigma=SIGMA, key=key,
                                                        num_steps=STEPS).x)
    np.testing.assert_allclose(np.asarray(run(source(), jax.random.key(1))),
                               np.asarray(forward_euler.x), rtol=1e-5, atol=1e-5)


def test_non_finite_solve_is_reported_or_raised(forward_euler):
    """A NaN start row: throw=False reports it, throw=True raises (the compiled solve is the
    fixture's: the policy is applied outside it)."""
    x0 = source().at[3, 1].set(jnp.nan)
    args = dict(sigma=SIGMA, key=jax.random.key(1), num_steps=STEPS, save_trajectory=True)
    res = fm.sampling.sample_sde(drift, score, x0, throw=False, **args)
    assert not bool(res.success)
    with pytest.raises(RuntimeError, match="sample_sde: the fixed-step Euler solve from t=0.0 to t=1.0"):
        fm.sampling.sample_sde(drift, score, x0, **args)


def test_cond_reaches_drift_and_score():
    class Seen(Exception):
        pass

    def needs_cond(x, t, cond):
        raise Seen(f"cond {cond.shape}")

    for kwargs in ({"drift": needs_cond, "score": score_c}, {"drift": drift_c, "score": needs_cond}):
        with pytest.raises(ValueError, match=r"cond=cond\) with x of shape \(5, 2\).*Seen: cond \(5, 3\)"):
            fm.sampling.sample_sde(kwargs["drift"], kwargs["score"], source()[:5], sigma=1.0,
                                   key=jax.random.key(0), cond=jnp.zeros((5, 3)))


def drift_c(x, t, cond):
    return drift(x, t)


def score_c(x, t, cond):
    return score(x, t)


# -- the probability-flow ODE -----------------------------------------------------------------
def test_probability_flow_of_the_bridge_sde_is_the_flow():
    full = lambda x, t: drift(x, t) + SIGMA**2 / 2 * score(x, t)
    field = fm.sampling.probability_flow(full, score, SIGMA)
    x, t = source()[:16], jnp.linspace(0.1, 0.9, 16)
    np.testing.assert_allclose(np.asarray(field(x, t)), np.asarray(drift(x, t)), rtol=1e-5, atol=1e-5)
    g = fm.sampling.probability_flow(full, score, lambda t: SIGMA + 0.0 * t)
    np.testing.assert_allclose(np.asarray(g(x, t)), np.asarray(drift(x, t)), rtol=1e-5, atol=1e-5)


def test_probability_flow_ode_reaches_the_data_marginal():
    full = lambda x, t: drift(x, t) + SIGMA**2 / 2 * score(x, t)
    res = fm.sampling.sample(fm.sampling.probability_flow(full, score, SIGMA), source(),
                             solver="rk4", num_steps=16)
    check_gaussian(res.x, 1.0, "probability flow t=1")


# -- score matching ------------------------------------------------------------------------------
def _family(theta, scale=1.0):
    """Scores around scale * s: s (1 + a) + b + c t s, linear in theta = (a, b, c)."""
    def s(x, t):
        base = scale * score(x, t)
        return base * (1 + theta[0]) + theta[1] + theta[2] * t[:, None] * base

    return s


@pytest.mark.parametrize("weighting,scale", [("lambda", 1.0), ("torchcfm", SIGMA**2 / 2)])
def test_score_loss_is_minimised_by_the_analytic_score(weighting, scale):
    """Zero semi-gradient at the analytic score (within K standard errors of the per-example
    gradients), and every perturbation raises the loss (same key: common random numbers)."""
    x0, x1 = joint_pairs(10000, seed=7)
    key = jax.random.key(8)

    @jax.jit
    def per_example(theta):
        return fm.losses.score_loss(_family(theta, scale), key, x0, x1, path=PATH,
                                    weighting=weighting)[1]["per_example"]

    zero = jnp.zeros(3)
    jac = np.asarray(jax.jacfwd(per_example)(zero))  # (n, 3)
    grad, se = jac.mean(0), jac.std(0, ddof=1) / np.sqrt(jac.shape[0])
    assert np.all(np.abs(grad) < K * se), (grad, se)
    base = float(per_example(zero).mean())
    for i in range(3):
        for step in (0.1, -0.1):
            theta = zero.at[i].set(step)
            assert float(per_example(theta).mean()) > base, (i, step)
    # a wrong score has a gradient far outside the noise
    far = np.asarray(jax.jacfwd(per_example)(jnp.array([0.3, 0.0, 0.0]))).mean(0)
    assert abs(far[0]) > 5 * K * se[0]


def test_score_loss_weightings():
    """lambda = sigma_t (ours) and 2 sigma_t / sigma^2 (torchcfm's compute_lambda, there with
    1e-8 added to sigma^2), on the bridge of sigma = 0.7."""
    from flowjax_fm.losses._score import _lambda

    path, t = fm.paths.BrownianBridgePath(sigma=0.7), np.linspace(0.05, 0.95, 7).astype(np.float32)
    sigma_t = 0.7 * np.sqrt(t * (1 - t))
    np.testing.assert_allclose(np.asarray(_lambda(path, jnp.asarray(t), "lambda")), sigma_t, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(_lambda(path, jnp.asarray(t), "torchcfm")),
                               2 * sigma_t / 0.49, rtol=1e-6)


@pytest.mark.slow  # imports torch
def test_score_loss_weighting_matches_torchcfm_compute_lambda():
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    torch = pytest.importorskip("torch")
    from flowjax_fm.losses._score import _lambda

    t = np.linspace(0.05, 0.95, 7).astype(np.float32)
    ours = np.asarray(_lambda(PATH, jnp.asarray(t), "torchcfm"))
    theirs = cfm.SchrodingerBridgeConditionalFlowMatcher(sigma=SIGMA).compute_lambda(torch.tensor(t))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)


def test_score_loss_draws_are_cfm_loss_draws_and_cond_is_passed():
    x0, x1 = joint_pairs(32, seed=1)
    cond = jnp.arange(32.0)[:, None]
    seen = {}

    def s(x, t, cond=None):
        seen["cond"] = cond
        return jnp.zeros_like(x)

    loss, aux = fm.losses.score_loss(s, jax.random.key(2), x0, x1, path=PATH, cond=cond)
    _, cfm_aux = fm.losses.cfm_loss(lambda x, t, cond=None: x, jax.random.key(2), x0, x1,
                                    path=PATH, cond=cond)
    np.testing.assert_array_equal(np.asarray(aux["t"]), np.asarray(cfm_aux["t"]))
    assert seen["cond"].shape == (32, 1)
    # with s = 0 the loss is the mean of eps^2: about 1
    assert abs(float(loss) - 1.0) < 0.25


# -- joint flow + score training ---------------------------------------------------------------
class FlowAndScore(nnx.Module):
    """Two MLPs in one module: the pair convention."""

    def __init__(self, rngs):
        self.flow = fm.models.MLP(D, (32,), rngs=rngs)
        self.score = fm.models.MLP(D, (32,), rngs=rngs)

    def __call__(self, x, t, cond=None):
        return self.flow(x, t), self.score(x, t)


def linear_apply(params, x, t, cond=None):
    """One linear map to 2 D outputs: the concatenated convention."""
    feats = jnp.concatenate([x, t[:, None], x * t[:, None], jnp.ones_like(t)[:, None]], axis=1)
    return feats @ params


def test_sf2m_objective_flow_part_is_paired_cfm_loss():
    x0, x1 = joint_pairs(64, seed=3)
    v = lambda x, t: jnp.sin(x) * t[:, None]
    both = lambda x, t: jnp.concatenate([v(x, t), -x], axis=-1)
    tsamp = fm.time_sampling.UniformTime()
    _, aux = fm.losses.SF2MObjective()(both, jax.random.key(4), x0, x1, path=PATH, time_sampler=tsamp)
    cfm, _ = fm.losses.paired_cfm_loss(v, jax.random.key(4), x0, x1, path=PATH, time_sampler=tsamp)
    np.testing.assert_allclose(float(aux["mse"].mean()), float(cfm), rtol=1e-6)
    ref, _ = fm.losses.score_loss(lambda x, t: -x, jax.random.key(0), x0, x1, path=PATH)
    assert aux["score"].shape == (64,) and float(ref) > 0


@pytest.mark.parametrize("convention", ["pair", "concatenated"])
def test_sf2m_objective_trains_through_make_train_step(convention):
    opt = optax.adam(3e-2 if convention == "concatenated" else 1e-2)
    if convention == "pair":
        model = FlowAndScore(nnx.Rngs(0))
        state = fm.training.init_state(model, opt)
    else:
        model = linear_apply
        state = fm.training.init_state(jnp.zeros((2 * D + 2, 2 * D)), opt)
    step = jax.jit(fm.training.make_train_step(model, optimizer=opt, path=PATH,
                                               objective=fm.losses.SF2MObjective(score_weight=0.5)))
    losses, mses = [], []
    for i in range(100):
        x0, x1 = joint_pairs(128, seed=100 + i)
        state, metrics = step(state, jax.random.key(i), x0, x1)
        losses.append(float(metrics["loss"]))
        mses.append(float(metrics["mse"]))
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert np.all(np.isfinite(losses)) and last < 0.7 * first, (first, last)
    assert np.mean(mses[-10:]) < np.mean(mses[:10])
