"""fm.sampling: diffrax ODE integration against closed-form flows, exact NFE, errors."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm._pytree import pytree_dataclass

# Gaussian -> Gaussian: x0 ~ N(0, I), x1 ~ N(m, s^2 I), independent coupling, straight path.
M, S = 2.0, 0.5


def gaussian_field(x, t):
    t = t[:, None]
    return M + (t * S**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * S**2) * (x - t * M)


def gaussian_flow(x0, t):
    """Exact flow map x(t) = t m + sqrt((1 - t)^2 + t^2 s^2) x0; t of shape () or (T,)."""
    t = jnp.asarray(t)[..., None, None]
    return t * M + jnp.sqrt((1 - t) ** 2 + t**2 * S**2) * x0


def test_gaussian_flow_map_is_exact():
    # d/dt of the closed-form map equals the marginal velocity at the mapped point.
    x0 = jax.random.normal(jax.random.key(0), (16, 2))
    for t in (0.1, 0.5, 0.9):
        dxdt = jax.jvp(lambda tt: gaussian_flow(x0, tt), (jnp.float32(t),), (1.0,))[1]
        v = gaussian_field(gaussian_flow(x0, t), jnp.full((16,), t))
        np.testing.assert_allclose(dxdt, v, rtol=1e-5, atol=1e-5)


class Counter:
    """Counts executed calls of a vector field through a host callback."""

    def __init__(self, field):
        self.field, self.calls = field, 0

    def _bump(self):
        self.calls += 1

    def __call__(self, x, t):
        jax.debug.callback(self._bump)
        return self.field(x, t)


# (solver, num_steps, per-point tolerance against the exact map)
SOLVER_CASES = [
    ("euler", 400, 2e-2),
    ("midpoint", 32, 1e-3),
    ("heun", 32, 5e-3),
    ("rk4", 16, 1e-4),
    # adaptive, rtol = atol = 1e-5 per step: the global error is about 10x that
    ("tsit5", None, 3e-4),
    ("dopri5", None, 3e-4),
    (diffrax.Bosh3(), None, 1e-3),
]


@pytest.mark.parametrize("solver,num_steps,tol", SOLVER_CASES, ids=lambda c: str(c)[:12])
def test_maps_gaussian_to_gaussian(solver, num_steps, tol):
    n = 4000
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    field = Counter(gaussian_field)
    res = fm.sampling.sample(field, x0, solver=solver, num_steps=num_steps)
    jax.effects_barrier()
    assert res.x.shape == x0.shape and res.x.dtype == x0.dtype
    assert res.trajectory is None and res.ts is None
    assert float(jnp.abs(res.x - gaussian_flow(x0, 1.0)).max()) < tol
    # sample statistics of N(m, s^2 I): a few standard errors, plus the solver error
    se_mean, se_std = S / np.sqrt(n), S / np.sqrt(2 * n)
    np.testing.assert_allclose(res.x.mean(0), M, atol=4 * se_mean + tol)
    np.testing.assert_allclose(res.x.std(0), S, atol=4 * se_std + tol)
    # nfe is the true number of calls
    assert res.nfe.dtype == jnp.int32 and res.nfe.shape == ()
    assert int(res.nfe) == field.calls
    assert bool(res.success) and res.nfe_exact
    if num_steps is not None:
        assert int(res.num_steps) == num_steps and int(res.num_rejected) == 0


STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "rk4_38": 4}


@pytest.mark.parametrize(
    "solver,num_steps,adjoint",
    # (test_maps_gaussian_to_gaussian counts the other solver / step-size combinations)
    [("tsit5", 5, None), ("rk4", None, None), ("dopri5", None, None), ("tsit5", None, "backsolve"),
     (diffrax.Dopri8(), 3, None)],
    ids=lambda c: str(c)[:12],
)
def test_nfe_is_exact(solver, num_steps, adjoint):
    x0 = jax.random.normal(jax.random.key(2), (8, 2))
    field = Counter(gaussian_field)
    res = fm.sampling.sample(field, x0, solver=solver, num_steps=num_steps, rtol=1e-6, atol=1e-6,
                             adjoint=adjoint)
    jax.effects_barrier()
    assert int(res.nfe) == field.calls
    steps = int(res.num_steps)
    fsal = solver in ("tsit5", "dopri5")  # 7 stages, first same as last
    if num_steps is not None:
        assert not fsal or int(res.nfe) == 6 * steps + 1
    elif adjoint == "backsolve":
        # the initial-step rule's 2, and the first stage evaluated again (not reused)
        assert int(res.nfe) == 6 * steps + 3
    elif fsal:
        # the initial-step rule's 2, its f(t0, x0) reused as the first stage
        assert int(res.nfe) == 6 * steps + 2
    else:
        assert int(res.nfe) == STAGES[solver] * steps + 2
    if num_steps is None:
        assert steps > 1 and int(res.num_rejected) >= 0


def test_initial_step_follows_hairer():
    # y' = -y, y0 = 1, rtol = atol = 1e-3: d0 = d1 = 1/2e-3, h0 = 0.01, d2 = 1/2e-3 too
    # (f is linear), so h = min(100 h0, (0.01 / d1)^(1/5)) = (2e-5)^(1/5)
    from flowjax_fm._ode import initial_step

    dt0, f0 = initial_step(lambda t, y, a: -y, 0.0, 1.0, jnp.ones((4, 2)), None, error_order=5,
                           rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(dt0), (0.01 * 2e-3) ** 0.2, rtol=1e-5)
    np.testing.assert_array_equal(f0, -jnp.ones((4, 2)))
    back, _ = initial_step(lambda t, y, a: -y, 1.0, 0.0, jnp.ones((4, 2)), None, error_order=5,
                           rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(float(back), -float(dt0), rtol=1e-6)


def rotation_field(x, t):
    w = (1 + 2 * t)[:, None]
    return w * jnp.stack([-x[:, 1], x[:, 0]], axis=1)


def rotation_flow(x0, t):
    angle = t + t**2
    c, s = np.cos(angle), np.sin(angle)
    return jnp.stack([c * x0[:, 0] - s * x0[:, 1], s * x0[:, 0] + c * x0[:, 1]], axis=1)


@pytest.mark.parametrize(
    "solver,order,steps",
    [
        # two step counts a factor 4 apart where the error ratio is clean (compiles are
        # the cost here), three for rk4 which leaves its asymptotic regime sooner
        ("euler", 1, (16, 64)),
        ("midpoint", 2, (8, 32)),
        ("heun", 2, (8, 32)),
        ("rk4", 4, (4, 8, 16)),
        ("rk4_38", 4, (4, 8, 16)),
    ],
)
def test_order_of_convergence(solver, order, steps):
    # A rotation with time-varying speed (angle t + t^2): no special structure to cancel
    # the leading error term. (On the Gaussian flow above the explicit midpoint method is
    # superconvergent, slope ~3.)
    x0 = jax.random.normal(jax.random.key(3), (64, 2))
    exact = rotation_flow(x0, 1.0)
    errors = [
        float(
            jnp.abs(
                fm.sampling.sample(rotation_field, x0, solver=solver, num_steps=n).x - exact
            ).max()
        )
        for n in steps
    ]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(-slope - order) < 0.3, (errors, slope)


def test_backward_integration_recovers_source():
    solver, num_steps, tol = "rk4", 32, 1e-4
    x0 = jax.random.normal(jax.random.key(4), (256, 2))
    x1 = gaussian_flow(x0, 1.0)
    back = fm.sampling.encode(gaussian_field, x1, solver=solver, num_steps=num_steps)
    assert float(jnp.abs(back.x - x0).max()) < tol
    same = fm.sampling.sample(
        gaussian_field, x1, solver=solver, num_steps=num_steps, t0=1.0, t1=0.0
    )
    np.testing.assert_array_equal(back.x, same.x)
    err = fm.sampling.round_trip_error(gaussian_field, x0, solver=solver, num_steps=num_steps)
    assert err.shape == (256,) and float(err.max()) < 2 * tol


def test_trajectory_fixed_steps():
    x0 = jax.random.normal(jax.random.key(5), (32, 2))
    res = fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=10, save_trajectory=True)
    assert res.trajectory.shape == (11, 32, 2) and res.ts.shape == (11,)
    np.testing.assert_allclose(res.ts, np.linspace(0.0, 1.0, 11), atol=1e-6)
    np.testing.assert_array_equal(res.trajectory[0], x0)
    np.testing.assert_array_equal(res.trajectory[-1], res.x)
    np.testing.assert_allclose(res.trajectory, gaussian_flow(x0, res.ts), atol=1e-4)


def test_trajectory_adaptive_and_backward():
    x0 = jax.random.normal(jax.random.key(6), (32, 2))
    res = fm.sampling.sample(gaussian_field, x0, save_trajectory=True)
    assert res.trajectory.shape == (101, 32, 2) and res.ts.shape == (101,)
    np.testing.assert_allclose(res.trajectory, gaussian_flow(x0, res.ts), atol=3e-4)
    x1 = res.x
    back = fm.sampling.encode(gaussian_field, x1, save_trajectory=True, trajectory_points=5)
    assert back.trajectory.shape == (5, 32, 2)
    np.testing.assert_allclose(back.ts, [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-6)
    np.testing.assert_array_equal(back.trajectory[0], x1)
    np.testing.assert_allclose(back.trajectory[-1], x0, atol=5e-4)


def test_event_shape_and_condition():
    # event (3, 4); the condition is a per-example scale: v = c * x, so x(1) = e^c x0
    x0 = jax.random.normal(jax.random.key(7), (6, 3, 4))
    c = jnp.linspace(-1.0, 1.0, 6)

    def field(x, t, *, cond):
        assert t.shape == (6,)
        return cond[:, None, None] * x

    res = fm.sampling.sample(field, x0, cond=c)
    np.testing.assert_allclose(res.x, jnp.exp(c)[:, None, None] * x0, rtol=1e-4, atol=1e-4)
    # a field without cond is called without the keyword
    no_cond = fm.sampling.sample(lambda x, t: -x, x0, solver="rk4", num_steps=20)
    np.testing.assert_allclose(no_cond.x, np.exp(-1.0) * x0, rtol=1e-5, atol=1e-6)


def test_jit_equals_eager():
    solver, num_steps = "tsit5", None
    x0 = jax.random.normal(jax.random.key(8), (64, 2))
    eager = fm.sampling.sample(gaussian_field, x0, solver=solver, num_steps=num_steps)

    @jax.jit
    def run(x):
        return fm.sampling.sample(
            gaussian_field, x, solver=solver, num_steps=num_steps, save_trajectory=True
        )

    jitted = run(x0)
    np.testing.assert_allclose(jitted.x, eager.x, rtol=1e-6, atol=1e-6)
    assert int(jitted.nfe) == int(eager.nfe)
    # a pytree field (like an NNX model) passed through jit: its leaves are tracers,
    # and a frozen dataclass hashes its fields, so the field must never be a cache key
    f = jax.jit(lambda field, x: fm.sampling.sample(field, x, num_steps=4, solver="rk4").x)
    np.testing.assert_allclose(f(Scale(jnp.float32(0.5)), x0), np.exp(0.5) * x0, rtol=1e-4)


@pytree_dataclass
class Scale:
    rate: jax.Array

    def __call__(self, x, t):
        return self.rate * x


def stiff(x, t):
    return -1e4 * (x - jnp.cos(t)[:, None])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_failure_is_raised_or_reported(jit):
    # one policy: the same RuntimeError eagerly and under jit; success=False with throw=False
    x0 = jnp.ones((4, 2))
    wrap = jax.jit if jit else (lambda f: f)
    run = wrap(lambda x: fm.sampling.sample(stiff, x, max_steps=8))
    with pytest.raises(RuntimeError, match="raise max_steps"):
        jax.block_until_ready(run(x0).x)
    res = wrap(lambda x: fm.sampling.sample(stiff, x, max_steps=8, throw=False))(x0)
    assert not bool(res.success)


@pytest.mark.parametrize(
    "field,solver",
    [(lambda x, t: x * jnp.nan, "tsit5"), (lambda x, t: 1e3 * x**2, "rk4")],
    ids=["nan-field", "exploding-rk4"],
)
def test_fixed_step_non_finite_is_a_failure(field, solver):
    x0 = jnp.ones((4, 2))
    with pytest.raises(RuntimeError, match="non-finite"):
        jax.block_until_ready(fm.sampling.sample(field, x0, solver=solver, num_steps=10).x)
    run = jax.jit(lambda x: fm.sampling.sample(field, x, solver=solver, num_steps=10, throw=False))
    assert not bool(run(x0).success)


def test_ts_is_the_step_grid_of_fixed_steps():
    x0 = jax.random.normal(jax.random.key(9), (16, 2))
    grid = jnp.array([0.0, 0.1, 0.3, 0.6, 1.0])
    field = Counter(gaussian_field)
    res = fm.sampling.sample(field, x0, solver="euler", ts=grid)
    jax.effects_barrier()
    # Euler by hand on the uneven grid
    x, states = x0, [x0]
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        x = x + (b - a) * gaussian_field(x, jnp.full((16,), a))
        states.append(x)
    np.testing.assert_allclose(res.trajectory, jnp.stack(states), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.ts, grid)
    assert int(res.nfe) == 4 == field.calls and int(res.num_steps) == 4
    # save times without t0 / t1: those are added to the step grid, not to the output
    part = fm.sampling.sample(gaussian_field, x0, solver="euler", ts=grid[2:])
    x = x0 + 0.3 * gaussian_field(x0, jnp.zeros((16,)))  # the grid is (0, 0.3, 0.6, 1)
    assert part.trajectory.shape == (3, 16, 2) and int(part.nfe) == 3
    np.testing.assert_allclose(part.trajectory[0], x, rtol=1e-5, atol=1e-6)
    # rk4 with the constant controller: ts is its grid; on an even grid, num_steps agrees
    even = fm.sampling.sample(gaussian_field, x0, solver="rk4", ts=jnp.linspace(0, 1, 9),
                              stepsize_controller="constant")
    steps = fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=8)
    np.testing.assert_allclose(even.x, steps.x, rtol=1e-6, atol=1e-6)
    assert int(even.nfe) == int(steps.nfe) == 32


def test_ts_saves_an_adaptive_solve_and_backward():
    x0 = jax.random.normal(jax.random.key(10), (16, 2))
    ts = jnp.array([0.0, 0.25, 0.7, 1.0])
    res = fm.sampling.sample(gaussian_field, x0, ts=ts)
    np.testing.assert_allclose(res.ts, ts)
    np.testing.assert_allclose(res.trajectory, gaussian_flow(x0, ts), atol=3e-4)
    assert int(res.num_steps) > 3  # the steps are the solver's own
    back = fm.sampling.encode(gaussian_field, res.x, ts=ts[::-1], solver="euler")
    assert back.trajectory.shape == (4, 16, 2) and int(back.nfe) == 3


def test_controller_strings_and_objects():
    x0 = jax.random.normal(jax.random.key(11), (16, 2))
    default = fm.sampling.sample(gaussian_field, x0, rtol=1e-4, atol=1e-4)
    pid = fm.sampling.sample(gaussian_field, x0, rtol=1e-4, atol=1e-4, stepsize_controller="pid")
    obj = fm.sampling.sample(gaussian_field, x0,
                             stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-4))
    np.testing.assert_array_equal(pid.x, default.x)
    np.testing.assert_array_equal(obj.x, default.x)
    assert int(obj.nfe) == int(default.nfe)
    # a PI controller (its own coefficients) still counts exactly
    field = Counter(gaussian_field)
    pi = diffrax.PIDController(rtol=1e-4, atol=1e-4, pcoeff=0.3, icoeff=0.4)
    res = fm.sampling.sample(field, x0, stepsize_controller=pi)
    jax.effects_barrier()
    assert int(res.nfe) == field.calls
    fixed = fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=4,
                               stepsize_controller=diffrax.ConstantStepSize())
    np.testing.assert_array_equal(
        fixed.x, fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=4).x)


@pytree_dataclass
class ScaledGaussian:
    rate: jax.Array

    def __call__(self, x, t):
        return self.rate * gaussian_field(x, t)


def test_jvp_through_fixed_step_sample_matches_finite_differences():
    # (the default DirectAdjoint is reverse-mode differentiable too: test_likelihood's
    # rk4 gradient check runs through it)
    with jax.enable_x64(True):
        x0 = jax.random.normal(jax.random.key(12), (8, 2), jnp.float64)
        u = jax.random.normal(jax.random.key(13), (8, 2), jnp.float64)

        def run(x, rate):
            return fm.sampling.sample(ScaledGaussian(jnp.asarray(rate)), x, solver="rk4", num_steps=6).x

        # tangents in x0 and in a parameter of the field, against central differences
        _, tangent = jax.jvp(run, (x0, 1.0), (u, 0.5))
        eps = 1e-6
        fd = (run(x0 + eps * u, 1.0 + 0.5 * eps) - run(x0 - eps * u, 1.0 - 0.5 * eps)) / (2 * eps)
        np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-8)


def test_adjoint_options():
    x0 = jax.random.normal(jax.random.key(14), (8, 2))
    ref = fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=4).x
    for adjoint in ("direct", "recursive", diffrax.RecursiveCheckpointAdjoint()):
        out = fm.sampling.sample(gaussian_field, x0, solver="rk4", num_steps=4, adjoint=adjoint).x
        np.testing.assert_allclose(out, ref, rtol=1e-6)
    # the recursive adjoint is reverse-only: jvp needs a forward-capable one
    with pytest.raises(TypeError):
        jax.jvp(lambda x: fm.sampling.sample(gaussian_field, x, solver="rk4", num_steps=4,
                                             adjoint="recursive").x, (x0,), (x0,))
    # an adaptive solve is forward-differentiable with adjoint="forward": d x1 / d x0 = s I
    # for the Gaussian flow map x1 = m + s x0
    _, tangent = jax.jvp(lambda x: fm.sampling.sample(gaussian_field, x, adjoint="forward").x,
                         (x0,), (jnp.ones_like(x0),))
    np.testing.assert_allclose(tangent, S, atol=2e-4)


def test_bad_inputs():
    x0 = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="euler, midpoint, heun, rk4, rk4_38, tsit5, dopri5"):
        fm.sampling.sample(gaussian_field, x0, solver="rk45")
    with pytest.raises(ValueError, match="recursive, direct, forward, backsolve"):
        fm.sampling.sample(gaussian_field, x0, adjoint="adjoint")
    with pytest.raises(ValueError, match="constant, pid"):
        fm.sampling.sample(gaussian_field, x0, stepsize_controller="adaptive")
    with pytest.raises(ValueError, match="step-size controller object"):
        fm.sampling.sample(gaussian_field, x0, stepsize_controller=1e-3)
    with pytest.raises(ValueError, match="num_steps=None"):
        fm.sampling.sample(gaussian_field, x0, num_steps=4, stepsize_controller="pid")
    with pytest.raises(ValueError, match="num_steps=... or ts=..."):
        fm.sampling.sample(gaussian_field, x0, stepsize_controller="constant")
    with pytest.raises(ValueError, match="step grid"):
        fm.sampling.sample(gaussian_field, x0, num_steps=4, ts=jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="strictly increasing"):
        fm.sampling.sample(gaussian_field, x0, ts=jnp.array([0.0, 0.6, 0.5, 1.0]))
    with pytest.raises(ValueError, match="within"):
        fm.sampling.sample(gaussian_field, x0, ts=jnp.array([0.0, 1.5]))
    with pytest.raises(ValueError, match="1D"):
        fm.sampling.sample(gaussian_field, x0, ts=jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        fm.sampling.sample(gaussian_field, jnp.zeros(4))
    with pytest.raises(ValueError, match="num_steps"):
        fm.sampling.sample(gaussian_field, x0, num_steps=0)
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4, 3\)"):
        fm.sampling.sample(lambda x, t: jnp.zeros((4, 3)), x0)
    with pytest.raises(ValueError, match="dtype"):
        fm.sampling.sample(lambda x, t: x.astype(jnp.float16), x0)
    with pytest.raises(ValueError, match="num_steps"):
        fm.sampling.sample(gaussian_field, x0, solver="euler")  # no error estimate
    with pytest.raises(ValueError, match="cond"):
        fm.sampling.sample(gaussian_field, x0, cond=jnp.zeros(4))  # field takes no cond
    with pytest.raises(ValueError, match="trajectory_points"):
        fm.sampling.sample(gaussian_field, x0, save_trajectory=True, trajectory_points=1)
