"""One entry point for every benchmark suite.

    python -m benchmarks --suite train [--quick] [the suite's own flags]
    python -m benchmarks --suite all --quick        # the smoke versions of every suite
    flowjax-fm bench --suite train                  # the same, from a source checkout

Each suite is a module ``benchmarks.bench_*`` (its cases on top of ``benchmarks._harness``),
run in its own process (``python -m benchmarks.bench_train``), which pins its threads before
JAX starts; it appends JSON lines to ``RESULTS/NAME.jsonl`` and rewrites the markdown table
``RESULTS/NAME.md`` and its plots (``RESULTS``: ``--out``, else ``$FLOWJAX_FM_BENCH_RESULTS``,
else ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = {
    "train": "bench_train",
    "coupling": "bench_assignment",
    "sinkhorn": "bench_sinkhorn",
    "sampling": "bench_sampling",
    "likelihood": "bench_likelihood",
    "scaling": "bench_scaling",
    "quality": "bench_quality",
    "reflow": "bench_reflow",
    "unet": "bench_unet",
    "digits": "bench_digits",
    "paper2d": "bench_paper2d",
    "conditional": "bench_conditional",
    "pairing": "bench_pairing",
    "auction": "bench_auction",
    "large_sinkhorn": "bench_large_sinkhorn",
    "semidiscrete": "bench_semidiscrete",
    "discrete": "bench_discrete",
    "riemannian": "bench_riemannian",
    "fewstep": "bench_fewstep",
    "bridges": "bench_bridges",
    "trajectory": "bench_trajectory",
}


def run(suite: str, quick: bool, extra: list[str]) -> int:
    module = SUITES[suite]
    if not (HERE / f"{module}.py").is_file():
        print(f"suite {suite!r}: benchmarks/{module}.py is missing", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *(["--quick"] if quick else []), *extra]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=HERE.parent)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True, choices=[*SUITES, "all"])
    ap.add_argument("--quick", action="store_true", help="the suite's smoke version")
    args, extra = ap.parse_known_args(argv)
    suites = list(SUITES) if args.suite == "all" else [args.suite]
    codes = {s: run(s, args.quick, extra) for s in suites}
    failed = [s for s, c in codes.items() if c]
    if failed:
        print(f"failed suites: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
