"""The 2D table of Tong et al. (2023): flowjax_fm and torchcfm through one harness, same arrays.

Run (one core, one thread for every library):

    .venv/bin/python benchmarks/bench_paper2d.py [--quick] [--steps 2000] [--seeds 42 43 44 45 46] [--skip-done]
        [--tasks ...] [--methods ...] [--libs ours torchcfm] [--torch-seeds 42]
    .venv/bin/python benchmarks/bench_paper2d.py --render --steps 3000   # table from the JSON lines

Their research harness: MLP 3x64 SELU, AdamW lr 1e-3 (weight decay 1e-5), batch 512, sigma 0.1;
10,000 train / 1,000 test points, drawn once per (task, seed) and fed as the same numpy arrays to
both libraries (training draws batches from the train arrays, with replacement); generation by
Euler with 100 steps from the 1,000 test source points; exact W2 (``fm.metrics.wasserstein``)
against the 1,000 test target points. NFE: an adaptive dopri5 (rtol = atol = 1e-4) from the same
points (ours: diffrax; torchcfm: torchdiffeq, counted by wrapping the network).

Methods (ours / torchcfm):

- I-CFM: ``GaussianPath(0.1)`` + ``IndependentCoupling`` / ``ConditionalFlowMatcher(0.1)``;
- OT-CFM: ``GaussianPath(0.1)`` + ``ExactOTCoupling`` / ``ExactOptimalTransportConditionalFlowMatcher(0.1)``;
- FM (Lipman): ``CondOTPath(sigma_min=0.1)``, N(0, I) source, independent /
  ``TargetConditionalFlowMatcher(0.1)`` (it ignores its source, so no FM on moons -> 8gaussians);
- SB-CFM: ``BrownianBridgePath(1.0)`` + ``SinkhornCoupling(epsilon=2.0)`` (the entropic coupling
  of regularisation 2 sigma^2 the method prescribes) / ``SchrodingerBridgeConditionalFlowMatcher(1.0)``,
  whose default coupling is *exact* OT (its ``reg = 2 sigma^2`` is never used; ``--torch-sb-ot
  sinkhorn`` runs its entropic variant instead).

Every cell appends one JSON line to ``benchmarks/results/paper2d.jsonl`` as soon as it is done, so
a partial run is useful; ``benchmarks/results/paper2d.md`` is re-rendered from the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torchcfm  # noqa: E402
from _common import RESULTS, environment, pin_one_core, pin_threads, write_jsonl, write_table  # noqa: E402

THREADS = pin_one_core()
# Let XLA build its CPU client while every core is allowed, then pin. Started with an affinity
# of one core, its host-callback thread deadlocks (reproduced: eager ``fm.metrics.wasserstein``
# in a loop hangs within a minute; the callback thread waits in ``_host_c``'s ``np.asarray``,
# the main thread in ``_assignment``), which hung three runs of this script.
_ALL_CORES = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
if _ALL_CORES is not None:
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

import jax  # noqa: E402

jax.devices()
THREADS = pin_one_core()
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

TASKS = {
    "N(0,I)->8gaussians": ("gaussian", "8gaussians"),
    "N(0,I)->moons": ("gaussian", "moons"),
    "N(0,I)->scurve": ("gaussian", "scurve"),
    "moons->8gaussians": ("moons", "8gaussians"),
}
METHODS = ("I-CFM", "OT-CFM", "FM", "SB-CFM")
N_TRAIN, N_TEST, BATCH, LR, WEIGHT_DECAY, SIGMA = 10_000, 1_000, 512, 1e-3, 1e-5, 0.1
EULER_STEPS, RTOL = 100, 1e-4
NAME = "paper2d"


def cell_allowed(task: str, method: str) -> bool:
    """FM (Lipman) draws its own N(0, I) source, so it has no moons -> 8gaussians cell."""
    return not (method == "FM" and TASKS[task][0] != "gaussian")


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


def ours_spec(method: str):
    return {
        "I-CFM": (fm.paths.GaussianPath(SIGMA), fm.couplings.IndependentCoupling()),
        "OT-CFM": (fm.paths.GaussianPath(SIGMA), fm.couplings.ExactOTCoupling()),
        "FM": (fm.paths.CondOTPath(sigma_min=SIGMA), fm.couplings.IndependentCoupling()),
        "SB-CFM": (fm.paths.BrownianBridgePath(1.0), fm.couplings.SinkhornCoupling(epsilon=2.0)),
    }[method]


def ours(method: str, seed: int, steps: int, data: dict, **_) -> dict:
    path, coupling = ours_spec(method)
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(seed))
    opt = fm.training.make_optimizer(LR, weight_decay=WEIGHT_DECAY)
    step = fm.training.make_train_step(model, optimizer=opt, path=path, coupling=coupling)
    chunk = min(500, steps)
    stamps = [time.perf_counter()]
    state, _ = fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(seed),
        data["x0_train"], data["x1_train"], num_steps=steps, batch_size=BATCH, progress=False,
        chunk_size=chunk,
        on_chunk=lambda s, m: (jax.block_until_ready(s), stamps.append(time.perf_counter())),
    )
    per_chunk = np.diff(stamps)
    train_s = float(per_chunk.sum())
    # compile time apart: first chunk minus a steady one (only when the chunks are equal)
    full = per_chunk[1:] if steps % chunk == 0 else per_chunk[1:-1]
    compile_s = float(per_chunk[0] - np.median(full)) if len(full) else None
    field = fm.training.make_vector_field(model, state.params)
    t = time.perf_counter()
    euler = fm.sampling.sample(field, data["x0_test"], solver="euler", num_steps=EULER_STEPS)
    adaptive = fm.sampling.sample(field, data["x0_test"], solver="dopri5", rtol=RTOL, atol=RTOL)
    x_euler, x_dopri = np.asarray(euler.x), np.asarray(adaptive.x)
    sample_s = time.perf_counter() - t
    return {"x_euler": x_euler, "x_dopri5": x_dopri, "nfe": int(adaptive.nfe),
            "train_s": train_s, "compile_s": compile_s, "sample_s": sample_s}


def _torch():
    """Lazy import of the torch side; ``None`` (and a message) when it is missing."""
    try:
        import torch
        import torchdiffeq
        from torchcfm import conditional_flow_matching as cfm
        from torchcfm.models.models import MLP
    except ImportError as exc:
        print(f"torchcfm side skipped: not installed ({exc})", flush=True)
        return None
    torch.set_num_threads(1)
    return torch, torchdiffeq, cfm, MLP


_WORKER = None


def torchcfm_run(method: str, seed: int, steps: int, data: dict, torch_sb_ot: str = "exact") -> dict | None:
    """Run the torchcfm cell in a separate (spawned, equally pinned) worker process.

    Keeps torch's and POT's thread runtimes (each with its own libgomp) out of the JAX process.
    """
    global _WORKER
    if _WORKER is None:
        import multiprocessing

        _WORKER = multiprocessing.get_context("spawn").Pool(1)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return _WORKER.apply(_torchcfm_cell, (method, seed, steps, data, torch_sb_ot, cores))


def _torchcfm_cell(method: str, seed: int, steps: int, data: dict, torch_sb_ot: str,
                   cores=None) -> dict | None:
    if cores is not None:  # the same core as the parent
        os.sched_setaffinity(0, cores)
    mods = _torch()
    if mods is None:
        return None
    torch, torchdiffeq, cfm, MLP = mods
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - torchcfm's OT sampler draws pairs from numpy's global RNG
    matcher = {
        "I-CFM": lambda: cfm.ConditionalFlowMatcher(sigma=SIGMA),
        "OT-CFM": lambda: cfm.ExactOptimalTransportConditionalFlowMatcher(sigma=SIGMA),
        "FM": lambda: cfm.TargetConditionalFlowMatcher(sigma=SIGMA),
        "SB-CFM": lambda: cfm.SchrodingerBridgeConditionalFlowMatcher(sigma=1.0, ot_method=torch_sb_ot),
    }[method]()
    model = MLP(dim=2, time_varying=True, w=64)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    x0_train, x1_train = torch.tensor(data["x0_train"]), torch.tensor(data["x1_train"])
    train_s = _torchcfm.train(torch, model, opt, matcher, lambda: (
        x0_train[torch.randint(0, N_TRAIN, (BATCH,))], x1_train[torch.randint(0, N_TRAIN, (BATCH,))]), steps)
    t0 = time.perf_counter()
    x_test = torch.tensor(data["x0_test"])
    with torch.no_grad():
        x, dt = x_test.clone(), 1.0 / EULER_STEPS
        for i in range(EULER_STEPS):
            x = x + dt * model(torch.cat([x, torch.full((x.shape[0], 1), i * dt)], dim=-1))
        x_euler = x.numpy()
    x_dopri, nfe = _torchcfm.dopri5(torch, torchdiffeq, model, x_test, RTOL)
    sample_s = time.perf_counter() - t0
    return {"x_euler": x_euler, "x_dopri5": x_dopri, "nfe": nfe, "train_s": train_s,
            "compile_s": None, "sample_s": sample_s}


LIBS = {"ours": ("flowjax_fm", ours), "torchcfm": ("torchcfm", torchcfm_run)}


CLAIMS = Path(os.environ.get("TMPDIR", "/tmp")) / "flowjax_fm_paper2d_claims"


def claim(lib: str, task: str, method: str, seed: int, steps: int, redo_before: str | None = None) -> bool:
    """For ``--skip-done``: False when the cell has a JSON line or another process claimed it.

    Several processes (one per core) can then share one cell list: each takes the next cell
    nobody has done or started (a claim is a file created with ``O_EXCL``). With ``redo_before``
    (an ISO time), rows written before it do not count as done: a rerun of finished cells.
    """
    library = LIBS[lib][0]
    path = RESULTS / f"{NAME}.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if (r["task"], r["method"], r["library"], r["seed"], r["steps"]) == (task, method, library, seed, steps) \
                    and (redo_before is None or r["time"] >= redo_before):
                return False
    CLAIMS.mkdir(parents=True, exist_ok=True)
    name = f"{steps}_{library}_{task}_{method}_{seed}".replace("/", "_").replace(">", "")
    try:
        os.close(os.open(CLAIMS / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_cell(lib: str, task: str, method: str, seed: int, steps: int, data: dict,
             torch_sb_ot: str, command: str) -> dict | None:
    library, fn = LIBS[lib]
    r = fn(method, seed, steps, data, torch_sb_ot=torch_sb_ot)
    if r is None:
        return None
    w2 = float(fm.metrics.wasserstein(r.pop("x_euler"), data["x1_test"]))
    w2_dopri = float(fm.metrics.wasserstein(r.pop("x_dopri5"), data["x1_test"]))
    coupling = ("sinkhorn eps=2.0" if lib == "ours" else f"{torch_sb_ot} (torchcfm)") if method == "SB-CFM" else None
    row = {"suite": NAME, "task": task, "method": method, "library": library, "seed": seed,
           "steps": steps, "batch": BATCH, "w2": w2, "w2_dopri5": w2_dopri, "sb_coupling": coupling,
           "threads": THREADS, "command": command, **r, **environment()}
    write_jsonl(NAME, [row])
    print(f"{library:10s} {task:20s} {method:7s} seed {seed}: W2 {w2:.3f} (dopri5 {w2_dopri:.3f}, "
          f"NFE {r['nfe']}), train {r['train_s']:.1f} s", flush=True)
    return row


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    v = np.asarray(values)
    sd = f" +- {v.std(ddof=1):.{digits}f}" if len(v) > 1 else ""
    return f"{v.mean():.{digits}f}{sd} ({len(v)})"


def _paired(ours_rows: list[dict], torch_rows: list[dict]) -> str:
    """Mean +- sd over the seeds both libraries ran of W2(ours) - W2(torchcfm) (same data per seed)."""
    theirs = {r["seed"]: r["w2"] for r in torch_rows}
    return _fmt([r["w2"] - theirs[r["seed"]] for r in ours_rows if r["seed"] in theirs])


def render(steps: int) -> Path:
    """Re-render the markdown table from every JSON line of this suite at ``steps`` steps."""
    path = RESULTS / f"{NAME}.jsonl"
    latest: dict[tuple, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("suite") == NAME and row["steps"] == steps:
                latest[(row["task"], row["method"], row["library"], row["seed"])] = row
    rows = list(latest.values())
    floors = {}  # W2 between 1,000 train targets and the 1,000 test targets: sampling noise alone
    for task, seed in sorted({(r["task"], r["seed"]) for r in rows}):
        d = datasets(task, seed)
        floors[task, seed] = float(fm.metrics.wasserstein(d["x1_train"][:N_TEST], d["x1_test"]))
    table = []
    for task in TASKS:
        for method in METHODS:
            if not cell_allowed(task, method):
                continue
            by = {lib: [r for r in rows if r["task"] == task and r["method"] == method
                        and r["library"] == lib] for lib in ("flowjax_fm", "torchcfm")}
            if not any(by.values()):
                continue
            table.append([
                task, method,
                _fmt([r["w2"] for r in by["flowjax_fm"]]), _fmt([r["w2"] for r in by["torchcfm"]]),
                _fmt([r["w2_dopri5"] for r in by["flowjax_fm"]]),
                _fmt([r["w2_dopri5"] for r in by["torchcfm"]]),
                _fmt([r["nfe"] for r in by["flowjax_fm"]], 0), _fmt([r["nfe"] for r in by["torchcfm"]], 0),
                _fmt([r["train_s"] for r in by["flowjax_fm"]], 1),
                _fmt([r["train_s"] for r in by["torchcfm"]], 1),
                _paired(by["flowjax_fm"], by["torchcfm"]),
                _fmt([floors[task, s] for s in sorted({r["seed"] for rs in by.values() for r in rs})]),
            ])
    loads = [r["load_avg_1m"] for r in rows if r.get("load_avg_1m") is not None]
    compiles = [r["compile_s"] for r in rows if r.get("compile_s") is not None]
    env = rows[-1] if rows else environment()
    v = env["versions"]
    preamble = (
        f"Tong et al. (2023) 2D setup: MLP 3x64 SELU, AdamW lr 1e-3 (weight decay 1e-5), batch 512, "
        f"**{steps} training steps** (their harness trains much longer), sigma 0.1; 10,000 train / 1,000 "
        "test points drawn once per (task, seed) and fed as the same numpy arrays to both libraries; "
        "W2: exact, 1,000 generated (Euler, 100 steps, from the 1,000 test source points) vs the "
        "1,000 test target points; NFE and the dopri5 W2: dopri5 at rtol = atol = 1e-4 (ours diffrax, "
        "torchcfm torchdiffeq). Cells: mean +- sd (number of seeds). SB-CFM: ours uses the entropic "
        "coupling the method prescribes (`SinkhornCoupling(epsilon=2.0)`, i.e. 2 sigma^2 with sigma = 1); "
        "torchcfm's `SchrodingerBridgeConditionalFlowMatcher` defaults to **exact** OT, so its "
        f"regulariser is never used (coupling run here: "
        f"{sorted({r['sb_coupling'] for r in rows if r['library'] == 'torchcfm' and r['sb_coupling']}) or 'n/a'}). "
        "FM (Lipman) ignores its source, so no moons -> 8gaussians cell. Paired: per seed, ours minus "
        "torchcfm on the same arrays (the test set moves W2 from seed to seed far more than the library "
        "does, so this is the sharper comparison; negative = ours closer). W2 floor: W2 between 1,000 "
        "train targets and the 1,000 test targets of the same seeds, the sampling noise a perfect model "
        "still shows. Train time: wall seconds for "
        "all steps, ours including XLA compilation "
        f"(median compile {np.median(compiles) if compiles else float('nan'):.1f} s per cell). "
        f"Machine: {env['device_kind']} ({env['machine']}, {env['cpu_count']} cores shared with other jobs), "
        f"{env['threads']}, load average {min(loads) if loads else float('nan'):.1f}-"
        f"{max(loads) if loads else float('nan'):.1f}; jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, "
        f"diffrax {v['diffrax']}, ott {v['ott']}, torch {v['torch']}, torchcfm {v['torchcfm']}, "
        f"POT {v['ot']}, torchdiffeq {v['torchdiffeq']}; last row {env['time']}. Command(s): "
        + "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in rows)) + "."
    )
    plot(rows, steps)
    return write_table(
        NAME, "Tong et al. (2023) 2D table: flowjax_fm and torchcfm, same harness, same data",
        preamble,
        ["task", "method", "W2 ours", "W2 torchcfm", "W2 dopri5 ours", "W2 dopri5 torchcfm",
         "NFE ours", "NFE torchcfm", "train s ours", "train s torchcfm", "W2 ours - torchcfm (paired)",
         "W2 floor"],
        table,
    )


def plot(rows: list[dict], steps: int) -> Path | None:
    """Bars of W2 (mean, with the seed sd as error bars), ours beside torchcfm, a panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6), squeeze=False)
    for ax, task in zip(axes[0], TASKS, strict=True):
        methods = [m for m in METHODS if cell_allowed(task, m)]
        for k, (library, colour) in enumerate((("flowjax_fm", "C0"), ("torchcfm", "C1"))):
            vals = [[r["w2"] for r in rows if (r["task"], r["method"], r["library"]) == (task, m, library)]
                    for m in methods]
            xs = [i + (k - 0.5) * 0.38 for i in range(len(methods))]
            means = [np.mean(v) if v else np.nan for v in vals]
            sds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
            ax.bar(xs, means, width=0.36, yerr=sds, color=colour, label=library, capsize=3)
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_ylabel("W2 (Euler, 100 steps)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Tong et al. (2023) 2D table, {steps} steps, mean +- sd over seeds", fontsize=10)
    fig.tight_layout()
    path = RESULTS / f"{NAME}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    ap.add_argument("--torch-seeds", type=int, nargs="*", default=None,
                    help="seeds for torchcfm (default: --seeds)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=list(LIBS))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--torch-sb-ot", default="exact", choices=["exact", "sinkhorn"],
                    help="torchcfm SB-CFM coupling (its default: exact)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 task, 300 steps")
    ap.add_argument("--render", action="store_true", help="only re-render the table at --steps")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip cells already in the JSON lines or claimed by a parallel run")
    ap.add_argument("--redo-before", default=None,
                    help="with --skip-done: rows older than this ISO time (UTC) count as not done")
    ap.add_argument("--core", type=int, default=None, help="pin to this core (default: the first)")
    args = ap.parse_args()
    global THREADS
    if args.core is not None:
        THREADS = pin_threads(args.core)
    if args.quick:
        args.seeds, args.tasks, args.steps = args.seeds[:1], args.tasks[:1], 300
    torch_seeds = args.seeds if args.torch_seeds is None else args.torch_seeds
    command = ".venv/bin/python benchmarks/bench_paper2d.py " + " ".join(sys.argv[1:])
    if not args.render:
        for task in args.tasks:
            for seed in sorted(set(args.seeds) | set(torch_seeds)):
                data = datasets(task, seed)
                for method in args.methods:
                    if not cell_allowed(task, method):
                        continue
                    for lib in args.libs:
                        if seed not in (args.seeds if lib == "ours" else torch_seeds):
                            continue
                        if not args.skip_done or claim(lib, task, method, seed, args.steps, args.redo_before):
                            run_cell(lib, task, method, seed, args.steps, data, args.torch_sb_ot, command)
    print(render(args.steps))


if __name__ == "__main__":
    main()
