"""Few-step objectives (MeanFlow, shortcut, consistency) and few-step sampling.

Checked against a closed form: the flow from N(0, I) to N(mu, s^2 I) with independent pairs on
the straight path is affine, psi_t(x0) = t mu + sigma_t x0 with sigma_t^2 = (1 - t)^2 + t^2 s^2,
so its average velocity over [t, r] is known exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowjax_fm as fm
from flowjax_fm.losses._few_step import call_two_time

MU = jnp.array([2.0, -1.0])
S = 0.5
PATH = fm.paths.CondOTPath()


def sigma(t):
    return jnp.sqrt((1 - t) ** 2 + (t * S) ** 2)


def exact_u(x, t, r, a=0.0):
    """The exact average velocity over [t, r] (a * x added as a perturbation)."""
    gap = r - t
    same = gap == 0
    safe = jnp.where(same, 1.0, gap)
    z = (x - t[:, None] * MU) / sigma(t)[:, None]  # the source point of x
    avg = (r[:, None] * MU + sigma(r)[:, None] * z - x) / safe[:, None]
    dsig = (-(1 - t) + t * S**2) / sigma(t)
    inst = MU + dsig[:, None] * z
    return jnp.where(same[:, None], inst, avg) + a * x


def gaussian_batch(n, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(k0, (n, 2))
    x1 = MU + S * jax.random.normal(k1, (n, 2))
    return x0, x1


def test_jvp_target_equals_finite_difference_total_derivative():
    """aux['mse'] with the JVP target equals the error against a central-difference target."""
    x0, x1 = gaussian_batch(64)
    w = jax.random.normal(jax.random.key(3), (2, 2))

    def u(x, t, r):  # a smooth nonlinear two-time field
        return jnp.tanh(x @ w) * (1 + t[:, None]) + jnp.sin(3 * r)[:, None] + x * (r - t)[:, None]

    _, aux = fm.losses.meanflow_loss(u, jax.random.key(1), x0, x1, path=PATH, ratio=1.0,
                                     power=None)
    t, r = aux["t"], aux["r"]
    assert bool(jnp.all(r >= t)) and bool(jnp.any(r > t))
    # the loss pairs independently with its own key: recover x_t from the pairing it used
    k_pair = jax.random.split(jax.random.key(1), 3)[0]
    p0, p1, _ = fm.losses.pair_batch(k_pair, x0, x1, coupling=fm.couplings.IndependentCoupling())
    x_t = (1 - t)[:, None] * p0 + t[:, None] * p1
    v = p1 - p0
    h = 1e-3
    x64 = lambda a: np.asarray(a, np.float64)
    up = x64(u(x_t + h * v, t + h, r))
    um = x64(u(x_t - h * v, t - h, r))
    dudt = (up - um) / (2 * h)
    target = x64(v) + x64(r - t)[:, None] * dudt
    mse = np.mean((x64(u(x_t, t, r)) - target) ** 2, axis=1)
    np.testing.assert_allclose(np.asarray(aux["mse"]), mse, rtol=2e-3, atol=1e-5)


def _semi_gradient(loss_fn, a):
    return jax.grad(lambda a: loss_fn(a)[0])(a)


@pytest.mark.parametrize("ratio", [0.25, 1.0])
def test_meanflow_loss_is_stationary_at_the_exact_average_velocity(ratio):
    """The stop-gradient loss has zero gradient at the closed-form u and pulls back to it."""
    x0, x1 = gaussian_batch(16384)

    def loss(a):
        u = lambda x, t, r: exact_u(x, t, r, a)
        return fm.losses.meanflow_loss(u, jax.random.key(2), x0, x1, path=PATH, ratio=ratio,
                                       power=None)

    g0, gp, gm = (float(_semi_gradient(loss, jnp.float32(a))) for a in (0.0, 0.3, -0.3))
    assert gp > 0 > gm
    assert abs(g0) < 0.05 * min(gp, -gm), (g0, gp, gm)


def test_meanflow_at_r_equal_t_is_the_cfm_loss_and_minimal_at_the_optimum():
    x0, x1 = gaussian_batch(8192)

    def loss(a):
        u = lambda x, t, r: exact_u(x, t, r, a)
        return float(fm.losses.meanflow_loss(u, jax.random.key(4), x0, x1, path=PATH,
                                             ratio=0.0, power=None)[0])

    values = {a: loss(a) for a in (-0.2, 0.0, 0.2)}
    assert values[0.0] < values[-0.2] and values[0.0] < values[0.2]


def test_consistency_loss_is_stationary_at_the_exact_endpoint_velocity():
    x0, x1 = gaussian_batch(16384)

    def loss(a):
        F = lambda x, t: exact_u(x, t, jnp.ones_like(t), a)
        return fm.losses.consistency_loss(F, jax.random.key(5), x0, x1, path=PATH)

    g0, gp, gm = (float(_semi_gradient(loss, jnp.float32(a))) for a in (0.0, 0.3, -0.3))
    assert gp > 0 > gm
    assert abs(g0) < 0.05 * min(gp, -gm), (g0, gp, gm)


def test_shortcut_self_consistency_is_exact_for_the_exact_average_velocity():
    """Two half jumps of the exact u equal one double jump: only the d = 0 rows have error."""
    x0, x1 = gaussian_batch(512)
    _, aux = fm.losses.shortcut_loss(exact_u, jax.random.key(6), x0, x1, path=PATH,
                                     bootstrap=1.0, max_steps=128)
    gap = aux["r"] - aux["t"]
    finest = np.isclose(np.asarray(gap), 2 / 128)
    coarse = ~finest
    assert coarse.sum() > 300
    assert float(jnp.max(aux["mse"][coarse])) < 1e-9
    # the finest level uses the instantaneous velocity for its half steps: O(d^2) error
    assert float(jnp.max(aux["mse"][finest])) < 1e-3
    assert bool(jnp.all(aux["r"] <= 1.0 + 1e-6))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_few_step_sampling_of_the_exact_field_is_the_exact_flow_map(k):
    x0, _ = gaussian_batch(32)
    res = fm.sampling.sample_few_step(exact_u, x0, num_steps=k)
    np.testing.assert_allclose(res.x, MU + S * x0, rtol=1e-5, atol=1e-5)
    assert int(res.nfe) == k


def test_few_step_grid_trajectory_and_positional_field():
    x0, _ = gaussian_batch(8)
    ts = jnp.array([0.0, 0.2, 0.7, 1.0])
    positional = lambda x, a, b: exact_u(x, a, b)  # no parameter named r: called positionally
    res = fm.sampling.sample_few_step(positional, x0, ts=ts, save_trajectory=True)
    assert res.trajectory.shape == (4, 8, 2) and int(res.nfe) == 3
    for i, t in enumerate(ts.tolist()):
        np.testing.assert_allclose(res.trajectory[i], t * MU + sigma(t) * x0, atol=2e-5)
    jitted = jax.jit(lambda x: fm.sampling.sample_few_step(exact_u, x, num_steps=2).x)(x0)
    np.testing.assert_allclose(jitted, MU + S * x0, atol=1e-5)


def test_call_two_time_dispatch():
    x, t = jnp.ones((2, 1)), jnp.zeros(2)
    assert call_two_time(lambda x, t, r: r[:, None] + x, x, t, t + 1).tolist() == [[2.0], [2.0]]
    assert call_two_time(lambda x, t, s: s[:, None] + x, x, t, t + 2).tolist() == [[3.0], [3.0]]
    with pytest.raises(TypeError, match="two-time field"):
        call_two_time(3, x, t, t)


def test_meanflow_guidance_at_scale_one_equals_no_guidance():
    x0, x1 = gaussian_batch(64)
    labels = jnp.arange(64) % 3

    def u(x, t, r, cond=None):
        return x * (1 + cond[:, None]) + (r - t)[:, None]

    kw = dict(path=PATH, cond=labels, cond_dropout=0.3, null_cond=jnp.int32(3), power=None)
    plain, _ = fm.losses.meanflow_loss(u, jax.random.key(7), x0, x1, **kw)
    guided, _ = fm.losses.meanflow_loss(u, jax.random.key(7), x0, x1, guidance_scale=1.0, **kw)
    np.testing.assert_allclose(guided, plain, rtol=1e-6)
    stronger, _ = fm.losses.meanflow_loss(u, jax.random.key(7), x0, x1, guidance_scale=2.0, **kw)
    assert abs(float(stronger) - float(plain)) > 1e-3
    with pytest.raises(ValueError, match="condition dropout"):
        fm.losses.meanflow_loss(u, jax.random.key(7), x0, x1, path=PATH, cond=labels,
                                guidance_scale=2.0)


def two_time_apply(params, x, t, r, cond=None):
    h = jnp.tanh(jnp.concatenate([x, t[:, None], (r - t)[:, None]], 1) @ params["w1"] + params["b1"])
    return h @ params["w2"]


def two_time_params(key):
    k1, k2 = jax.random.split(key)
    return {"w1": 0.5 * jax.random.normal(k1, (4, 32)), "b1": jnp.zeros(32),
            "w2": 0.1 * jax.random.normal(k2, (32, 2))}


@pytest.mark.parametrize("objective", [fm.losses.MeanFlowObjective(),
                                       fm.losses.ShortcutObjective(max_steps=8)])
def test_two_time_objectives_train_through_make_train_step(objective):
    opt = optax.adam(3e-3)
    step = fm.training.make_train_step(two_time_apply, optimizer=opt, path=PATH,
                                       coupling=fm.couplings.ExactOTCoupling(), objective=objective)
    state = fm.training.init_state(two_time_params(jax.random.key(0)), opt)
    x0, x1 = gaussian_batch(64)
    state, metrics = jax.jit(step)(state, jax.random.key(1), x0, x1)
    assert set(metrics) == {"loss", "grad_norm", "mse"}
    assert np.isfinite(float(metrics["loss"]))


def test_fit_with_meanflow_learns_one_step_generation():
    """A short fit: one-step samples land near the target Gaussian (mean and spread)."""
    opt = optax.adam(3e-3)
    step = fm.training.make_train_step(two_time_apply, optimizer=opt, path=PATH,
                                       objective=fm.losses.MeanFlowObjective(ratio=0.5))
    state = fm.training.init_state(two_time_params(jax.random.key(0)), opt)
    target = lambda key, n: MU + S * jax.random.normal(key, (n, 2))
    source = lambda key, n: jax.random.normal(key, (n, 2))
    state, _ = fm.training.fit(step, state, jax.random.key(1), source, target, num_steps=600,
                               batch_size=128, progress=False)
    u = lambda x, t, r: two_time_apply(state.params, x, t, r)
    x = fm.sampling.sample_few_step(u, jax.random.normal(jax.random.key(2), (2000, 2))).x
    np.testing.assert_allclose(x.mean(0), MU, atol=0.15)
    np.testing.assert_allclose(x.std(0), [S, S], atol=0.15)


def test_objective_and_model_time_counts_must_agree():
    from flax import nnx

    model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="two times"):
        fm.training.make_train_step(model, optimizer=optax.adam(1e-3), path=PATH,
                                    objective=fm.losses.MeanFlowObjective())
    with pytest.raises(TypeError, match="AbstractObjective"):
        fm.training.make_train_step(model, optimizer=optax.adam(1e-3), path=PATH,
                                    objective="meanflow")


def test_changing_an_objective_leaf_does_not_retrace():
    opt = optax.adam(1e-3)
    traces = []

    def apply(params, x, t, r, cond=None):
        traces.append(1)
        return two_time_apply(params, x, t, r)

    x0, x1 = gaussian_batch(16)
    state = fm.training.init_state(two_time_params(jax.random.key(0)), opt)
    run = jax.jit(lambda step, s: step(s, jax.random.key(0), x0, x1))
    for ratio in (0.25, 0.5):
        step = fm.training.make_train_step(apply, optimizer=opt, path=PATH,
                                           objective=fm.losses.MeanFlowObjective(ratio=ratio))
        run(step, state)
    first = len(traces)
    step = fm.training.make_train_step(apply, optimizer=opt, path=PATH,
                                       objective=fm.losses.MeanFlowObjective(ratio=0.75))
    run(step, state)
    assert len(traces) == first


@pytest.mark.parametrize("objective", [fm.losses.MeanFlowObjective(),
                                       fm.losses.ShortcutObjective(max_steps=8)])
def test_few_step_objectives_give_the_same_step_on_8_devices(objective):
    """shard_step and pmap_step run the same objective: same parameters as one device."""
    import chex

    assert jax.device_count() == 8
    opt = optax.sgd(0.05)
    step = fm.training.make_train_step(two_time_apply, optimizer=opt, path=PATH,
                                       coupling=fm.couplings.ExactOTCoupling(), objective=objective)
    state0 = fm.training.init_state(two_time_params(jax.random.key(0)), opt)
    x0, x1 = gaussian_batch(64)
    one, m1 = jax.jit(step)(state0, jax.random.key(3), x0, x1)
    mesh = fm.training.data_mesh(8)
    eight, m8 = fm.training.shard_step(step, mesh)(
        fm.training.replicate(state0, mesh), jax.random.key(3), x0, x1)
    chex.assert_trees_all_close(one.params, eight.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m8["mse"], m1["mse"], rtol=1e-4)


def test_meanflow_guidance_trains_through_fit_with_traced_hyperparameters():
    """fit passes the step as an argument: guidance_scale / guidance_mix are traced leaves."""
    opt = optax.adam(1e-3)

    def apply(params, x, t, r, cond=None):
        return two_time_apply(params, x, t, r) * (1.0 + 0.1 * cond[:, None])

    labels = (jnp.arange(256) % 3).astype(jnp.int32)
    x1 = MU + S * jax.random.normal(jax.random.key(1), (256, 2))
    source = lambda key, n: jax.random.normal(key, (n, 2))
    for mix in (None, 0.3):
        objective = fm.losses.MeanFlowObjective(guidance_scale=2.0, guidance_mix=mix)
        step = fm.training.make_train_step(apply, optimizer=opt, path=PATH, objective=objective,
                                           cond_dropout=0.1, null_cond=jnp.int32(3))
        state = fm.training.init_state(two_time_params(jax.random.key(0)), opt)
        state, hist = fm.training.fit(step, state, jax.random.key(2), source, (x1, labels),
                                      num_steps=4, batch_size=32, progress=False)
        assert np.isfinite(hist["loss"]).all() and "mse" in hist
