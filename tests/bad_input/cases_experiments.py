"""Bad inputs of the job layer, ``fm.experiments`` (configs, run directories, commands)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import flowjax_fm as fm
from bad_input import Case

E = fm.experiments


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="fjfm-bad-"))


def _file(text: str) -> Path:
    path = _tmp() / "config.json"
    path.write_text(text)
    return path


def _resolve(**changes):
    return E.resolve(E.override(E.RunConfig(), changes), "points")


def _not_a_run() -> Path:
    d = _tmp()
    (d / "notes.txt").write_text("not a run")
    return d


CASES = [
    # configs: every field checked by resolve, one wording
    Case(
        "experiments.RunConfig",
        "unknown key",
        lambda: E.RunConfig.from_dict({"stepz": 3}),
        ValueError,
        r"unknown config key stepz",
    ),
    Case(
        "experiments.RunConfig",
        "not an object",
        lambda: E.RunConfig.from_dict([1]),
        ValueError,
        r"a run config is a JSON object",
    ),
    Case("experiments.RunConfig", "lr=0", lambda: _resolve(lr=0.0), ValueError, r"lr must be .*\(0, inf\)"),
    Case("experiments.RunConfig", "lr=nan", lambda: _resolve(lr=float("nan")), ValueError, r"lr must be"),
    Case(
        "experiments.RunConfig",
        "steps=True",
        lambda: _resolve(steps=True),
        ValueError,
        r"steps must be an int >= 1, got True",
    ),
    Case(
        "experiments.RunConfig",
        "batch=0",
        lambda: _resolve(batch=0),
        ValueError,
        r"batch must be an int >= 1",
    ),
    Case("experiments.RunConfig", "seed<0", lambda: _resolve(seed=-1), ValueError, r"seed must be an int"),
    Case(
        "experiments.RunConfig",
        "ema_decay=2",
        lambda: _resolve(ema_decay=2.0),
        ValueError,
        r"ema_decay must be .*\[0, 1\]",
    ),
    Case(
        "experiments.RunConfig", "clip=nan", lambda: _resolve(clip=float("nan")), ValueError, r"clip must be"
    ),
    Case("experiments.RunConfig", "sigma<0", lambda: _resolve(sigma=-0.1), ValueError, r"sigma must be"),
    Case(
        "experiments.RunConfig",
        "bridge sigma=0",
        lambda: E.build(_resolve(path="bridge", sigma=0.0, coupling="sinkhorn"), (2,), None),
        ValueError,
        r"sigma must be .*\(0, inf\)",
    ),
    Case(
        "experiments.RunConfig",
        "epsilon=0",
        lambda: _resolve(coupling="sinkhorn", epsilon=0.0),
        ValueError,
        r"epsilon must be .*\(0, inf\)",
    ),
    Case(
        "experiments.RunConfig",
        "epsilon without sinkhorn",
        lambda: _resolve(epsilon=0.1),
        ValueError,
        r"epsilon is the Sinkhorn regularisation",
    ),
    Case(
        "experiments.RunConfig",
        "unknown coupling",
        lambda: _resolve(coupling="ot"),
        ValueError,
        r"unknown coupling 'ot'",
    ),
    Case(
        "experiments.RunConfig",
        "cond_dropout=1.5",
        lambda: _resolve(cond_dropout=1.5),
        ValueError,
        r"cond_dropout must be .*\[0, 1\]",
    ),
    Case(
        "experiments.ModelConfig",
        "hidden=[0]",
        lambda: _resolve(**{"model.hidden": [0]}),
        ValueError,
        r"model.hidden must be positive integers",
    ),
    Case(
        "experiments.ModelConfig",
        "hidden=[True]",
        lambda: _resolve(**{"model.hidden": [True]}),
        ValueError,
        r"model.hidden must be positive integers",
    ),
    Case(
        "experiments.ModelConfig",
        "unknown model",
        lambda: _resolve(**{"model.name": "resnet"}),
        ValueError,
        r"unknown model 'resnet'",
    ),
    Case(
        "experiments.ModelConfig",
        "unet option on mlp",
        lambda: _resolve(**{"model.channels": 8}),
        ValueError,
        r"model.channels applies to model 'unet' only",
    ),
    Case(
        "experiments.EvalConfig",
        "rtol=0",
        lambda: _resolve(**{"eval.rtol": 0.0}),
        ValueError,
        r"eval.rtol must be .*\(0, inf\)",
    ),
    Case(
        "experiments.EvalConfig",
        "euler without steps",
        lambda: _resolve(**{"eval.solver": "euler"}),
        ValueError,
        r"takes a fixed number of steps",
    ),
    Case(
        "experiments.EvalConfig",
        "unknown solver",
        lambda: _resolve(**{"eval.solver": "rk45"}),
        ValueError,
        r"unknown eval.solver 'rk45'",
    ),
    Case(
        "experiments.EvalConfig",
        "guidance on points",
        lambda: _resolve(**{"eval.guidance_scales": [1.0]}),
        ValueError,
        r"applies to kind 'images' only",
    ),
    Case(
        "experiments.override",
        "unknown key",
        lambda: E.override(E.RunConfig(), {"model.depth": 3}),
        ValueError,
        r"unknown config key 'model.depth'",
    ),
    Case(
        "experiments.override",
        "not a dict under",
        lambda: E.override(E.RunConfig(), {"lr.x": 3}),
        ValueError,
        r"unknown config key 'lr.x'",
    ),
    Case(
        "experiments.load_config",
        "missing file",
        lambda: E.load_config(_tmp() / "none.json"),
        ValueError,
        r"cannot read it",
    ),
    Case(
        "experiments.load_config",
        "bad json",
        lambda: E.load_config(_file("{lr: 1")),
        ValueError,
        r"not valid JSON",
    ),
    Case(
        "experiments.load_config",
        "unknown key",
        lambda: E.load_config(_file('{"lrate": 1}')),
        ValueError,
        r"unknown config key lrate",
    ),
    Case(
        "experiments.resolve",
        "unknown kind",
        lambda: E.resolve(E.RunConfig(), "audio"),
        ValueError,
        r"unknown run kind 'audio'",
    ),
    Case(
        "experiments.TASK_DEFAULTS",
        "resolve with a bad default",
        lambda: E.resolve(E.override(E.RunConfig(), {"steps": 0}), "images"),
        ValueError,
        r"steps must be an int >= 1",
    ),
    # models by name
    Case(
        "experiments.register_model",
        "empty name",
        lambda: E.register_model("", lambda *a: None),
        ValueError,
        r"a model name must be a new non-empty string",
    ),
    Case(
        "experiments.register_model",
        "built-in name",
        lambda: E.register_model("mlp", lambda *a: None),
        ValueError,
        r"a model name must be a new non-empty string",
    ),
    Case(
        "experiments.register_model",
        "not callable",
        lambda: E.register_model("x-model", 3),
        TypeError,
        r"builder must be callable",
    ),
    Case(
        "experiments.build",
        "unresolved config",
        lambda: E.build(E.RunConfig(), (2,), None),
        ValueError,
        r"resolve",
    ),
    Case(
        "experiments.model_names",
        "called with a value",
        lambda: E.model_names("mlp"),
        TypeError,
        r"positional argument",
    ),
    # run directories and the commands reading them
    Case("experiments.load_run", "not a run", lambda: E.load_run(_not_a_run()), ValueError, r"run"),
    Case("experiments.load_run", "missing", lambda: E.load_run(_tmp() / "gone"), ValueError, r"run"),
    Case(
        "experiments.Run", "through load_run of a file", lambda: E.load_run(_file("{}")), ValueError, r"run"
    ),
    Case(
        "experiments.sample",
        "n=0",
        lambda: E.sample(_not_a_run(), n=0),
        ValueError,
        r"--n must be an int >= 1",
    ),
    Case(
        "experiments.sample",
        "guidance=nan",
        lambda: E.sample(_not_a_run(), guidance=float("nan")),
        ValueError,
        r"--guidance must be a finite number",
    ),
    Case("experiments.sample", "not a run", lambda: E.sample(_not_a_run()), ValueError, r"run"),
    Case("experiments.loglik", "not a run", lambda: E.loglik(_not_a_run(), "x.npy"), ValueError, r"run"),
    Case(
        "experiments.loglik",
        "num_probes=0",
        lambda: E.loglik(_not_a_run(), "x.npy", num_probes=0),
        ValueError,
        r"num.probes must be an int >= 1",
    ),
    Case(
        "experiments.reflow_run",
        "pairs=0",
        lambda: E.reflow_run(_not_a_run(), pairs=0),
        ValueError,
        r"pairs must be an int >= 1",
    ),
    Case("experiments.reflow_run", "not a run", lambda: E.reflow_run(_not_a_run()), ValueError, r"run"),
    Case(
        "experiments.train_and_evaluate",
        "not a config",
        lambda: E.train_and_evaluate({"lr": 1}, _tmp()),
        TypeError,
        r"RunConfig",
    ),
    Case(
        "experiments.train_and_evaluate",
        "directory not new",
        lambda: E.train_and_evaluate(E.override(E.RunConfig(), {"steps": 2}), _not_a_run()),
        ValueError,
        r"not empty",
    ),
    Case(
        "experiments.MetricLogger",
        "log_every=0",
        lambda: E.MetricLogger(_tmp(), log_every=0),
        ValueError,
        r"log_every must be an int >= 1",
    ),
    Case(
        "experiments.MetricLogger",
        "start_step=-1",
        lambda: E.MetricLogger(_tmp(), start_step=-1),
        ValueError,
        r"start_step must be an int >= 0",
    ),
]

EXEMPT: dict[str, str] = {}
