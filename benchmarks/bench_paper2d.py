"""The 2D table of Tong et al. (2023): flowjax_fm and torchcfm through one harness, same arrays.

Run (one core, one thread for every library):

    .venv/bin/python -m benchmarks.bench_paper2d [--quick] [--steps 2000] [--seeds 42 43 44 45 46] [--skip-done]
        [--tasks ...] [--methods ...] [--libs ours torchcfm] [--torch-seeds 42]
    .venv/bin/python -m benchmarks.bench_paper2d --render --steps 3000   # table from the JSON lines

Their research harness: MLP 3x64 SELU, AdamW lr 1e-3 (weight decay 1e-5), batch 512, sigma 0.1;
10,000 train / 1,000 test points, drawn once per (task, seed) and fed as the same numpy arrays to
both libraries (training draws batches from the train arrays, with replacement); generation by
Euler with 100 steps from the 1,000 test source points; exact W2 (``fm.metrics.wasserstein``)
against the 1,000 test target points. NFE: an adaptive dopri5 (rtol = atol = 1e-4) from the same
points (ours: diffrax; torchcfm: torchdiffeq, counted by wrapping the network).

Methods (ours / torchcfm):

Ours runs the main job (``fm.experiments.train_and_evaluate``) on ``configs/tong2d_*.json`` with
the cell's train arrays as its source and target files; torchcfm runs its tutorial loop
(``_peers.torchcfm_job``).

- I-CFM: ``GaussianPath(0.1)`` + ``IndependentCoupling`` / ``ConditionalFlowMatcher(0.1)``;
- OT-CFM: ``GaussianPath(0.1)`` + ``ExactOTCoupling`` / ``ExactOptimalTransportConditionalFlowMatcher(0.1)``;
- FM (Lipman): ``CondOTPath(sigma_min=0.1)``, N(0, I) source, independent /
  ``TargetConditionalFlowMatcher(0.1)`` (it ignores its source, so no FM on moons -> 8gaussians);
- SB-CFM: ``BrownianBridgePath(1.0)`` + ``SinkhornCoupling(epsilon=2.0)`` (the entropic coupling
  of regularisation 2 sigma^2 the method prescribes) / ``SchrodingerBridgeConditionalFlowMatcher(1.0)``,
  whose default coupling is *exact* OT (its ``reg = 2 sigma^2`` is never used; ``--torch-sb-ot
  sinkhorn`` runs its entropic variant instead).

Every cell appends one JSON line to ``RESULTS/paper2d.jsonl`` as soon as it is done, so a partial
run is useful; ``RESULTS/paper2d.md`` is re-rendered from the JSON lines. The torchcfm cells run in
a spawned worker process pinned to the same core (torch's and POT's thread runtimes stay out of
the JAX process).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers
from flowjax_fm import experiments as ex

TASKS = {
    "N(0,I)->8gaussians": ("gaussian", "8gaussians"),
    "N(0,I)->moons": ("gaussian", "moons"),
    "N(0,I)->scurve": ("gaussian", "scurve"),
    "moons->8gaussians": ("moons", "8gaussians"),
}
METHODS = ("I-CFM", "OT-CFM", "FM", "SB-CFM")
LIBS = {"ours": "flowjax_fm", "torchcfm": "torchcfm"}
N_TRAIN, N_TEST, BATCH, LR, WEIGHT_DECAY, SIGMA = 10_000, 1_000, 512, 1e-3, 1e-5, 0.1
EULER_STEPS, RTOL = 100, 1e-4
NAME = "paper2d"
CLAIMS = Path(os.environ.get("TMPDIR", "/tmp")) / "flowjax_fm_paper2d_claims"


def cell_allowed(task: str, method: str) -> bool:
    """FM (Lipman) draws its own N(0, I) source, so it has no moons -> 8gaussians cell."""
    return not (method == "FM" and TASKS[task][0] != "gaussian")


@functools.cache
def datasets(task: str, seed: int) -> dict[str, np.ndarray]:
    """Fixed train/test arrays for one (task, seed), shared by both libraries."""
    src, tgt = TASKS[task]
    k = jax.random.split(jax.random.key(seed), 4)
    return {
        "x0_train": np.asarray(fm.data.sample_toy(src, k[0], N_TRAIN), np.float32),
        "x1_train": np.asarray(fm.data.sample_toy(tgt, k[1], N_TRAIN), np.float32),
        "x0_test": np.asarray(fm.data.sample_toy(src, k[2], N_TEST), np.float32),
        "x1_test": np.asarray(fm.data.sample_toy(tgt, k[3], N_TEST), np.float32),
    }


CONFIGS = {"I-CFM": "tong2d_icfm", "OT-CFM": "tong2d_otcfm", "FM": "tong2d_fm", "SB-CFM": "tong2d_sbcfm"}


def ours(case: dict, data: dict) -> dict:
    """Train one cell with the main job (``fm.experiments.train_and_evaluate`` on the method's
    ``configs/tong2d_*.json``, the cell's train arrays as source and target); then Euler and
    dopri5 samples from the test sources."""
    with tempfile.TemporaryDirectory(prefix="paper2d_") as tmp:
        files = {side: str(Path(tmp) / f"{side}.npy") for side in ("source", "target")}
        np.save(files["source"], data["x0_train"])
        np.save(files["target"], data["x1_train"])
        cfg = h.experiment_config(CONFIGS[case["method"]], {
            **files, "seed": case["seed"], "steps": case["steps"], "chunk": min(500, case["steps"])})
        m, run = h.run_experiment(cfg, keep=ex.load_run)
    field = run.field()
    t = time.perf_counter()
    euler = fm.sampling.sample(field, data["x0_test"], solver="euler", num_steps=EULER_STEPS)
    adaptive = fm.sampling.sample(field, data["x0_test"], solver="dopri5", rtol=RTOL, atol=RTOL)
    x_euler, x_dopri = np.asarray(euler.x), np.asarray(adaptive.x)
    return {"x_euler": x_euler, "x_dopri5": x_dopri, "nfe": int(adaptive.nfe), "train_s": m["train_s"],
            "compile_s": m["compile_s"], "sample_s": time.perf_counter() - t}


def torchcfm(case: dict, data: dict) -> dict:
    """The same cell with torchcfm (its research harness's settings), in the worker process."""
    sb = case["method"] == "SB-CFM"
    r = peers.in_worker(peers.torchcfm_job, case["method"], case["seed"], case["steps"], batch=BATCH,
                        source=data["x0_train"], target=data["x1_train"], x_eval=data["x0_test"], lr=LR,
                        weight_decay=WEIGHT_DECAY, sigma=1.0 if sb else SIGMA, ot_method=case["torch_sb_ot"],
                        euler_steps=EULER_STEPS, rtol=RTOL)
    return {k: r[k] for k in ("x_euler", "x_dopri5", "nfe", "train_s", "sample_s")} | {"compile_s": None}


RUN = {"ours": ours, "torchcfm": torchcfm}


def claim(ctx, case: dict) -> bool:
    """For ``--skip-done``: False when the cell has a JSON line or another process claimed it.

    Several processes (one per core, ``--core``) can then share one cell list: each takes the
    next cell nobody has done or started (a claim is a file created with ``O_EXCL``). With
    ``--redo-before`` (an ISO time), rows written before it do not count as done.
    """
    library, redo_before = LIBS[case["lib"]], ctx.args.redo_before
    key = (case["task"], case["method"], library, case["seed"], case["steps"])
    for r in h.read_jsonl(ctx.file("jsonl")):
        if (r["task"], r["method"], r["library"], r["seed"], r["steps"]) == key \
                and (redo_before is None or r["time"] >= redo_before):
            return False
    CLAIMS.mkdir(parents=True, exist_ok=True)
    name = f"{case['steps']}_{library}_{case['task']}_{case['method']}_{case['seed']}".replace("/", "_").replace(">", "")
    try:
        os.close(os.open(CLAIMS / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    ap.add_argument("--torch-seeds", type=int, nargs="*", default=None, help="seeds for torchcfm (default: --seeds)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--torch-sb-ot", default="exact", choices=["exact", "sinkhorn"],
                    help="torchcfm SB-CFM coupling (its default: exact)")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip cells already in the JSON lines or claimed by a parallel run")
    ap.add_argument("--redo-before", default=None,
                    help="with --skip-done: rows older than this ISO time (UTC) count as not done")


def cases(ctx):
    a = ctx.args
    torch_seeds = a.seeds if a.torch_seeds is None else a.torch_seeds
    libs = list(a.libs)
    # checked in the worker the torchcfm cells run in: torch stays out of this (the JAX) process
    if "torchcfm" in libs and (missing := peers.in_worker(peers.missing, "torch", "torchcfm", "torchdiffeq")):
        peers.skipped("torchcfm side", missing)
        libs.remove("torchcfm")
    for task in a.tasks:
        for seed in sorted(set(a.seeds) | set(torch_seeds)):
            for method in a.methods:
                if not cell_allowed(task, method):
                    continue
                for lib in libs:
                    case = {"lib": lib, "task": task, "method": method, "seed": seed, "steps": a.steps,
                            "torch_sb_ot": a.torch_sb_ot}
                    if seed in (a.seeds if lib == "ours" else torch_seeds) and (not a.skip_done or claim(ctx, case)):
                        yield case


def run_case(ctx, case) -> dict:
    data = datasets(case["task"], case["seed"])
    r = RUN[case["lib"]](case, data)
    sb = case["method"] == "SB-CFM"
    coupling = ("sinkhorn eps=2.0" if case["lib"] == "ours" else f"{case['torch_sb_ot']} (torchcfm)") if sb else None
    return {"suite": NAME, "task": case["task"], "method": case["method"], "library": LIBS[case["lib"]],
            "seed": case["seed"], "steps": case["steps"], "batch": BATCH,
            "w2": float(fm.metrics.wasserstein(r.pop("x_euler"), data["x1_test"])),
            "w2_dopri5": float(fm.metrics.wasserstein(r.pop("x_dopri5"), data["x1_test"])),
            "sb_coupling": coupling, "threads": ctx.threads, "command": ctx.command.strip("`"),
            "time": h.now(), "load_avg_1m": h.load_avg(), **r}


def history(ctx, rows):
    """Every cell's newest row at ``--steps``."""
    return h.latest((r for r in rows if r.get("suite") == NAME and r["steps"] == ctx.args.steps),
                    lambda r: (r["task"], r["method"], r["library"], r["seed"]))


def floor(task: str, seed: int) -> float:
    """W2 between 1,000 train targets and the 1,000 test targets: sampling noise alone."""
    d = datasets(task, seed)
    return float(fm.metrics.wasserstein(d["x1_train"][:N_TEST], d["x1_test"]))


def table_rows(ctx, rows):
    out = []
    for task in TASKS:
        for method in METHODS:
            by = {lib: [r for r in rows if (r["task"], r["method"], r["library"]) == (task, method, lib)]
                  for lib in LIBS.values()}
            if cell_allowed(task, method) and any(by.values()):
                out.append({"task": task, "method": method, "ours": by["flowjax_fm"], "torchcfm": by["torchcfm"],
                            "seeds": sorted({r["seed"] for rs in by.values() for r in rs})})
    return out


def _paired(t) -> str:
    """Mean +- sd over the seeds both libraries ran of W2(ours) - W2(torchcfm) (same data per seed)."""
    theirs = {r["seed"]: r["w2"] for r in t["torchcfm"]}
    return h.mean_sd((r["w2"] - theirs[r["seed"]] for r in t["ours"] if r["seed"] in theirs), count=True)


COLUMNS = [
    ("task", lambda t: t["task"]), ("method", lambda t: t["method"]),
    ("W2 ours", lambda t: h.mean_sd((r["w2"] for r in t["ours"]), count=True)),
    ("W2 torchcfm", lambda t: h.mean_sd((r["w2"] for r in t["torchcfm"]), count=True)),
    ("W2 dopri5 ours", lambda t: h.mean_sd((r["w2_dopri5"] for r in t["ours"]), count=True)),
    ("W2 dopri5 torchcfm", lambda t: h.mean_sd((r["w2_dopri5"] for r in t["torchcfm"]), count=True)),
    ("NFE ours", lambda t: h.mean_sd((r["nfe"] for r in t["ours"]), ".0f", count=True)),
    ("NFE torchcfm", lambda t: h.mean_sd((r["nfe"] for r in t["torchcfm"]), ".0f", count=True)),
    ("train s ours", lambda t: h.mean_sd((r["train_s"] for r in t["ours"]), ".1f", count=True)),
    ("train s torchcfm", lambda t: h.mean_sd((r["train_s"] for r in t["torchcfm"]), ".1f", count=True)),
    ("W2 ours - torchcfm (paired)", _paired),
    ("W2 floor", lambda t: h.mean_sd((floor(t["task"], s) for s in t["seeds"]), count=True)),
]


def preamble(ctx, rows) -> str:
    loads = [r["load_avg_1m"] for r in rows if r.get("load_avg_1m") is not None]
    compiles = [r["compile_s"] for r in rows if r.get("compile_s") is not None]
    env, v = rows[-1], rows[-1]["versions"]
    sb = sorted({r["sb_coupling"] for r in rows if r["library"] == "torchcfm" and r["sb_coupling"]}) or "n/a"
    return (
        f"Tong et al. (2023) 2D setup: MLP 3x64 SELU, AdamW lr 1e-3 (weight decay 1e-5), batch 512, "
        f"**{ctx.args.steps} training steps** (their harness trains much longer), sigma 0.1; 10,000 train / 1,000 "
        "test points drawn once per (task, seed) and fed as the same numpy arrays to both libraries; "
        "W2: exact, 1,000 generated (Euler, 100 steps, from the 1,000 test source points) vs the "
        "1,000 test target points; NFE and the dopri5 W2: dopri5 at rtol = atol = 1e-4 (ours diffrax, "
        "torchcfm torchdiffeq). Cells: mean +- sd (number of seeds). SB-CFM: ours uses the entropic "
        "coupling the method prescribes (`SinkhornCoupling(epsilon=2.0)`, i.e. 2 sigma^2 with sigma = 1); "
        "torchcfm's `SchrodingerBridgeConditionalFlowMatcher` defaults to **exact** OT, so its "
        f"regulariser is never used (coupling run here: {sb}). "
        "FM (Lipman) ignores its source, so no moons -> 8gaussians cell. Paired: per seed, ours minus "
        "torchcfm on the same arrays (the test set moves W2 from seed to seed far more than the library "
        "does, so this is the sharper comparison; negative = ours closer). W2 floor: W2 between 1,000 "
        "train targets and the 1,000 test targets of the same seeds, the sampling noise a perfect model "
        "still shows. Train time: wall seconds for all steps, ours including XLA compilation "
        f"(median compile {np.median(compiles) if compiles else float('nan'):.1f} s per cell). "
        f"Machine: {env['device_kind']} ({env['machine']}, {env['cpu_count']} cores shared with other jobs), "
        f"{env['threads']}, load average {min(loads) if loads else float('nan'):.1f}-"
        f"{max(loads) if loads else float('nan'):.1f}; jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, "
        f"diffrax {v['diffrax']}, ott {v['ott']}, torch {v['torch']}, torchcfm {v['torchcfm']}, "
        f"POT {v['ot']}, torchdiffeq {v['torchdiffeq']}; last row {env['time']}. Command(s): "
        + "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in rows)) + "."
    )


def plot(ctx, rows) -> None:
    """Bars of W2 (mean, with the seed sd as error bars), ours beside torchcfm, a panel per task run."""
    panels = {task: {m: {lib: [r["w2"] for r in rows if (r["task"], r["method"], r["library"]) == (task, m, lib)]
                         for lib in LIBS.values()} for m in METHODS if cell_allowed(task, m)}
              for task in TASKS if any(r["task"] == task for r in rows)}
    h.write_bars(ctx.file("png"), panels, ylabel="W2 (Euler, 100 steps)",
                 title=f"Tong et al. (2023) 2D table, {ctx.args.steps} steps, mean +- sd over seeds")


SUITE = h.Suite(
    name=NAME, title="Tong et al. (2023) 2D table: flowjax_fm and torchcfm, same harness, same data", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"seeds": [42], "tasks": [next(iter(TASKS))], "steps": 300}, pin=True, peak=False,
    history=history, table_rows=table_rows, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
