"""OT-CFM end to end through the CLI: the coupling in the step against pairing ahead on threads.

Run (the whole machine: pairing ahead needs a second core, so nothing is pinned):

    .venv/bin/python -m benchmarks.bench_pairing [--quick] [--batch 256 1024 4096]

Each case is one ``flowjax-fm train`` process on the main job's task (8gaussians -> moons, the
default MLP, exact OT, ``--eval-samples 500``) with ``--pairing in_step`` (the compiled step
calls the host solver and waits for it: the code path before issue 13), ``--pairing prefetch``
with 1 and 2 worker threads, and I-CFM (``--coupling independent``) for the ratio. The rate is
measured between two runs of different lengths, ``(n_long - n_short) / (train_s(n_long) -
train_s(n_short))`` with ``train_s`` from ``metrics.json``: compile time cancels, and so does the
head start of the pairing threads (they pair ahead while the first chunk compiles, which
flatters the CLI's own ``steps_per_s`` of a short run; it is kept as ``cli_steps_per_s``). The
variants take turns (``--repeats`` rounds), so a busy neighbour slows them alike; the table
shows the median per variant, and the machine's load average at the start.

Writes ``RESULTS/pairing.jsonl`` (appended), ``pairing.md`` and ``pairing.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import _harness as h

# batch: (short run, long run, chunk) in steps; the rate is measured between the two lengths
PLAN = {256: (1500, 4500, 250), 1024: (150, 450, 25), 4096: (8, 24, 2)}
ICFM_SCALE = {256: 2, 1024: 4, 4096: 25}
VARIANTS = {
    "I-CFM": ["--coupling", "independent"],
    "OT-CFM in_step": ["--coupling", "exact-ot", "--pairing", "in_step"],
    "OT-CFM prefetch x1": ["--coupling", "exact-ot", "--pairing", "prefetch", "--pairing-workers", "1"],
    "OT-CFM prefetch x2": ["--coupling", "exact-ot", "--pairing", "prefetch", "--pairing-workers", "2"],
}


def flags(ap) -> None:
    ap.add_argument("--batch", type=int, nargs="+", default=list(PLAN), choices=list(PLAN))


def _train(batch: int, extra: list[str], quick: bool) -> dict:
    """The steady rate between a short and a long run (compile time and the pairing threads'
    head start, which pairs ahead while the first chunk compiles, cancel out)."""
    short, long, chunk = PLAN[batch]
    if "independent" in extra:  # I-CFM is 10-100x faster: longer runs keep the difference measurable
        scale = ICFM_SCALE[batch]
        short, long, chunk = short * scale, long * scale, chunk * scale
    if quick:
        short, long = 2 * chunk, 4 * chunk
    a, b = _run(batch, short, chunk, extra), _run(batch, long, chunk, extra)
    rate = (long - short) / (b["train_s"] - a["train_s"])
    return {**b, "steps_per_s": rate, "cli_steps_per_s": b["steps_per_s"], "steps": long}


def _run(batch: int, steps: int, chunk: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "import sys; from flowjax_fm.cli import main; sys.exit(main())",
               "train", "--out", os.path.join(tmp, "run"), "--no-progress", "--steps", str(steps),
               "--batch", str(batch), "--chunk", str(chunk), "--checkpoint-every", str(steps),
               "--eval-samples", "500", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-2000:]}")
        with open(os.path.join(tmp, "run", "metrics.json")) as f:
            metrics = json.load(f)
    return {"chunk": chunk, "steps_per_s": metrics["steps_per_s"], "train_s": metrics["train_s"],
            "compile_s": metrics.get("compile_s"), "w2": metrics.get("w2"), "nfe": metrics.get("nfe")}


def cases(ctx):
    for batch in ctx.args.batch:
        yield {"batch": batch}


def run_case(ctx, case) -> list[dict]:
    batch, runs = case["batch"], {name: [] for name in VARIANTS}
    for _ in range(ctx.repeats):
        for name, extra in VARIANTS.items():
            runs[name].append(_train(batch, extra, ctx.quick))
    rows = []
    icfm = float(np.median([r["steps_per_s"] for r in runs["I-CFM"]]))
    in_step = float(np.median([r["steps_per_s"] for r in runs["OT-CFM in_step"]]))
    for name, got in runs.items():
        rate = float(np.median([r["steps_per_s"] for r in got]))
        rows.append({"suite": "pairing", "batch": batch, "variant": name, "steps_per_s": rate,
                     "all_steps_per_s": [r["steps_per_s"] for r in got], "steps": got[0]["steps"],
                     "vs_in_step": rate / in_step, "vs_icfm": rate / icfm,
                     "w2": float(np.median([r["w2"] for r in got])),
                     "compile_s": float(np.median([r["compile_s"] for r in got]))})
    return rows


COLUMNS = [
    ("batch", lambda r: r["batch"]), ("variant", lambda r: r["variant"]),
    ("steps/s (median)", lambda r: f"{r['steps_per_s']:.1f}"),
    ("each round", lambda r: ", ".join(f"{v:.0f}" for v in r["all_steps_per_s"])),
    ("/ in_step", lambda r: f"{r['vs_in_step']:.2f}x"), ("/ I-CFM", lambda r: f"{r['vs_icfm']:.2f}"),
    ("W2 (long run)", lambda r: f"{r['w2']:.3f}"), ("steps (long run)", lambda r: r["steps"]),
]


def preamble(ctx, rows) -> str:
    return (
        f"{ctx.env['time']}, {ctx.env['device_kind']} ({ctx.env['platform']}), {ctx.env['cpu_count']} cores, "
        f"load {ctx.env['load_avg_1m']:.1f} at the start. One `flowjax-fm train` process per cell (main job "
        "task, default MLP, exact OT unless I-CFM), rate = the CLI's steady steps/s; variants take turns, "
        f"{ctx.repeats} rounds, median shown. `in_step` is the pairing inside the compiled step (the path "
        "before issue 13); `prefetch xK`: K pairing threads ahead of the step. Rates are differential: "
        "(steps of the long run - steps of the short run) / (difference of their training times), "
        "so compile time and the threads' head start cancel. "
        f"Plot: `pairing.png`. Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    h.write_plot(ctx.file("png"), rows, "batch", "steps_per_s", ["variant"],
                 title="OT-CFM end to end (CLI): pairing in the step vs ahead", xlabel="batch",
                 ylabel="steps / s")


SUITE = h.Suite(
    name="pairing", title="OT-CFM end to end: pairing in the step or ahead of it", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    repeats=(3, 1), peak=False, plot=plot, quick={"batch": [256]},
)

if __name__ == "__main__":
    h.main(SUITE)
