"""Tests for fm.reflow: pair generation, the paired sampler and loop, reflow/distill smoke, CLI."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.reflow import GridTime, distill, fit_pairs, generate_pairs, paired_sampler, reflow


def test_grid_time():
    t = GridTime(4)(jax.random.key(0), 1000)
    assert sorted(set(np.asarray(t).tolist())) == [0.0, 0.25, 0.5, 0.75]
    assert bool((GridTime(1)(jax.random.key(0), 10) == 0).all())


def test_generate_pairs_from_sampler_and_array():
    v = lambda x, t: 2.0 * jnp.ones_like(x)
    src = lambda k, n: jax.random.normal(k, (n, 3))
    x0, x1 = generate_pairs(v, jax.random.key(0), src, 10, batch_size=4)
    assert x0.shape == x1.shape == (10, 3)
    np.testing.assert_allclose(x1, x0 + 2.0, atol=1e-5)
    assert len(np.unique(np.asarray(x0[:, 0]))) == 10  # every batch draws fresh points
    data = jnp.arange(24.0).reshape(12, 2)
    y0, y1 = generate_pairs(v, jax.random.key(1), data, 7, batch_size=3, solver="euler", num_steps=1)
    assert y0.shape == (7, 2)
    assert len({tuple(r) for r in np.asarray(y0).tolist()}) == 7  # drawn without replacement
    np.testing.assert_allclose(y1, y0 + 2.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least n=13"):
        generate_pairs(v, jax.random.key(1), data, 13)
    with pytest.raises(ValueError, match=r"n must be an int >= 1"):
        generate_pairs(v, jax.random.key(1), src, 0)


def test_paired_sampler_keeps_pairs():
    x0 = jnp.arange(50.0).reshape(25, 2)
    b0, b1 = paired_sampler(x0, -3.0 * x0)(jax.random.key(0), 64)
    np.testing.assert_array_equal(b1, -3.0 * b0)
    with pytest.raises(ValueError, match="same shape"):
        paired_sampler(x0, x0[:3])


def test_fit_pairs_trains_on_the_given_pairs_only():
    # pairs x1 = -x0 through the origin: an independent re-pairing would average them away;
    # kept paired, the straight-path regression at t = 0 learns v(x0, 0) = -2 x0 exactly
    x0 = jax.random.normal(jax.random.key(0), (512, 2))
    model = fm.models.MLP(2, (32, 32), rngs=nnx.Rngs(0))
    state, hist = distill(model, jax.random.key(1), x0, -x0, euler_steps=1, num_steps=600,
                          batch_size=128, optimizer=optax.adam(3e-3))
    field = fm.training.make_vector_field(model, state.params)
    x1 = fm.sampling.sample(field, x0[:64], solver="euler", num_steps=1).x
    err = float(jnp.sqrt(jnp.mean(jnp.sum((x1 + x0[:64]) ** 2, 1))))
    assert err < 0.25, err
    assert hist["loss"][-50:].mean() < 0.1 * hist["loss"][:50].mean()
    assert hist["step"].tolist() == list(range(600))


def test_reflow_straightens_a_curved_flow():
    # base flow: rotation by 90 degrees of N(0, I) (curved; one Euler step is far off)
    base = lambda x, t: (jnp.pi / 2) * jnp.stack([-x[:, 1], x[:, 0]], axis=1)
    src = lambda k, n: jax.random.normal(k, (n, 2))
    x0, x1 = generate_pairs(base, jax.random.key(0), src, 2048, batch_size=1024)
    model = fm.models.MLP(2, (64, 64), activation="silu", rngs=nnx.Rngs(0))
    state, _ = reflow(model, jax.random.key(1), x0, x1, num_steps=800, batch_size=256,
                      optimizer=optax.adam(3e-3))
    field = fm.training.make_vector_field(model, state.params)
    z = src(jax.random.key(2), 256)
    s_base = float(fm.metrics.straightness(base, z))
    s_new = float(fm.metrics.straightness(field, z))
    assert s_new < 0.2 * s_base, (s_new, s_base)
    target = jnp.stack([-z[:, 1], z[:, 0]], 1)
    one_step = lambda f: float(jnp.abs(fm.sampling.sample(f, z, solver="euler", num_steps=1).x
                                       - target).mean())
    assert one_step(field) < 0.5 * one_step(base)


def test_warm_start_and_errors():
    x0 = jnp.zeros((8, 2))
    model = fm.models.MLP(2, (4,), rngs=nnx.Rngs(0))
    opt = optax.sgd(0.0)
    params = jax.tree.map(lambda a: a + 1.0, fm.training.split_model(model)[1])
    state, _ = reflow(model, jax.random.key(0), x0, x0, num_steps=2, batch_size=4, optimizer=opt,
                      params=params)
    chex.assert_trees_all_equal(state.params, params)
    with pytest.raises(ValueError, match="euler_steps"):
        distill(model, jax.random.key(0), x0, x0, euler_steps=0, num_steps=1)
    with pytest.raises(ValueError, match="same shape"):
        reflow(model, jax.random.key(0), x0, x0[:4], num_steps=1)
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath())
    with pytest.raises(ValueError, match="batch_size"):
        fit_pairs(step, fm.training.init_state(model, opt), jax.random.key(0), x0, x0,
                  num_steps=1, batch_size=0)


def _run(tmp_path):
    from runs import make_run

    return make_run(tmp_path / "run", **{"model.hidden": [8], "coupling": "independent"})


def test_sample_trajectories_and_encode_outputs(tmp_path, capsys):
    from flowjax_fm.cli import main

    run = _run(tmp_path)
    np.save(tmp_path / "pts.npy", np.ones((5, 2), np.float32))
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(run), "--n", "10", "--solver", "rk4", "--num-steps", "4",
                 "--trajectories", "--encode", str(tmp_path / "pts.npy"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "encoded.npy", "samples.npy", "samples.png", "trajectories.npy", "trajectories.png"]
    assert np.load(out / "trajectories.npy").shape == (5, 10, 2)
    field = fm.experiments.load_run(run).field()
    z = np.load(out / "encoded.npy")
    np.testing.assert_allclose(z, fm.sampling.encode(field, jnp.ones((5, 2)), solver="rk4",
                                                     num_steps=4).x, atol=1e-6)
    np.save(tmp_path / "bad.npy", np.ones((5, 3), np.float32))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--checkpoint", str(run), "--encode", str(tmp_path / "bad.npy")])
    assert exit_.value.code == 2 and "--encode" in capsys.readouterr().err


@pytest.mark.slow  # about 35 s: pairs, reflow, distillation and their evaluations compile
def test_reflow_command_writes_loadable_runs(tmp_path, capsys):
    from flowjax_fm.cli import main

    run = _run(tmp_path)
    out = tmp_path / "rf"
    argv = ["reflow", "--checkpoint", str(run), "--pairs", "256", "--steps", "20", "--batch", "64",
            "--distill-steps", "2", "--eval-samples", "64", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert {"before", "after", "distill"} <= set(report)
    rf = fm.experiments.load_run(out)
    assert rf.config.path == "condot" and rf.config.coupling == "independent" and rf.event_shape == (2,)
    assert fm.experiments.load_run(out / "distill-2").config.eval.solver == "euler"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--distill-steps", "-1"])
    assert exit_.value.code == 2 and "--distill-steps" in capsys.readouterr().err
