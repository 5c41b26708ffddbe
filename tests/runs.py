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


RUN_FILES = ("config.json", "run.json", "metrics.json")


def fail(capsys, argv, code=2) -> str:
    """Run ``cli.main(argv)``, expect exit ``code`` and one error line; return that line."""
    import pytest

    from flowjax_fm.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == code, capsys.readouterr().err
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowjax-fm: error: "), err
    return lines[0]


def assert_same_state(a_dir, b_dir) -> None:
    """The restored train states of two run directories are equal, bit for bit."""
    import jax
    import numpy as np

    def leaves(tree):
        out = []
        for leaf in jax.tree.leaves(tree):
            if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                leaf = jax.random.key_data(leaf)
            out.append(np.asarray(leaf))
        return out

    la = leaves(fm.experiments.load_run(a_dir).state)
    lb = leaves(fm.experiments.load_run(b_dir).state)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def snapshot(run: Path):
    """What must not change when a command refuses to write into ``run``."""
    run = Path(run)
    files = {name: (run / name).read_bytes() for name in RUN_FILES if (run / name).exists()}
    steps = sorted(p.name for p in (run / "checkpoint").iterdir()) if (run / "checkpoint").is_dir() else []
    return files, steps, sorted(str(p.relative_to(run)) for p in run.rglob("*"))
