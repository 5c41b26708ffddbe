"""The command line with few-step objectives: ``train --objective``, ``sample --num-steps K``."""

import json

import numpy as np
import pytest
from runs import fail

from flowjax_fm.cli import main

POINT = ["--steps", "10", "--batch", "32", "--eval-samples", "100", "--devices", "1", "--chunk", "5",
         "--hidden", "16,16", "--no-progress"]


@pytest.fixture(scope="module")
def meanflow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mf") / "run"
    assert main(["train", *POINT, "--objective", "meanflow", "--out", str(out)]) == 0
    return out


def test_meanflow_run_evaluates_one_two_and_four_jumps(meanflow_run):
    metrics = json.loads((meanflow_run / "metrics.json").read_text())
    assert metrics["nfe"] == 1
    for k in (1, 2, 4):
        assert np.isfinite(metrics[f"w2_{k}step"])
    config = json.loads((meanflow_run / "config.json").read_text())
    assert config["objective"] == "meanflow" and config["eval"]["solver"] == "few-step"
    assert config["model"]["hidden"] == [16, 16] and config["model"]["activation"] == "silu"


@pytest.mark.parametrize("k", [1, 4])
def test_sample_with_k_jumps(meanflow_run, tmp_path, capsys, k):
    out = tmp_path / f"s{k}"
    assert main(["sample", "--checkpoint", str(meanflow_run), "--num-steps", str(k), "--n", "30",
                 "--out", str(out)]) == 0
    assert f"nfe={k}" in capsys.readouterr().out
    assert np.load(out / "samples.npy").shape == (30, 2)


def test_a_meanflow_model_also_samples_with_an_ode_solver(meanflow_run, tmp_path, capsys):
    """Its instantaneous velocity u(x, t, t) is an ODE field."""
    out = tmp_path / "ode"
    assert main(["sample", "--checkpoint", str(meanflow_run), "--solver", "rk4", "--num-steps", "3",
                 "--n", "20", "--out", str(out)]) == 0
    assert "nfe=12" in capsys.readouterr().out


def test_encode_needs_an_ode_solver(meanflow_run, tmp_path, capsys):
    np.save(tmp_path / "pts.npy", np.zeros((4, 2), np.float32))
    line = fail(capsys, ["sample", "--checkpoint", str(meanflow_run), "--encode",
                         str(tmp_path / "pts.npy"), "--out", str(tmp_path / "e")])
    assert "ODE --solver" in line


@pytest.mark.parametrize("objective", ["shortcut", "consistency"])
def test_other_few_step_objectives_train_and_sample(objective, tmp_path, capsys):
    out = tmp_path / objective
    assert main(["train", *POINT, "--objective", objective, "--out", str(out)]) == 0
    assert main(["sample", "--checkpoint", str(out), "--num-steps", "2", "--n", "20",
                 "--out", str(tmp_path / "s")]) == 0
    if objective == "consistency":  # no velocity: an ODE solver is refused, naming why
        line = fail(capsys, ["sample", "--checkpoint", str(out), "--solver", "dopri5",
                             "--out", str(tmp_path / "o")])
        assert "consistency model" in line


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--objective", "diffusion"], "unknown objective 'diffusion'"),
        (["--objective", "consistency", "--solver", "dopri5"], "consistency model"),
        (["--guidance-scale", "2"], "guidance_scale trains with condition dropout"),
        (["--objective", "shortcut", "--cond-dropout", "0.1", "--guidance-scale", "2"],
         "MeanFlow's guidance"),
    ],
)
def test_bad_objective_flags_are_one_line(flags, message, tmp_path, capsys):
    line = fail(capsys, ["train", *POINT, *flags, "--out", str(tmp_path / "x")])
    assert message in line
    assert not (tmp_path / "x").exists()
