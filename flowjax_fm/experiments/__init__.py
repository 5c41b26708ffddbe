"""Experiments: the jobs built on the library (what ``flowjax-fm`` runs), one pipeline for all.

A run is described by one :class:`RunConfig` (points or images; a model sub-config naming
``mlp``, ``unet`` or a model given to :func:`register_model`; an evaluation sub-config) and
lives in one run-directory format::

    cfg = fm.experiments.load_config("configs/torchcfm_tutorial.json")
    cfg = fm.experiments.override(cfg, {"steps": 2000, "model.hidden": [128, 128]})
    metrics = fm.experiments.train_and_evaluate(cfg, "runs/a")        # a new directory
    run = fm.experiments.load_run("runs/a")                           # a Run, not a tuple
    x = fm.sampling.sample(run.field(), run.draw_source(key, 500)).x

``sample``, ``loglik`` and ``reflow_run`` are the other commands' jobs. Plots (matplotlib) are
drawn here only, on ``Figure`` objects: importing the library never touches a backend.
"""

from flowjax_fm.experiments._build import build, model_names, register_model
from flowjax_fm.experiments._commands import loglik, reflow_run, sample
from flowjax_fm.experiments._config import (
    TASK_DEFAULTS,
    EvalConfig,
    ModelConfig,
    RunConfig,
    load_config,
    override,
    resolve,
)
from flowjax_fm.experiments._logging import MetricLogger
from flowjax_fm.experiments._rundir import Run, load_run
from flowjax_fm.experiments._train import train_and_evaluate

__all__ = [
    "EvalConfig",
    "MetricLogger",
    "ModelConfig",
    "Run",
    "RunConfig",
    "TASK_DEFAULTS",
    "build",
    "load_config",
    "load_run",
    "loglik",
    "model_names",
    "override",
    "reflow_run",
    "register_model",
    "resolve",
    "sample",
    "train_and_evaluate",
]
