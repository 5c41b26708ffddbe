"""The command line and the main job: runs, resume, crash safety, non-finite loss, bad input."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowjax_fm as fm
from flowjax_fm.cli import main
from flowjax_fm.training import _experiment

SMALL = ["--steps", "200", "--batch", "64", "--eval-samples", "300", "--devices", "1",
         "--checkpoint-every", "100", "--chunk", "50", "--no-progress"]


def _params(run_dir):
    config, model, field, source, _ = _experiment.load_run(run_dir)
    like = fm.training.init_state(*_experiment._build(config, 2)[:2])
    state = fm.training.Checkpointer(Path(run_dir) / "checkpoint").restore(like)
    return state


def test_train_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    for name in ("metrics.json", "config.json", "samples.png", "trajectories.png", "samples.npy"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"w2", "nfe", "loss", "steps_per_s"} <= set(metrics)
    assert np.isfinite(metrics["w2"]) and metrics["nfe"] > 0
    assert fm.training.Checkpointer(out / "checkpoint").latest_step() == 200
    # training into it again without --resume is refused, not silently overwritten
    with pytest.raises(SystemExit):
        main(["train", *SMALL, "--out", str(out)])
    assert "already holds a run" in capsys.readouterr().err
    # sample from it
    assert main(["sample", "--checkpoint", str(out), "--n", "50", "--out", str(tmp_path / "s")]) == 0
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert (tmp_path / "s" / "samples.png").is_file()


def test_resume_continues_to_the_bit(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", *SMALL, "--out", str(full)]) == 0
    half = [a if a != "200" else "100" for a in SMALL]
    assert main(["train", *half, "--out", str(part)]) == 0
    assert main(["train", *SMALL, "--out", str(part), "--resume"]) == 0
    a, b = _params(full), _params(part)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert json.loads((full / "metrics.json").read_text())["w2"] == pytest.approx(
        json.loads((part / "metrics.json").read_text())["w2"], rel=1e-6)


def test_kill_during_save_leaves_the_last_checkpoint_usable(tmp_path):
    run = tmp_path / "run"
    worker = Path(__file__).parent / "workers" / "kill_during_save.py"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, str(worker), str(run)], env=env, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert fm.training.Checkpointer(run / "checkpoint").latest_step() == 100
    # resume finishes the run from the complete checkpoint
    assert main(["train", "--steps", "300", "--checkpoint-every", "100", "--chunk", "100", "--devices", "1",
                 "--eval-samples", "200", "--no-progress", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 300


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real_build = _experiment._build

    def poisoned(config, event_size):
        model, optimizer, step = real_build(config, event_size)

        def bad_step(state, key, x0, x1, cond=None):
            x1 = jnp.where(state.step >= 150, jnp.nan, x1)  # NaN data from step 150 on
            return step(state, key, x0, x1, cond)

        return model, optimizer, bad_step

    monkeypatch.setattr(_experiment, "_build", poisoned)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *SMALL, "--out", str(out)])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at step 150" in err and "step 100" in err
    assert len(err.strip().splitlines()) == 1
    ckpt = fm.training.Checkpointer(out / "checkpoint")
    assert ckpt.latest_step() == 100
    monkeypatch.setattr(_experiment, "_build", real_build)
    state = _params(out)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_npy_sources_and_targets(tmp_path):
    src = tmp_path / "src.npy"
    tgt = tmp_path / "tgt.npy"
    np.save(src, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    np.save(tgt, np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32) + 2)
    out = tmp_path / "run"
    args = ["train", "--source", str(src), "--target", str(tgt), "--steps", "50", "--batch", "32",
            "--eval-samples", "100", "--devices", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert main(["sample", "--checkpoint", str(out), "--n", "7", "--out", str(out / "s")]) == 0
    assert np.load(out / "s" / "samples.npy").shape == (7, 3)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--target", "spirals"], "unknown target 'spirals'"),
        (["train", "--coupling", "hungarian"], "unknown coupling"),
        (["train", "--path", "straight"], "unknown path"),
        (["train", "--solver", "rk45"], "unknown solver"),
        (["train", "--batch", "0"], "batch must be at least 1"),
        (["train", "--batch", "12", "--devices", "8"], "not divisible by the device count 8"),
        (["train", "--devices", "9"], "9 devices"),
        (["train", "--target", "MISSING.npy"], "MISSING.npy"),
        (["train", "--target", "INT.npy"], "floating point"),
        (["train", "--target", "FLAT.npy"], "FLAT.npy"),
        (["train", "--source", "THREE.npy"], "events differ"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "--chunk", "0"], "chunk must be at least 1"),
        (["sample", "--checkpoint", "NOWHERE"], "not a run directory"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "INT.npy", np.zeros((10, 2), np.int64))
    np.save(tmp_path / "FLAT.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "THREE.npy", np.zeros((10, 3), np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "o")] if args[0] == "train" and "--resume" not in args
             else args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_console_script_exits_non_zero_on_bad_input(tmp_path):
    exe = Path(sys.executable).parent / "flowjax-fm"
    done = subprocess.run([str(exe), "train", "--target", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("'2spirals', '8gaussians', 'checkerboard', 'circles', "
                                        "'gaussian', 'moons', 'scurve', 'swissroll']")
