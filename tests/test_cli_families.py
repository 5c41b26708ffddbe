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
