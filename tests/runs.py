"""Test helper: an untrained run directory in the format the trainer writes (no training)."""

from pathlib import Path

import flowjax_fm as fm


def make_run(run_dir, **fields) -> Path:
    """Write run.json, config.json and a step-0 checkpoint of the config ``fields`` describe."""
    from flowjax_fm.experiments._rundir import make_directory, run_record, write_run_files
    from flowjax_fm.experiments._train import prepare

    config = fm.experiments.override(fm.experiments.RunConfig(), fields)
    config, task, refs, built = prepare(config)
    run_dir = make_directory(Path(run_dir).absolute())
    write_run_files(run_dir, run_record(config, task, refs))
    ckpt = fm.training.Checkpointer(run_dir / "checkpoint")
    ckpt.save(fm.training.init_state(built.init, built.optimizer))
    ckpt.close()
    return run_dir
