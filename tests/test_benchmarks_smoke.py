"""The benchmark suites' smoke versions (``python -m benchmarks --suite NAME --quick``), and the
harness they share run on a toy suite.

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
          "unet", "digits", "paper2d", "conditional", "pairing", "auction", "large_sinkhorn",
          "semidiscrete", "fewstep", "riemannian", "discrete"]
# Each suite's smoke run takes one to three minutes of CPU: they run in the slow tier
# (`make test-all`), out of the default run.
DEFAULT: set[str] = set()


TOY_SUITE = """
from benchmarks import _harness as h


def flags(ap):
    ap.add_argument("--n", type=int, nargs="+", default=[1, 2, 3])


def run_case(ctx, case):
    t = h.time_fn(lambda: sum(range(1000 * case["n"])), ctx.repeats)
    return {"suite": "toy", "n": case["n"], "time_s": t.median_s, "first_s": t.first_s,
            "repeats": ctx.repeats}


SUITE = h.Suite(
    name="toy", title="Toy", doc="A toy suite.", cases=lambda ctx: [{"n": n} for n in ctx.args.n],
    run_case=run_case, columns=[("n", lambda r: r["n"]), ("ms", lambda r: f"{1e3 * r['time_s']:.3f}")],
    preamble=lambda ctx, rows: f"{h.env_line(ctx.env)}. Command: {ctx.command}.", flags=flags,
    quick={"n": [1]}, repeats=(4, 2), peak=False, quick_file=True,
    history=lambda ctx, rows: h.newest_run(rows),
    plot=lambda ctx, rows: h.write_plot(ctx.file("png"), rows, "n", "time_s", ["suite"], title="toy"),
)

if __name__ == "__main__":
    h.main(SUITE)
"""


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not the tests' 8 fake devices
    env.update(TMPDIR=str(tmp_path), MPLBACKEND="Agg", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return env


def test_harness_runs_a_toy_suite(tmp_path):
    """Common flags, quick values, one JSON line per case with the environment, the table, the
    plot, and ``--render`` (the table again from the JSON lines, nothing run)."""
    script = tmp_path / "toy.py"
    script.write_text(TOY_SUITE)
    out = tmp_path / "out"

    def run(*args):
        proc = subprocess.run([sys.executable, str(script), "--out", str(out), *args], cwd=tmp_path,
                              env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    run("--quick")
    rows = [json.loads(line) for line in (out / "toy_quick.jsonl").read_text().splitlines()]
    assert [(r["n"], r["repeats"], r["quick"]) for r in rows] == [(1, 2, True)]
    assert rows[0]["device_kind"] and rows[0]["versions"]["jax"] and rows[0]["first_s"] > 0
    md = (out / "toy_quick.md").read_text()
    assert md.startswith("# Toy") and "| n | ms |" in md and "--quick" in md
    assert (out / "toy_quick.png").stat().st_size > 0

    (out / "toy_quick.md").unlink()
    run("--quick", "--render")
    assert (out / "toy_quick.md").read_text().count("\n| ") == 2  # the header and the one row
    assert len((out / "toy_quick.jsonl").read_text().splitlines()) == 1


def _params():
    return [pytest.param(s, id=s, marks=[] if s in DEFAULT else [pytest.mark.slow]) for s in SUITES]


@pytest.mark.parametrize("suite", _params())
def test_suite_smoke_run(suite, tmp_path):
    env = _env(tmp_path) | {"FLOWJAX_FM_BENCH_RESULTS": str(tmp_path)}
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
