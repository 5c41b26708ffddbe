"""Sample quality on 8gaussians -> moons: flowjax_fm against torchcfm with the same settings.

Run:

    .venv/bin/python -m benchmarks.bench_quality [--quick] [--seeds 0 1 2] [--torch-seeds 0] [--steps 20000]

torchcfm's 2D tutorial settings: MLP 3x64 SELU, Adam 1e-3, batch 256, 20,000 steps, sigma 0.1,
8gaussians -> moons. Ours runs the main job, ``fm.experiments.train_and_evaluate``, on
``configs/torchcfm_tutorial.json`` (its coupling, seed and steps set per case). Evaluation: 2,000 samples integrated with dopri5 at rtol = atol = 1e-4 (ours:
diffrax; torchcfm: torchdiffeq, NFE counted by wrapping the network), exact W2 between them and
2,000 fresh target points (``fm.metrics.wasserstein``, the same function for both sides).

Timing: training wall time per run (ours includes compilation). How close our training runs to
the machine's limit: XLA's FLOP count of one train step (batch 256; the exact-OT solve is a host
callback XLA does not count) x the steady-state steps/s (the 500-step chunks after the first,
compile left out),
against a 2048^2 float32 matmul measured in the same run. Older JSON lines without these fields
show "-".

Writes ``quality.jsonl`` (appended), ``quality.md`` and ``quality.png`` (W2 against NFE, mean
over seeds) under ``RESULTS`` (``quality_quick.*`` with ``--quick``;
``FLOWJAX_FM_BENCH_RESULTS`` redirects). ``--render`` rewrites the md and png from the JSON lines
without training. The table holds the newest result per library, method and seed at ``--steps``.
"""

from __future__ import annotations

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}
BATCH = 256


def config(case: dict):
    """The run of one case: torchcfm's tutorial config (``configs/torchcfm_tutorial.json``) with
    the case's coupling, seed, steps, chunk and evaluation size."""
    return h.experiment_config("torchcfm_tutorial", {
        "coupling": METHODS[case["method"]], "seed": case["seed"], "steps": case["steps"],
        "chunk": case["chunk"], "eval.samples": case["eval"]})


def ours(case: dict) -> dict:
    """Train and evaluate one case with the main job, ``fm.experiments.train_and_evaluate``.

    Returns w2, nfe, train_s, steps_per_s (steady state), compile_s, flops_per_step.
    """
    cfg = config(case)
    m, _ = h.run_experiment(cfg)
    return {"w2": m["w2"], "nfe": m["nfe"], "train_s": m["train_s"], "steps_per_s": m["steps_per_s"],
            "compile_s": m["compile_s"], "flops_per_step": h.experiment_flops(cfg, "points", (2,))}


def torchcfm(case: dict) -> dict:
    """The same configuration with torchcfm's tutorial loop and torchdiffeq's dopri5."""
    r = peers.torchcfm_job(case["method"], case["seed"], case["steps"], batch=BATCH, source="8gaussians",
                           target="moons", x_eval=case["eval"])
    return {"w2": float(fm.metrics.wasserstein(r["x_dopri5"], r["x_target"])), "nfe": r["nfe"],
            "train_s": r["train_s"], "steps_per_s": r["steps_per_s"]}


LIBS = {"flowjax_fm": ours, "torchcfm": torchcfm}


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--torch-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=500, help="steps per compiled chunk (ours)")


def cases(ctx):
    a = ctx.args
    missing = peers.start("torchcfm side", "torch", "torchcfm", "torchdiffeq")
    for method in METHODS:
        for lib, seeds in (("flowjax_fm", a.seeds), ("torchcfm", [] if missing else a.torch_seeds)):
            for seed in seeds:
                yield {"method": method, "library": lib, "seed": seed, "steps": a.steps, "eval": a.eval,
                       "chunk": a.chunk}


def run_case(ctx, case) -> dict:
    r = LIBS[case["library"]](case)
    lim = {}
    if r.get("flops_per_step") and r.get("steps_per_s"):
        lim = h.limit_fields(r["flops_per_step"], 1.0 / r["steps_per_s"], ctx.peak)
    return {"suite": "quality", "task": "8gaussians->moons", "method": case["method"], "library": case["library"],
            "seed": case["seed"], "steps": case["steps"], "matmul_peak_flops": ctx.peak, **r, **lim}


def history(ctx, rows):
    """The newest row per (method, library, seed) at ``--steps``."""
    return h.latest((r for r in rows if r.get("suite") == "quality" and r.get("steps") == ctx.args.steps),
                    lambda r: (r["method"], r["library"], r["seed"]))


def table_rows(ctx, rows):
    out = []
    for method in METHODS:
        for lib in LIBS:
            rs = sorted((r for r in rows if (r["method"], r["library"]) == (method, lib)), key=lambda r: r["seed"])
            if rs:
                out.append({"method": method, "library": lib, "rows": rs})
    return out


COLUMNS = [
    ("method", lambda t: t["method"]), ("library", lambda t: t["library"]), ("seeds", lambda t: len(t["rows"])),
    ("W2 (mean +- sd)", lambda t: h.mean_sd(r["w2"] for r in t["rows"])),
    ("NFE", lambda t: f"{h.mean_of(t['rows'], 'nfe'):.0f}"),
    ("train time (s)", lambda t: f"{h.mean_of(t['rows'], 'train_s'):.0f}"),
    ("steps/s", lambda t: h.fmt(h.mean_of(t["rows"], "steps_per_s"), ".0f")),
    ("GFLOP/s (of matmul)", lambda t: h.fmt_limit({k: h.mean_of(t["rows"], k) for k in ("achieved_gflops", "of_peak")})),
]


def preamble(ctx, rows) -> str:
    newest = max(rows, key=lambda r: r["time"])
    peaks = sorted({round(r["matmul_peak_flops"] / 1e9, 1) for r in rows if r.get("matmul_peak_flops")})
    return (
        f"Newest run {newest['time']}, {newest['device_kind']}, load {newest['load_avg_1m']:.1f}. W2: "
        "exact, 2,000 generated vs 2,000 fresh target points; dopri5 rtol = atol = 1e-4. Train time: "
        "wall time of the whole run (ours includes compilation). Steps/s: ours steady state (the "
        "chunks of 500 steps (100 with --quick) after the first), torchcfm steps / train time. "
        "GFLOP/s (ours): XLA's FLOP count of one train step (the exact-OT solve is a host callback it "
        "does not count) x steady steps/s, and its share of a 2048^2 float32 matmul measured in the same run "
        f"({', '.join(map(str, peaks)) or '-'} GFLOP/s); '-' for runs recorded before these fields. "
        f"Plot: `{ctx.name}.png` (W2 against NFE, mean over seeds). Command: {ctx.command} (the table "
        f"holds the newest result per library, method and seed in {ctx.name}.jsonl at this step count)."
    )


def plot(ctx, rows) -> None:
    points = [{"library": t["library"], "method": t["method"], "nfe": h.mean_of(t["rows"], "nfe"),
               "w2": h.mean_of(t["rows"], "w2")} for t in table_rows(ctx, rows)]
    h.write_plot(ctx.file("png"), points, "nfe", "w2", ["library", "method"], title=f"W2 vs NFE, {ctx.args.steps} steps",
                 xlabel="NFE (dopri5, tol 1e-4)", ylabel="W2 to moons", logx=False, logy=False)


SUITE = h.Suite(
    name="quality", title="Sample quality, 8gaussians -> moons (torchcfm tutorial settings)", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"seeds": [0], "torch_seeds": [0], "steps": 300, "eval": 300, "chunk": 100}, quick_file=True,
    history=history, table_rows=table_rows, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
