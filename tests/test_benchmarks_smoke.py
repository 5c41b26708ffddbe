"""The benchmark suites' smoke versions (``python -m benchmarks --suite NAME --quick``).

Each suite runs in its own process, as a user would run it, with its output redirected to a
temporary directory (``FLOWJAX_FM_BENCH_RESULTS``) so the committed results are never touched.
Checked: it exits 0 and leaves JSON lines that record the device and the library versions, a
markdown table and a plot. Where the peers (torch, torchcfm, POT, torchdiffeq) are not installed
(CI installs the ``test`` extra only) this also exercises each suite's "ours alone" path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["train", "coupling", "sinkhorn", "sampling", "likelihood", "scaling", "quality", "reflow",
          "unet", "digits", "paper2d", "conditional"]
# Each suite's smoke run takes one to three minutes of CPU: they run in the slow tier
# (`make test-all`), out of the default run.
DEFAULT: set[str] = set()


def _params():
    return [pytest.param(s, id=s, marks=[] if s in DEFAULT else [pytest.mark.slow]) for s in SUITES]


@pytest.mark.parametrize("suite", _params())
def test_suite_smoke_run(suite, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not the tests' 8 fake devices
    env.update(FLOWJAX_FM_BENCH_RESULTS=str(tmp_path), TMPDIR=str(tmp_path), MPLBACKEND="Agg",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--suite", suite, "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"suite {suite} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [json.loads(line) for f in tmp_path.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert lines, f"suite {suite} wrote no JSON lines: {sorted(p.name for p in tmp_path.iterdir())}"
    for row in lines:
        assert row["device_kind"] and row["versions"]["jax"], row
    assert list(tmp_path.glob("*.md")), f"suite {suite} wrote no markdown table"
    assert list(tmp_path.glob("*.png")), f"suite {suite} wrote no plot"
