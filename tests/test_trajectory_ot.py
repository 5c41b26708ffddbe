"""Trajectory (multi-marginal) OT: snapshots, chained plans, the piecewise objective, leave-one-out."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.trajectories import (
    Snapshots,
    TrajectoryObjective,
    branching_snapshots,
    chain_plans,
    make_trajectory_sampler,
)

KEY = jax.random.key(0)


def _sorted_rows(x):
    x = np.asarray(x)
    return x[np.lexsort(x.T[::-1])]


def _batches(seed, t=4, b=24, d=2):
    keys = jax.random.split(jax.random.key(seed), t)
    return [jax.random.normal(k, (b, d)) + 2.0 * i for i, k in enumerate(keys)]


def test_chained_exact_plans_use_every_point_once():
    xs = _batches(1)
    traj = chain_plans(KEY, xs)
    assert traj.shape == (4, 24, 2)
    for k, x in enumerate(xs):  # each time's marginal: a permutation of its batch
        np.testing.assert_array_equal(_sorted_rows(traj[k]), _sorted_rows(x))
    np.testing.assert_array_equal(traj[0], xs[0])  # trajectories start at the rows in order


def test_each_consecutive_pairing_is_optimal():
    xs = _batches(2)
    traj = chain_plans(KEY, xs)
    for k in range(len(xs) - 1):
        chained = float(jnp.sum((traj[k] - traj[k + 1]) ** 2)) / traj.shape[1]
        w2sq = fm.metrics.wasserstein(xs[k], xs[k + 1]) ** 2
        assert chained == pytest.approx(w2sq, rel=1e-5)


def test_one_dimensional_chains_are_monotone():
    """In 1-D exact OT is the monotone map, so chained trajectories never cross."""
    xs = [jax.random.uniform(k, (30, 1)) * (i + 1) for i, k in
          enumerate(jax.random.split(jax.random.key(3), 5))]
    traj = np.asarray(chain_plans(KEY, xs))[:, :, 0]
    order = np.argsort(traj[0])
    assert (np.diff(traj[:, order], axis=1) >= 0).all()


def test_snapshots_of_unequal_sizes_draw_without_replacement():
    snaps = Snapshots(times=[0.0, 1.0, 2.0], points=[p[:n] for p, n in zip(_batches(4, 3, 40), (40, 31, 25),
                                                                             strict=True)])
    traj = chain_plans(KEY, snaps, batch_size=20)
    assert traj.shape == (3, 20, 2)
    for k in range(3):
        rows = {tuple(r) for r in np.asarray(snaps.points[k]).tolist()}
        drawn = [tuple(r) for r in np.asarray(traj[k]).tolist()]
        assert set(drawn) <= rows and len(set(drawn)) == 20  # distinct points of that time
    with pytest.raises(ValueError, match="give batch_size"):
        chain_plans(KEY, snaps)
    with pytest.raises(ValueError, match=r"batch_size=26 exceeds .* min\(N_k\) = 25"):
        chain_plans(KEY, snaps, batch_size=26)


def test_sinkhorn_rows_chains_and_pairs_refused():
    xs = _batches(5)
    traj = chain_plans(KEY, xs, coupling=fm.couplings.SinkhornCoupling(epsilon=0.5, sampling="rows"))
    assert traj.shape == (4, 24, 2)
    np.testing.assert_array_equal(traj[0], xs[0])
    with pytest.raises(ValueError, match="one partner per row"):
        chain_plans(KEY, xs, coupling=fm.couplings.SinkhornCoupling(epsilon=0.5))
    with pytest.raises(ValueError, match="PartialOTCoupling"):
        chain_plans(KEY, xs, coupling=fm.couplings.PartialOTCoupling(mass=0.5))


def test_a_coupling_with_repeated_sources_fails_at_run_time():
    class Repeats(fm.couplings.AbstractCoupling):
        def pair(self, key, x0, x1, cond0=None, cond1=None):
            zeros = jnp.zeros(x0.shape[0], jnp.int32)
            return fm.couplings.Pairing(zeros, zeros)

    with pytest.raises(RuntimeError, match="not a permutation"):
        chain_plans(KEY, _batches(6), coupling=Repeats())


def test_snapshots_is_a_pytree_and_leave_out():
    snaps = branching_snapshots(KEY, 16)
    leaves = jax.tree.leaves(snaps)
    assert len(leaves) == 6 and leaves[0].shape == (5,)
    doubled = jax.tree.map(lambda a: 2 * a, snaps)
    assert isinstance(doubled, Snapshots) and float(doubled.times[-1]) == 2.0
    total = jax.jit(lambda s: sum(p.sum() for p in s.points))(snaps)
    assert np.isfinite(float(total))
    rest, t, held = snaps.leave_out(2)
    assert rest.times.tolist() == [0.0, 0.25, 0.75, 1.0] and float(t) == 0.5
    np.testing.assert_array_equal(held, snaps.points[2])


def test_branching_snapshots_are_deterministic_and_branch():
    a = branching_snapshots(jax.random.key(1), 400)
    b = branching_snapshots(jax.random.key(1), 400)
    for p, q in zip(a.points, b.points, strict=True):
        np.testing.assert_array_equal(p, q)
    last = np.asarray(a.points[-1])
    assert last[:, 0].mean() == pytest.approx(4.0, abs=0.05)
    assert np.abs(last[:, 1]).mean() == pytest.approx(3.0, abs=0.05)
    assert 0.4 < (last[:, 1] > 0).mean() < 0.6  # two branches, about half each
    assert np.abs(np.asarray(a.points[0])[:, 1]).mean() < 0.15  # one blob at t = 0


def test_sampler_shapes_for_fit():
    snaps = branching_snapshots(KEY, 50)
    sampler = make_trajectory_sampler(snaps)
    out = jax.jit(sampler, static_argnums=1)(jax.random.key(2), 32)
    assert out.shape == (32, 5, 2)
    for k in range(5):  # every trajectory point is a point of its time
        rows = {tuple(r) for r in np.asarray(snaps.points[k]).tolist()}
        assert {tuple(r) for r in np.asarray(out[:, k]).tolist()} <= rows


@pytest.mark.parametrize("path", [fm.paths.CondOTPath(), fm.paths.GaussianPath(sigma=0.3)])
def test_targets_are_segment_velocities(path):
    times = jnp.array([0.0, 0.3, 1.0, 2.5])
    gamma = jax.random.normal(jax.random.key(7), (64, 4, 3))
    objective = TrajectoryObjective(times)
    sample, seg = objective.segment_sample(jax.random.key(8), gamma, path=path)
    seg = np.asarray(seg)
    assert set(seg.tolist()) == {0, 1, 2}
    rows = np.arange(64)
    start, end = np.asarray(gamma)[rows, seg], np.asarray(gamma)[rows, seg + 1]
    t0, dt = np.asarray(times)[seg], np.diff(np.asarray(times))[seg]
    np.testing.assert_allclose(sample.u_t, (end - start) / dt[:, None], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sample.x0, start)
    np.testing.assert_allclose(sample.x1, end)
    s = (np.asarray(sample.t) - t0) / dt
    assert ((s >= 0) & (s <= 1)).all()
    mean = (1 - s)[:, None] * start + s[:, None] * end
    if path.stochastic:
        np.testing.assert_allclose(sample.x_t, mean + 0.3 * np.asarray(sample.noise), atol=1e-5)
    else:
        np.testing.assert_allclose(sample.x_t, mean, atol=1e-5)


def test_the_piecewise_velocity_has_zero_loss():
    """One piecewise-linear trajectory; the field that knows its segment velocities fits it."""
    times = jnp.array([0.0, 1.0, 1.5, 3.0])
    knots = jnp.array([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0], [3.0, -1.0]])
    velocity = jnp.diff(knots, axis=0) / jnp.diff(times)[:, None]
    gamma = jnp.broadcast_to(knots, (32, 4, 2))

    def field(x, t):
        seg = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, 2)
        return velocity[seg]

    loss, aux = TrajectoryObjective(times)(
        field, KEY, gamma, gamma, path=fm.paths.CondOTPath(),
        time_sampler=fm.time_sampling.UniformTime())
    assert float(loss) < 1e-10 and aux["segment"].shape == (32,)


def test_objective_refuses_wrong_trajectory_shapes():
    objective = TrajectoryObjective(jnp.array([0.0, 1.0, 2.0]))
    match = r"needs trajectories shaped \(B, 3, \*event\), got x1 of shape \(8, 4, 2\)"
    with pytest.raises(ValueError, match=match):
        objective.segment_sample(KEY, jnp.zeros((8, 4, 2)), path=fm.paths.CondOTPath())


def _loo_w2(step, params, train, t_held, held):
    field = fm.training.make_vector_field(step.model, params)
    res = fm.sampling.sample(field, train.points[0], t0=float(train.times[0]), t1=float(t_held),
                             solver="rk4", num_steps=16)
    return float(fm.metrics.wasserstein(res.x, held))


def test_leave_one_out_training_beats_untrained_and_copying():
    """Hold out t = 0.5, train through the four other marginals with fit, integrate from t_0.

    Measured over data seeds 0-3 (this setup): W2 1.9-2.3 untrained, 0.35-0.79 after 250
    steps; copying the t = 0.25 snapshot gives 1.15.
    """
    snaps = branching_snapshots(jax.random.key(0), 256)
    train, t_held, held = snaps.leave_out(2)
    model = fm.models.MLP(2, (64, 64), rngs=nnx.Rngs(0))
    opt = optax.adam(optax.cosine_decay_schedule(3e-3, 250))
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath(),
                                       objective=TrajectoryObjective(train.times))
    state = fm.training.init_state(model, opt)
    before = _loo_w2(step, state.params, train, t_held, held)
    state, history = fm.training.fit(step, state, jax.random.key(1), None,
                                     make_trajectory_sampler(train), num_steps=250,
                                     batch_size=128, progress=False)
    after = _loo_w2(step, state.params, train, t_held, held)
    copy_previous = float(fm.metrics.wasserstein(train.points[1], held))
    assert np.isfinite(history["loss"]).all()
    assert after < 0.5 * before, (before, after)
    assert after < copy_previous, (after, copy_previous)
