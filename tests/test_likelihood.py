"""Tests for fm.likelihood: closed-form Gaussian flows, Hutchinson, normalisation, gradients, errors."""


import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.likelihood import bits_per_dim, divergence, log_prob


def _rotation(d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return jnp.asarray(q, jnp.float32)


def gaussian_flow(d, seed=0):
    """Field, mean and covariance of the flow N(0, I) -> N(mu, Q diag(s^2) Q^T).

    Independent coupling and the straight path give, per axis of the rotated frame, the
    closed-form marginal velocity v(t, y) = m + (t s^2 - (1 - t)) / ((1 - t)^2 + t^2 s^2) (y - t m);
    the rotation Q makes the Jacobian non-diagonal (so Hutchinson's estimate has variance).
    """
    rng = np.random.default_rng(seed)
    m = jnp.asarray(rng.normal(size=d), jnp.float32)
    s = jnp.asarray(rng.uniform(0.5, 1.5, size=d), jnp.float32)
    q = _rotation(d, seed)

    def v(x, t):
        y = x @ q  # rotated frame (per-row)
        t = t[:, None]
        u = m + (t * s**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * s**2) * (y - t * m)
        return u @ q.T

    mean = q @ m
    cov = q @ jnp.diag(s**2) @ q.T
    return v, mean, cov


def mvn_logpdf(x, mean, cov):
    return jax.scipy.stats.multivariate_normal.logpdf(x, mean, cov)


@pytest.mark.parametrize("d", [2, 10])
def test_exact_matches_gaussian_closed_form(d):
    v, mean, cov = gaussian_flow(d)
    x1 = mean + jax.random.normal(jax.random.key(0), (64, d)) @ jnp.linalg.cholesky(cov).T
    logp = log_prob(v, x1, rtol=1e-6, atol=1e-6)
    ref = mvn_logpdf(x1, mean, cov)
    assert logp.shape == (64,)
    np.testing.assert_allclose(logp, ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_within_three_standard_errors(probe):
    d, reps = 5, 400
    v, mean, cov = gaussian_flow(d, seed=1)
    x1 = mean + jax.random.normal(jax.random.key(2), (3, d))
    exact = log_prob(v, x1)
    # every copy of a point draws its own probe: `reps` independent estimates in one solve
    est = log_prob(v, jnp.repeat(x1, reps, axis=0), key=jax.random.key(3),
                   estimator="hutchinson", probe=probe).reshape(3, reps)
    se = est.std(axis=1, ddof=1) / np.sqrt(reps)
    assert bool((se > 1e-4).all())  # the estimator really is random here
    assert bool((jnp.abs(est.mean(axis=1) - exact) < 3 * se).all()), (est.mean(1), exact, se)


def test_divergence_exact_matches_jacobian_trace():
    model = fm.models.MLP(3, (16, 16), rngs=nnx.Rngs(0))
    field = fm.training.make_vector_field(model)
    x = jax.random.normal(jax.random.key(0), (7, 3))
    t = jnp.linspace(0.0, 1.0, 7)
    one = lambda xi, ti: field(xi[None], ti[None])[0]
    ref = jax.vmap(lambda xi, ti: jnp.trace(jax.jacfwd(one)(xi, ti)))(x, t)
    np.testing.assert_allclose(divergence(field, x, t), ref, rtol=1e-5, atol=1e-5)


def test_image_shaped_events_and_jit():
    v = lambda x, t: 0.5 * x  # N(0, I) -> N(0, e I) in 4 = 2 x 2 dims
    x1 = jax.random.normal(jax.random.key(0), (3, 2, 2))
    logp = log_prob(v, x1)
    ref = jax.scipy.stats.norm.logpdf(x1, 0.0, np.exp(0.5)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(logp, ref, atol=1e-4)
    jitted = jax.jit(lambda x: log_prob(v, x))(x1)
    np.testing.assert_allclose(jitted, logp, atol=1e-5)


def test_custom_source_log_prob_and_bits_per_dim():
    v = lambda x, t: jnp.zeros_like(x)  # identity flow: log p1 = log p0
    x1 = jnp.array([[0.5, -0.25], [0.0, 0.0]])
    uniform_box = lambda x0: jnp.full((x0.shape[0],), -jnp.log(4.0))
    logp = log_prob(v, x1, source_log_prob=uniform_box)
    np.testing.assert_allclose(logp, -np.log(4.0), atol=1e-6)
    np.testing.assert_allclose(bits_per_dim(logp, 2), 1.0, atol=1e-6)  # 4 = 2^(2 dims * 1 bit)


def _train_small_model():
    model = fm.models.MLP(2, (32, 32), rngs=nnx.Rngs(0))
    opt = optax.adam(3e-3)
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())
    src = lambda k, n: jax.random.normal(k, (n, 2))
    tgt = fm.data.make_sampler("moons")
    state, _ = fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(0), src,
                               tgt, num_steps=300, batch_size=128, progress=False, chunk_size=300)
    return fm.training.make_vector_field(model, state.params)


def test_trained_density_integrates_to_one_and_encode_inverts_sample():
    field = _train_small_model()
    # Grid: [-8, 10.5] x [-4.5, 5] in 150 x 76 cells (h = 0.123 x 0.125, midpoint rule). The
    # extent is checked against the model's own samples: it must hold all but a sliver of the
    # mass (moons spans about [-7, 9.5] x [-3.5, 4]).
    xs = jnp.linspace(-8.0, 10.5, 151)
    ys = jnp.linspace(-4.5, 5.0, 77)
    cx, cy = 0.5 * (xs[1:] + xs[:-1]), 0.5 * (ys[1:] + ys[:-1])
    h2 = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    grid = jnp.stack(jnp.meshgrid(cx, cy, indexing="ij"), -1).reshape(-1, 2)
    mass = float(jnp.exp(log_prob(field, grid, rtol=1e-4, atol=1e-4)).sum() * h2)

    x0 = jax.random.normal(jax.random.key(5), (10_000, 2))
    samples = fm.sampling.sample(field, x0, rtol=1e-4, atol=1e-4).x
    inside = float(((samples[:, 0] > xs[0]) & (samples[:, 0] < xs[-1]) & (samples[:, 1] > ys[0])
                    & (samples[:, 1] < ys[-1])).mean())
    assert inside > 0.999  # all 10,000 samples, in fact
    assert abs(mass - 1.0) < 0.01, mass

    # encode then sample returns the input within solver tolerance
    x1 = samples[:256]
    z = fm.sampling.encode(field, x1, rtol=1e-6, atol=1e-6).x
    back = fm.sampling.sample(field, z, rtol=1e-6, atol=1e-6).x
    assert float(jnp.abs(back - x1).max()) < 1e-3


@pytest.mark.parametrize(
    "opts",
    [
        dict(solver="rk4", num_steps=8),
        pytest.param(dict(rtol=1e-9, atol=1e-9), marks=pytest.mark.slow),  # ~30 s
    ],
    ids=["rk4-fixed", "tsit5-adaptive"],
)
def test_gradient_matches_finite_differences(opts):
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 4)
        params = {"w1": 0.5 * jax.random.normal(k[0], (3, 8), jnp.float64),
                  "w2": 0.5 * jax.random.normal(k[1], (8, 2), jnp.float64)}

        def apply(p, x, t):
            return jnp.tanh(jnp.concatenate([x, t[:, None]], 1) @ p["w1"]) @ p["w2"]

        x1 = jax.random.normal(k[2], (4, 2), jnp.float64)

        def loss(p):
            return log_prob(lambda x, t: apply(p, x, t), x1, **opts).mean()

        direction = jax.tree.map(lambda a: jax.random.normal(k[3], a.shape, a.dtype), params)
        shift = lambda eps: jax.tree.map(lambda a, b: a + eps * b, params, direction)
        grads = jax.grad(loss)(params)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                     jax.tree.leaves(direction), strict=True))
        eps = 1e-5
        fd = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
        np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="nope"), "unknown estimator"),
        (dict(estimator="hutchinson"), "key"),
        (dict(estimator="hutchinson", key=jax.random.key(0), num_probes=0), "num_probes"),
        (dict(probe="uniform"), "unknown probe"),
        (dict(source_log_prob=lambda x0: jnp.zeros(x0.shape)), r"source_log_prob must return shape \(3,\)"),
        (dict(solver="nope"), "unknown solver"),
    ],
)
def test_bad_arguments(kwargs, match):
    v = lambda x, t: x
    with pytest.raises(ValueError, match=match):
        log_prob(v, jnp.ones((3, 2)), **kwargs)


def test_bad_inputs():
    v = lambda x, t: x
    with pytest.raises(ValueError, match="at least 2D"):
        log_prob(v, jnp.ones(3))
    with pytest.raises(ValueError, match="must return the shape"):
        log_prob(lambda x, t: x[:, :1], jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="floating"):
        log_prob(v, jnp.ones((3, 2), jnp.int32))
    with pytest.raises(ValueError, match="event_size"):
        bits_per_dim(jnp.zeros(3), 0)
    with pytest.raises(ValueError, match="recursive, direct, forward, backsolve"):
        log_prob(v, jnp.ones((3, 2)), adjoint="nope")
    with pytest.raises(ValueError, match="constant, pid"):
        log_prob(v, jnp.ones((3, 2)), stepsize_controller="nope")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_failed_solve_raises_or_is_nan_eagerly_and_under_jit(jit):
    # the one error policy of fm.sampling.sample: a RuntimeError eagerly and under jit alike
    v = lambda x, t: x
    wrap = jax.jit if jit else (lambda f: f)
    x_bad = jnp.array([[0.0, 0.0], [jnp.nan, 1.0]])
    for opts in (dict(max_steps=16), dict(solver="rk4", num_steps=4)):  # adaptive, fixed
        with pytest.raises(RuntimeError, match="fm.likelihood.log_prob"):
            jax.block_until_ready(wrap(lambda x, o=opts: log_prob(v, x, **o))(x_bad))
        out = wrap(lambda x, o=opts: log_prob(v, x, throw=False, **o))(x_bad)
        assert bool(jnp.isnan(out).all())
    # the step cap of a stiff field, as sample reports it
    stiff = lambda x, t: -1e4 * (x - jnp.cos(t)[:, None])
    with pytest.raises(RuntimeError, match="raise max_steps"):
        jax.block_until_ready(wrap(lambda x: log_prob(stiff, x, max_steps=8))(jnp.ones((2, 2))))


def test_source_log_prob_infinity_passes_through():
    # -inf outside a bounded source's support is a value, not a failed solve
    v = lambda x, t: jnp.zeros_like(x)
    out = log_prob(v, jnp.ones((2, 2)), source_log_prob=lambda x0: jnp.array([0.0, -jnp.inf]))
    assert float(out[0]) == 0.0 and float(out[1]) == -np.inf


def test_solver_options_and_forward_mode():
    v, mean, cov = gaussian_flow(2)
    x1 = mean + jax.random.normal(jax.random.key(0), (16, 2)) @ jnp.linalg.cholesky(cov).T
    ref = mvn_logpdf(x1, mean, cov)
    fixed = log_prob(v, x1, solver="rk4", num_steps=16)
    np.testing.assert_allclose(fixed, ref, atol=1e-3)
    const = log_prob(v, x1, solver="rk4", num_steps=16, stepsize_controller="constant")
    np.testing.assert_array_equal(const, fixed)
    pid = log_prob(v, x1, stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6))
    np.testing.assert_allclose(pid, ref, atol=1e-4)
    # jax.jvp through a fixed-step log_prob (the default DirectAdjoint): d logp / d scale of
    # a field s * x (x1 = e^s x0 for a standard normal x0), against central differences
    x = jax.random.normal(jax.random.key(1), (4, 2))
    f = lambda s: log_prob(lambda y, t: s * y, x, solver="rk4", num_steps=8)
    _, tangent = jax.jvp(f, (jnp.float32(0.3),), (jnp.float32(1.0),))
    fd = (f(jnp.float32(0.31)) - f(jnp.float32(0.29))) / 0.02
    np.testing.assert_allclose(tangent, fd, rtol=2e-3, atol=2e-3)


def test_loglik_command(tmp_path, capsys):
    from runs import make_run

    from flowjax_fm.cli import main

    run = make_run(tmp_path / "run", **{"model.hidden": [8], "coupling": "independent", "source": "normal"})
    pts = np.asarray(jax.random.normal(jax.random.key(0), (7, 2)), np.float32)
    np.save(tmp_path / "pts.npy", pts)
    argv = ["loglik", "--checkpoint", str(run), "--data", str(tmp_path / "pts.npy"), "--batch", "4"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    logp = np.load(tmp_path / "out" / "loglik.npy")
    assert logp.shape == (7,)
    field = fm.experiments.load_run(run).field()
    # the command solves batches of 4 (last one padded): compare batch by batch
    ref = np.concatenate([log_prob(field, jnp.asarray(pts[:4])),
                          log_prob(field, jnp.asarray(np.concatenate([pts[4:], pts[-1:]])))[:3]])
    np.testing.assert_allclose(logp, ref, atol=1e-5)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.float32))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["loglik", "--checkpoint", str(run), "--data", str(tmp_path / "bad.npy")])
    assert exit_.value.code == 2 and "event shape (2,)" in capsys.readouterr().err
