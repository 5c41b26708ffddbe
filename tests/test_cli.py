"""The command line on point runs, driven through ``flowjax_fm.cli.main``: train, sample, loglik,
reflow, resume, the run-directory guards, crash safety, non-finite losses and bad input.

Exit codes: ``main`` returns 0; errors leave by ``SystemExit`` with 2 (one line
``flowjax-fm: error: ...`` on stderr) or 3 (a non-finite loss).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from runs import RUN_FILES, assert_same_state, fail, snapshot

import flowjax_fm as fm
from flowjax_fm.cli import main

# a point run of a few seconds: 20 steps in two chunks, one device (conftest fakes 8)
POINT = ["--steps", "20", "--batch", "32", "--eval-samples", "100", "--devices", "1", "--chunk", "10",
         "--no-progress"]
TUNED = ["--clip", "1", "--schedule", "cosine", "--warmup", "5", "--weight-decay", "1e-4",
         "--ema-decay", "0.9"]
REFLOW = ["--pairs", "200", "--steps", "20", "--batch", "32", "--eval-samples", "100", "--no-progress"]


# -- helpers -----------------------------------------------------------------------------------


def _train(out, *flags):
    assert main(["train", *POINT, *flags, "--out", str(out)]) == 0
    return Path(out)








def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def _moons(path, n=40, seed=3):
    x = np.asarray(fm.data.make_sampler("moons")(jax.random.key(seed), n), np.float32)
    np.save(path, x)
    return x


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """8gaussians -> moons with the defaults (no EMA): shared; tests copy it before writing into it."""
    old = os.umask(0o022)
    try:
        return _train(tmp_path_factory.mktemp("plain") / "run")
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A run with clipping, a cosine schedule with warm-up, weight decay and an EMA."""
    return _train(tmp_path_factory.mktemp("tuned") / "run", *TUNED)


# -- 13: two real steps (the flax examples' train_test) -----------------------------------------


def test_train_two_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *POINT, "--steps", "2", "--out", str(out)]) == 0  # the last --steps wins
    assert f"run written to {out}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and np.isfinite(metrics["loss"]) and np.isfinite(metrics["w2"])
    assert fm.training.Checkpointer(out / "checkpoint").latest_step() == 2
    for name in (*RUN_FILES, "samples.npy", "samples.png", "trajectories.png", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert np.load(out / "samples.npy").shape == (100, 2)


# -- 1: a tuned run, reflowed, and the reflowed run sampled and scored ---------------------------


@pytest.mark.slow
def test_tuned_run_reflows_into_a_run_that_samples_and_logliks(tuned, tmp_path, capsys):
    config = json.loads((tuned / "config.json").read_text())
    assert (config["clip"], config["schedule"], config["warmup"], config["weight_decay"],
            config["ema_decay"]) == (1.0, "cosine", 5, 1e-4, 0.9)
    assert main(["reflow", "--checkpoint", str(tuned), *REFLOW]) == 0
    out = tuned / "reflow-001"
    assert f"reflowed run written to {out}" in capsys.readouterr().out
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    record = json.loads((out / "run.json").read_text())
    assert record["origin"]["command"] == "reflow" and record["origin"]["parent"] == str(tuned)
    assert (record["config"]["path"], record["config"]["coupling"], record["config"]["steps"]) == (
        "condot", "independent", 20)
    assert record["config"]["schedule"] == "cosine" and record["config"]["clip"] == 1.0
    report = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(report["after"]["w2"]) and report["parent_step"] == 20
    # the reflowed run is a run: sample and loglik read it
    assert main(["sample", "--checkpoint", str(out), "--n", "30", "--out", str(tmp_path / "s")]) == 0
    assert "loaded step 20" in capsys.readouterr().out
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (30, 2) and np.isfinite(x).all()
    _moons(tmp_path / "pts.npy", n=20)
    assert main(["loglik", "--checkpoint", str(out), "--data", str(tmp_path / "pts.npy"),
                 "--out", str(tmp_path / "ll")]) == 0
    logp = np.load(tmp_path / "ll" / "loglik.npy")
    assert logp.shape == (20,) and np.isfinite(logp).all()
    # and the tuned run itself, with its EMA
    assert main(["loglik", "--checkpoint", str(tuned), "--data", str(tmp_path / "pts.npy"), "--ema",
                 "--out", str(tmp_path / "ll-ema")]) == 0
    assert np.isfinite(np.load(tmp_path / "ll-ema" / "loglik.npy")).all()


# -- 2: reflow never writes into a run ----------------------------------------------------------


def test_reflow_out_onto_an_existing_run_is_refused_and_changes_nothing(plain, tmp_path, capsys):
    other = _copy_run(plain, tmp_path / "other")  # another run
    before = {run: snapshot(run) for run in (plain, other)}
    err = fail(capsys, ["reflow", "--checkpoint", str(plain), *REFLOW, "--out", str(other)])
    assert f"--out {other} already exists and is not empty" in err
    err = fail(capsys, ["reflow", "--checkpoint", str(plain), *REFLOW, "--out", str(plain)])
    assert f"--out {plain} already exists and is not empty" in err
    for run, snap in before.items():
        assert snapshot(run) == snap


# -- 4: loglik uses the run's source density ----------------------------------------------------


@pytest.mark.slow
def test_loglik_uses_the_source_density_of_the_run(plain, tmp_path, capsys):
    if not hasattr(fm.data, "toy_log_prob"):
        pytest.skip("fm.data.toy_log_prob (the 8gaussians density) is not in yet")
    x = _moons(tmp_path / "pts.npy", n=40)
    assert main(["loglik", "--checkpoint", str(plain), "--data", str(tmp_path / "pts.npy"),
                 "--out", str(tmp_path / "ll")]) == 0
    printed = capsys.readouterr().out
    saved = np.load(tmp_path / "ll" / "loglik.npy")
    field = fm.experiments.load_run(plain).field()
    expected = np.asarray(fm.likelihood.log_prob(
        field, jnp.asarray(x), source_log_prob=fm.data.toy_log_prob("8gaussians"),
        solver="tsit5", rtol=1e-5, atol=1e-5))
    np.testing.assert_allclose(saved, expected, rtol=1e-6, atol=1e-6)
    mean = float(re.search(r"mean log-likelihood (\S+) nats", printed).group(1))
    assert mean == pytest.approx(float(np.mean(expected)), abs=2e-6)
    assert "loaded step 20" in printed
    # not the N(0, I) density of the library's default
    normal = np.asarray(fm.likelihood.log_prob(field, jnp.asarray(x), solver="tsit5", rtol=1e-5, atol=1e-5))
    assert np.abs(np.mean(normal) - np.mean(saved)) > 0.1


# -- 5: --ema needs an EMA -----------------------------------------------------------------------


def test_sample_ema_needs_a_run_trained_with_one(plain, tmp_path, capsys):
    err = fail(capsys, ["sample", "--checkpoint", str(plain), "--ema", "--out", str(tmp_path / "no")])
    assert "trained without an EMA" in err
    assert not (tmp_path / "no").exists()


@pytest.mark.slow
def test_sample_ema_differs_from_the_params(tuned, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tuned), "--n", "40", "--out", str(tmp_path / "p")]) == 0
    assert "(params)" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", str(tuned), "--n", "40", "--ema",
                 "--out", str(tmp_path / "e")]) == 0
    assert "(EMA)" in capsys.readouterr().out
    xp, xe = np.load(tmp_path / "p" / "samples.npy"), np.load(tmp_path / "e" / "samples.npy")
    assert xp.shape == xe.shape == (40, 2) and np.isfinite(xe).all()
    assert not np.allclose(xp, xe)


# -- 6: a non-finite loss keeps the last good state ---------------------------------------------


def test_non_finite_loss_exits_3_and_keeps_the_last_good_state(tmp_path, monkeypatch, capsys):
    import flowjax_fm.experiments._build as build_module

    real_build = build_module.build

    def poisoned(config, event_shape, num_classes):
        built = real_build(config, event_shape, num_classes)
        step = built.step

        def bad_step(state, key, x0, x1, *cond):
            x1 = jnp.where(state.step >= 35, jnp.nan, x1)  # NaN data from the 36th update on
            return step(state, key, x0, x1, *cond)

        return type(built)(built.model, built.init, built.optimizer, bad_step)

    monkeypatch.setattr(build_module, "build", poisoned)
    out = tmp_path / "run"
    flags = [*POINT, "--steps", "40", "--checkpoint-every", "20"]
    err = fail(capsys, ["train", *flags, "--out", str(out)], code=3)
    monkeypatch.setattr(build_module, "build", real_build)
    # chunks end at 10, 20, 30, 40; checkpoints every 20: on disk at 20, and the last good state (30)
    assert "non-finite loss" in err and "at step 35" in err, err
    assert f"the state of step 30 (the last with finite losses) is saved in {out / 'checkpoint'}" in err
    assert fm.training.Checkpointer(out / "checkpoint").latest_step() == 30
    run = fm.experiments.load_run(out)
    assert run.checkpoint_step == 30
    assert all(np.isfinite(a).all() for a in [np.asarray(a) for a in jax.tree.leaves(run.state.params)])
    # a --resume with other settings is refused and leaves the run files as they are
    before = snapshot(out)
    err = fail(capsys, ["train", *flags, "--lr", "0.5", "--out", str(out), "--resume"])
    assert "settings differ from the saved run" in err and "lr 0.001 -> 0.5" in err
    assert snapshot(out) == before


# -- 7: data files are referred to by absolute path and sha256 ----------------------------------


@pytest.mark.slow
def test_relative_npy_source_is_stored_absolute_and_checked(tmp_path, monkeypatch, capsys):
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(0)
    np.save("rel.npy", rng.normal(size=(400, 2)).astype(np.float32))
    # the target is a big-endian file: trains like a native one
    np.save("be.npy", np.asarray(fm.data.make_sampler("moons")(jax.random.key(1), 400), ">f4"))
    _train("run", "--source", "rel.npy", "--target", "be.npy")
    run = work / "run"
    record = json.loads((run / "run.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert record["source"]["spec"] == config["source"] == str(work / "rel.npy")
    assert record["target"]["spec"] == config["target"] == str(work / "be.npy")
    assert len(record["source"]["sha256"]) == len(record["target"]["sha256"]) == 64
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["w2"])
    assert main(["sample", "--checkpoint", "run", "--n", "25", "--out", str(tmp_path / "here")]) == 0
    # from elsewhere, with another rel.npy there, the run reads its own file
    monkeypatch.chdir(other)
    np.save("rel.npy", rng.normal(size=(400, 2)).astype(np.float32) + 5.0)
    assert main(["sample", "--checkpoint", str(run), "--n", "25", "--out", str(tmp_path / "there")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "here" / "samples.npy"),
                                  np.load(tmp_path / "there" / "samples.npy"))
    # a set of points has no density: loglik is refused
    np.save(tmp_path / "pts.npy", np.zeros((5, 2), np.float32))
    err = fail(capsys, ["loglik", "--checkpoint", str(run), "--data", str(tmp_path / "pts.npy"),
                         "--out", str(tmp_path / "ll")])
    assert "no density" in err and not (tmp_path / "ll").exists()
    # the file changed after training: refused
    np.save(work / "rel.npy", rng.normal(size=(400, 2)).astype(np.float32))
    err = fail(capsys, ["sample", "--checkpoint", str(run), "--n", "5", "--out", str(tmp_path / "late")])
    assert "changed" in err and str(work / "rel.npy") in err
    assert not (tmp_path / "late").exists()


# -- 8: sample writes into a fresh directory ----------------------------------------------------


def test_sample_numbers_its_outputs_and_leaves_the_run_alone(plain, tmp_path, capsys):
    run = _copy_run(plain, tmp_path / "run")
    own = (run / "samples.npy").read_bytes()
    for i in (1, 2):
        euler = ["--solver", "euler", "--num-steps", "2"]  # the numbering does not depend on it
        assert main(["sample", "--checkpoint", str(run), "--n", "20", *euler]) == 0
        printed = capsys.readouterr().out
        assert f"loaded step 20 (params) of {run}" in printed
        assert f"wrote {run / f'sample-{i:03d}'}" in printed
        assert np.load(run / f"sample-{i:03d}" / "samples.npy").shape == (20, 2)
    assert (run / "samples.npy").read_bytes() == own
    err = fail(capsys, ["sample", "--checkpoint", str(run), "--out", str(run / "sample-001")])
    assert "already exists and is not empty" in err


# -- 9: a damaged checkpoint is named as such ---------------------------------------------------


def test_a_flipped_bit_in_a_checkpoint_is_damage(plain, tmp_path, capsys):
    run = _copy_run(plain, tmp_path / "run")
    files = [f for f in (run / "checkpoint" / "20" / "default").rglob("*") if f.is_file() and "/d/" in str(f)]
    target = max(files, key=lambda f: f.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))
    err = fail(capsys, ["sample", "--checkpoint", str(run), "--n", "5", "--out", str(tmp_path / "s")])
    assert "damaged" in err and not (tmp_path / "s").exists()
    err = fail(capsys, ["train", *POINT, "--out", str(run), "--resume"])
    assert "damaged" in err and "non-finite" not in err


# -- 10: one-line errors ------------------------------------------------------------------------


def test_out_must_be_a_new_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = fail(capsys, ["train", *POINT, "--out", str(tmp_path / "file")])
    assert "exists and is not a directory" in err
    assert (tmp_path / "file").read_text() == "x"
    err = fail(capsys, ["train", *POINT, "--out", "/dev/null"])
    assert "/dev/null exists and is not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_in_a_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        err = fail(capsys, ["train", *POINT, "--out", str(ro / "run")])
        assert "not writable" in err
    finally:
        ro.chmod(0o755)


def test_a_seed_out_of_range(tmp_path, capsys):
    err = fail(capsys, ["train", *POINT, "--seed", "1099511627776", "--out", str(tmp_path / "run")])
    assert "seed must be an int in [0, 4294967295], got 1099511627776" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [(["train", "--seed", "1e20"], "invalid int value: '1e20'"),
                                          (["sample"], "--checkpoint")])
def test_argparse_errors_are_one_flowjax_fm_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert message in fail(capsys, [*args, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_an_interrupt_exits_130_and_saves_the_last_chunk(tmp_path, monkeypatch, capsys):
    real_fit = fm.training.fit

    def interrupted(*args, on_chunk, **kwargs):
        def once_then_stop(state, metrics):
            on_chunk(state, metrics)
            raise KeyboardInterrupt

        return real_fit(*args, on_chunk=once_then_stop, **kwargs)

    monkeypatch.setattr(fm.training, "fit", interrupted)
    out = tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["train", *POINT, "--checkpoint-every", "100", "--out", str(out)])
    assert info.value.code == 130 and "interrupted" in capsys.readouterr().err
    # the first chunk (10 steps) is on disk although no checkpoint was due before step 20
    assert fm.training.Checkpointer(out / "checkpoint").latest_step() == 10
    monkeypatch.setattr(fm.training, "fit", real_fit)
    assert main(["train", *POINT, "--checkpoint-every", "100", "--out", str(out), "--resume"]) == 0
    assert fm.experiments.load_run(out).checkpoint_step == 20


def test_out_of_memory_names_the_batch(tmp_path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.0TiB.")

    monkeypatch.setattr(fm.training, "fit", exhausted)
    err = fail(capsys, ["train", *POINT, "--out", str(tmp_path / "run")])
    assert "out of memory at batch 32" in err and "--accumulate" in err


def test_a_coordinator_that_is_not_host_port(tmp_path, capsys):
    err = fail(capsys, ["train", *POINT, "--coordinator", "notahost", "--num-processes", "2",
                         "--process-id", "0", "--out", str(tmp_path / "run")])
    assert "host:port" in err and "notahost" in err
    err = fail(capsys, ["train", *POINT, "--coordinator", "notahost", "--out", str(tmp_path / "run")])
    assert "--num-processes" in err
    assert not (tmp_path / "run").exists()


def test_sample_refuses_bad_tolerances(plain, tmp_path, capsys):
    err = fail(capsys, ["sample", "--checkpoint", str(plain), "--rtol", "0", "--out", str(tmp_path / "s")])
    assert "--rtol must be a finite number in (0, inf)" in err
    assert not (tmp_path / "s").exists()


def test_a_run_json_missing_a_key_is_damage(plain, tmp_path, capsys):
    run = _copy_run(plain, tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    del record["event_shape"]
    (run / "run.json").write_text(json.dumps(record))
    err = fail(capsys, ["sample", "--checkpoint", str(run), "--out", str(tmp_path / "s")])
    assert "damaged" in err and "event_shape" in err


def test_a_fixed_step_solver_needs_its_steps_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "deep" / "run"
    err = fail(capsys, ["train", *POINT, "--solver", "euler", "--out", str(out)])
    assert "takes a fixed number of steps" in err and "--eval-num-steps" in err
    assert not (tmp_path / "deep").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target", "spirals"], "unknown target 'spirals'"),
        (["--coupling", "hungarian"], "unknown coupling 'hungarian'"),
        (["--path", "straight"], "unknown path 'straight'"),
        (["--solver", "rk45"], "unknown eval.solver 'rk45'"),
        (["--batch", "0"], "batch must be an int >= 1"),
        (["--batch", "12", "--devices", "8"], "not divisible by the device count 8"),
        (["--devices", "9"], "9 devices"),
        (["--target", "MISSING.npy"], "MISSING.npy"),
        (["--target", "INT.npy"], "floating point"),
        (["--target", "FLAT.npy"], "FLAT.npy"),
        (["--source", "THREE.npy"], "(3,)"),
        (["--chunk", "0"], "chunk must be an int >= 1"),
        (["--set", "nope=1"], "unknown config key 'nope'"),
        (["--set", "steps"], "--set takes KEY=VALUE"),
        (["--config", "NOPE.json"], "cannot read it"),
    ],
)
def test_bad_train_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "INT.npy", np.zeros((10, 2), np.int64))
    np.save(tmp_path / "FLAT.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "THREE.npy", np.zeros((10, 3), np.float32))
    err = fail(capsys, ["train", *POINT, *args, "--out", str(tmp_path / "o")])  # the last flag wins
    assert message in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--resume"], "--resume needs --out"),
        (["sample", "--checkpoint", "NOWHERE"], "not a run directory"),
        (["loglik", "--checkpoint", "NOWHERE", "--data", "x.npy"], "not a run directory"),
        (["reflow", "--checkpoint", "NOWHERE"], "not a run directory"),
    ],
)
def test_bad_command_input_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert message in fail(capsys, args)


def test_console_script_exits_2_on_bad_input(tmp_path):
    exe = Path(sys.executable).parent / "flowjax-fm"
    done = subprocess.run([str(exe), "train", "--target", "nope", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowjax-fm: error: unknown target 'nope'"), done.stderr


# -- 11: a run's config reproduces it -----------------------------------------------------------


@pytest.mark.slow
def test_config_json_reproduces_the_run_bit_for_bit(plain, tmp_path):
    assert main(["train", "--config", str(plain / "config.json"), "--no-progress",
                 "--out", str(tmp_path / "again")]) == 0
    assert_same_state(plain, tmp_path / "again")
    assert (tmp_path / "again" / "config.json").read_bytes() == (plain / "config.json").read_bytes()
    assert main(["train", "--config", str(plain / "run.json"), "--no-progress",
                 "--out", str(tmp_path / "from-run-json")]) == 0
    assert_same_state(plain, tmp_path / "from-run-json")


@pytest.mark.slow
def test_set_overrides_a_field_of_the_config(plain, tmp_path):
    out = tmp_path / "wide"
    assert main(["train", "--config", str(plain / "run.json"), "--set", "model.hidden=[16,16]",
                 "--steps", "2", "--chunk", "2", "--no-progress", "--out", str(out)]) == 0
    mine, theirs = (json.loads((d / "config.json").read_text()) for d in (out, plain))
    assert mine["model"]["hidden"] == [16, 16] and mine["steps"] == 2 and mine["chunk"] == 2
    assert {k: v for k, v in mine.items() if k not in ("model", "steps", "chunk")} == {
        k: v for k, v in theirs.items() if k not in ("model", "steps", "chunk")}
    kernels = [a.shape for a in jax.tree.leaves(fm.experiments.load_run(out).state.params) if a.ndim == 2]
    assert (16, 16) in kernels


# -- 12: the run files are readable by the group, and the logs parse ----------------------------


def test_run_files_are_group_readable_and_the_logs_parse(plain):
    for name in RUN_FILES:
        assert (plain / name).stat().st_mode & 0o040, name
    rows = [json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("step" in row for row in rows)
    assert any("train/loss" in row and row["step"] == 20 for row in rows)
    assert any("final/w2" in row for row in rows)
    events = list((plain / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


# -- 14: kill -9 in the middle of a checkpoint save ---------------------------------------------


@pytest.mark.slow
def test_kill_during_save_leaves_the_last_checkpoint_usable(tmp_path):
    run = tmp_path / "run"
    worker = Path(__file__).parent / "workers" / "kill_during_save.py"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, str(worker), str(run)], env=env, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    ckpt = fm.training.Checkpointer(run / "checkpoint")
    assert ckpt.latest_step() == 100
    ckpt.verify()  # the complete checkpoint reads back and matches its sha256s
    ckpt.close()
    # resume finishes the run from the complete checkpoint
    assert main(["train", "--steps", "300", "--checkpoint-every", "100", "--chunk", "100", "--devices", "1",
                 "--eval-samples", "200", "--no-progress", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 300
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # what the killed process logged past step 100 is dropped


def test_a_run_recorded_before_later_config_keys_still_samples(plain, tmp_path):
    # run.json files written before objective / objective_options / guidance_scale existed are
    # read with those fields' defaults (what such a run used), not refused as damaged
    run = _copy_run(plain, tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    for key in ("objective", "objective_options", "guidance_scale"):
        record["config"].pop(key, None)
    (run / "run.json").write_text(json.dumps(record))
    loaded = fm.experiments.load_run(run)
    assert loaded.config.objective == "cfm" and loaded.config.guidance_scale is None
    assert loaded.config.ema_decay == json.loads((plain / "run.json").read_text())["config"]["ema_decay"]
