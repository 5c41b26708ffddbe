"""The command line on image runs (class-conditional digits, a tiny UNet), through ``main``.

An unrolled UNet compiles slowly on XLA:CPU, so the runs are tiny (8 channels, batch 16,
chunks of 2 steps, 2 images per class, a classifier of 5 steps) and every test that trains is
in the slow tier; the refusals that need no run are fast.
"""

import json
import shutil

import jax
import numpy as np
import pytest
from runs import assert_same_state, fail, snapshot

import flowjax_fm as fm
from flowjax_fm.cli import main

IMG = ["--target", "digits", "--channels", "8", "--batch", "16", "--chunk", "2",
       "--set", "eval.per_class=2", "--set", "eval.classifier_steps=5", "--guidance-scales", "0,1",
       "--eval-num-steps", "2", "--devices", "1", "--no-progress"]










@pytest.fixture(scope="module")
def img(tmp_path_factory):
    """Four steps of the tiny image run."""
    out = tmp_path_factory.mktemp("img") / "run"
    assert main(["train", *IMG, "--steps", "4", "--out", str(out)]) == 0
    return out


# -- fast: refused before anything is loaded or written -----------------------------------------


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--hidden", "8"], "model.hidden applies to model 'mlp' only; this run's model is 'unet'"),
        (["--activation", "relu"], "model.activation applies to model 'mlp' only"),
        (["--eval-samples", "10"], "eval.samples applies to kind 'points' only"),
    ],
)
def test_point_flags_on_an_image_run_are_refused_and_nothing_is_written(tmp_path, capsys, flags, message):
    out = tmp_path / "deep" / "run"
    err = fail(capsys, ["train", *IMG, "--steps", "2", *flags, "--out", str(out)])
    assert message in err
    assert not (tmp_path / "deep").exists()


def test_image_flags_on_a_point_run_are_refused(tmp_path, capsys):
    err = fail(capsys, ["train", "--channels", "8", "--out", str(tmp_path / "run")])
    assert "model.channels applies to model 'unet' only" in err
    err = fail(capsys, ["train", "--guidance-scales", "0,1", "--out", str(tmp_path / "run")])
    assert "eval.guidance_scales applies to kind 'images' only" in err
    assert not (tmp_path / "run").exists()


# -- slow: runs ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_image_run_directory(img):
    record = json.loads((img / "run.json").read_text())
    assert record["kind"] == "images" and record["event_shape"] == [8, 8, 1]
    assert record["conditions"] == {"type": "classes", "num_classes": 10, "null_label": 10}
    config = json.loads((img / "config.json").read_text())
    assert config == record["config"]
    assert (config["model"]["name"], config["model"]["channels"], config["path"], config["coupling"]) == (
        "unet", 8, "condot", "independent")
    assert config["eval"]["per_class"] == 2 and config["eval"]["guidance_scales"] == [0.0, 1.0]
    metrics = json.loads((img / "metrics.json").read_text())
    assert metrics["steps"] == 4 and [r["guidance"] for r in metrics["eval"]] == [0.0, 1.0]
    assert all(np.isfinite(r["frechet"]) for r in metrics["eval"])
    for name in ("samples.png", "classifier.npz", "metrics.jsonl"):
        assert (img / name).is_file(), name
    assert list((img / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_resume_continues_an_image_run_to_the_bit(img, tmp_path):
    part = tmp_path / "part"
    assert main(["train", *IMG, "--steps", "2", "--out", str(part)]) == 0
    assert fm.experiments.load_run(part).checkpoint_step == 2
    assert main(["train", *IMG, "--steps", "4", "--out", str(part), "--resume"]) == 0
    assert fm.experiments.load_run(part).checkpoint_step == 4
    assert_same_state(img, part)
    assert json.loads((part / "metrics.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_image_flags_are_honoured_and_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--path", "gaussian", "--sigma", "0.05", "--ema-decay", "0.9", "--schedule", "cosine",
             "--clip", "1", "--accumulate", "2", "--solver", "heun", "--eval-num-steps", "3"]
    assert main(["train", *IMG, "--steps", "4", *flags, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["path"], config["sigma"], config["ema_decay"], config["schedule"], config["clip"],
            config["accumulate"]) == ("gaussian", 0.05, 0.9, "cosine", 1.0, 2)
    assert (config["eval"]["solver"], config["eval"]["num_steps"]) == ("heun", 3)
    assert json.loads((out / "run.json").read_text())["config"] == config
    run = fm.experiments.load_run(out)
    assert run.config.path == "gaussian" and run.has_ema
    params, ema = jax.tree.leaves(run.state.params), jax.tree.leaves(run.state.ema)
    assert any(not np.array_equal(p, e) for p, e in zip(params, ema, strict=True))
    # the EMA samples, guided, with the run's own solver
    assert main(["sample", "--checkpoint", str(out), "--n", "4", "--ema", "--label", "3", "--guidance", "2",
                 "--out", str(tmp_path / "s")]) == 0
    assert "loaded step 4 (EMA)" in capsys.readouterr().out
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (4, 8, 8, 1) and np.isfinite(x).all()


@pytest.mark.slow
def test_rerunning_into_an_image_run_without_resume_is_refused(img, capsys):
    before = snapshot(img)
    err = fail(capsys, ["train", *IMG, "--steps", "4", "--out", str(img)])
    assert "already exists and is not empty" in err and "--resume" in err
    assert snapshot(img) == before


@pytest.mark.slow
def test_loglik_on_an_image_run_null_class_and_label(img, tmp_path, capsys):
    x, _ = fm.data.load_digits()
    np.save(tmp_path / "digits.npy", x[:3])
    fixed = ["--solver", "heun", "--num-steps", "2"]
    assert main(["loglik", "--checkpoint", str(img), "--data", str(tmp_path / "digits.npy"), *fixed,
                 "--out", str(tmp_path / "null")]) == 0
    assert "loaded step 4" in capsys.readouterr().out
    assert main(["loglik", "--checkpoint", str(img), "--data", str(tmp_path / "digits.npy"), *fixed,
                 "--label", "3", "--out", str(tmp_path / "three")]) == 0
    null, three = np.load(tmp_path / "null" / "loglik.npy"), np.load(tmp_path / "three" / "loglik.npy")
    assert null.shape == three.shape == (3,)
    assert np.isfinite(null).all() and np.isfinite(three).all()
    assert not np.allclose(null, three)
    err = fail(capsys, ["loglik", "--checkpoint", str(img), "--data", str(tmp_path / "digits.npy"),
                         "--label", "10", "--out", str(tmp_path / "bad")])
    assert "--label must lie in [0, 9]" in err and not (tmp_path / "bad").exists()
    np.save(tmp_path / "points.npy", np.zeros((3, 2), np.float32))
    err = fail(capsys, ["loglik", "--checkpoint", str(img), "--data", str(tmp_path / "points.npy"),
                         "--out", str(tmp_path / "bad")])
    assert "(8, 8, 1)" in err and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_reflow_on_an_image_run_is_refused(img, tmp_path, capsys):
    before = snapshot(img)
    err = fail(capsys, ["reflow", "--checkpoint", str(img), "--pairs", "10", "--steps", "2",
                         "--no-progress", "--out", str(tmp_path / "r")])
    assert "reflow takes point runs" in err
    assert not (tmp_path / "r").exists() and snapshot(img) == before


@pytest.mark.slow
def test_config_json_reproduces_an_image_run_bit_for_bit(img, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(img / "config.json"), "--no-progress", "--out", str(again)]) == 0
    assert_same_state(img, again)
    shutil.rmtree(again)
