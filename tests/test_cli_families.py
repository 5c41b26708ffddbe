"""The command line on manifold and token targets: train, sample, and the checks of their options."""

import json

import numpy as np
import pytest
from runs import fail

from flowjax_fm.cli import main

QUICK = ["--steps", "6", "--batch", "32", "--eval-samples", "64", "--devices", "1", "--chunk", "3",
         "--hidden", "16,16", "--no-progress"]


@pytest.mark.parametrize("target, dim", [("sphere-vmf", 3), ("torus-mixture", 2)])
def test_manifold_targets_train_and_sample_on_the_manifold(target, dim, tmp_path, capsys):
    out = tmp_path / target
    assert main(["train", *QUICK, "--target", target, "--eval-num-steps", "4", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["w2"]) and metrics["nfe"] == 16  # rk4: 4 evaluations a step
    config = json.loads((out / "config.json").read_text())
    assert config["path"] == "geodesic" and config["source"] == "uniform"
    assert main(["sample", "--checkpoint", str(out), "--n", "50", "--num-steps", "3",
                 "--out", str(tmp_path / "s")]) == 0
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (50, dim)
    if dim == 3:
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    else:
        assert x.min() >= 0 and x.max() < 2 * np.pi


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target", "sphere-vmf", "--path", "condot"], "a sphere run's path is 'geodesic'"),
        (["--target", "torus-mixture", "--coupling", "sinkhorn"], "geodesic cost"),
        (["--target", "sphere-vmf", "--source", "normal"], "source is 'uniform'"),
        (["--target", "torus-mixture", "--objective", "discrete"], "objective 'discrete' trains on tokens"),
    ],
)
def test_bad_family_options_are_one_line(flags, message, tmp_path, capsys):
    line = fail(capsys, ["train", *QUICK, *flags, "--out", str(tmp_path / "x")])
    assert message in line
    assert not (tmp_path / "x").exists()


def test_token_targets_train_and_sample(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["train", *QUICK, "--target", "checkerboard-tokens", "--eval-num-steps", "8",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["tv"] <= 1.0 and metrics["invalid"] == 0.0 and metrics["nfe"] == 8
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "discrete" and config["path"] == "mixture"
    assert main(["sample", "--checkpoint", str(out), "--n", "40", "--num-steps", "4",
                 "--out", str(tmp_path / "s")]) == 0
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.shape == (40, 2) and x.dtype.kind == "i" and x.min() >= 0 and x.max() < 64


def test_a_token_file_and_the_transformer_with_a_mask_source(tmp_path, capsys):
    data = np.random.default_rng(0).integers(0, 5, size=(200, 6)).astype(np.int32)
    np.save(tmp_path / "tokens.npy", data)
    out = tmp_path / "file"
    assert main(["train", "--steps", "4", "--batch", "16", "--eval-samples", "32", "--devices", "1",
                 "--chunk", "2", "--no-progress", "--target", str(tmp_path / "tokens.npy"),
                 "--source", "mask", "--model", "token-transformer", "--eval-num-steps", "4",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["marginal_tv"] <= 1.0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coupling", "exact-ot"], "a tokens run pairs nothing"),
        (["--solver", "dopri5"], "CTMC steps"),
        (["--source", "normal"], "'uniform' or 'mask'"),
    ],
)
def test_bad_token_options_are_one_line(flags, message, tmp_path, capsys):
    line = fail(capsys, ["train", *QUICK, "--target", "checkerboard-tokens", *flags,
                         "--out", str(tmp_path / "x")])
    assert message in line
