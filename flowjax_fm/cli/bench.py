"""``flowjax-fm bench --suite NAME [--quick]``: the benchmark suites of a source checkout."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    # the arguments are the suite runner's (python -m benchmarks): main() hands them on unparsed
    return sub.add_parser(
        "bench", help="run a benchmark suite: bench --suite NAME [--quick] (source checkout)"
    )


def run(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise ValueError("the benchmarks ship with the source checkout: run this from a clone")
    return subprocess.call([sys.executable, "-m", "benchmarks", *argv], cwd=root)
