"""One entry point for every benchmark suite.

    python -m benchmarks --suite train [--quick] [extra args for the suite's script]
    python -m benchmarks --suite all --quick        # the smoke versions of every suite
    flowjax-fm bench --suite train                  # the same, from a source checkout

Each suite is a script ``benchmarks/bench_*.py`` run in its own process (each pins its own
threads and devices before JAX starts); it appends JSON lines to ``benchmarks/results/NAME.jsonl``
and rewrites the markdown table ``benchmarks/results/NAME.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = {
    "train": "bench_train.py",
    "coupling": "bench_assignment.py",
    "sinkhorn": "bench_sinkhorn.py",
    "sampling": "bench_sampling.py",
    "likelihood": "bench_likelihood.py",
    "scaling": "bench_scaling.py",
    "quality": "bench_quality.py",
    "reflow": "bench_reflow.py",
    "unet": "bench_unet.py",
    "digits": "bench_digits.py",
    "paper2d": "bench_paper2d.py",
    "conditional": "bench_conditional.py",
}


def run(suite: str, quick: bool, extra: list[str]) -> int:
    script = HERE / SUITES[suite]
    if not script.is_file():
        print(f"suite {suite!r}: {script.name} is missing", file=sys.stderr)
        return 2
    cmd = [sys.executable, str(script), *(["--quick"] if quick else []), *extra]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


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
