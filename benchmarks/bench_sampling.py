"""Sampling speed: fm.sampling.sample (diffrax, jitted) against torchdiffeq, same network weights.

A small time-conditioned MLP vector field (fixed random weights, SELU), 2D (width 64) and 64D
(width 256), batch 2,000, integrated from t = 0 to 1, both libraries on the same solver menu:

* equal NFE: fixed-step rk4 (the 3/8 rule on both sides: torchdiffeq's ``rk4``, our
  ``rk4_38``) and euler at 8 / 32 / 100 steps (and dopri5 at rtol = atol = 1e-3 ... 1e-6, each
  side's own step-size control, both choosing the first step by Hairer's rule);
* equal accuracy: for each target error (1e-2, 1e-3, 1e-4 max abs against a float64 reference)
  and each library, the fewest rk4 (3/8) steps and the loosest dopri5 tolerance reaching it
  (one untimed solve per point of a grid of steps / tolerances), those timed, the faster one
  shown.

The reference is a float64 solve (dopri5 at rtol = atol = 1e-10 under ``jax.enable_x64``; 2.6e-7
max abs from tsit5 at 1e-12 in 2D, so good to well below the smallest target).

Both sides get one core: ``_common.pin_one_core`` and then every thread of the process pinned to
that core (:func:`pin_every_thread`); torch.set_num_threads(1), single-threaded XLA.
Times are medians of repeats after a warm-up call (JAX compile time reported apart), with
``block_until_ready``; the calls compared take turns, so that a busy neighbour slows all alike
(checked: taking turns shows no systematic cost to either side against timing each in a block).
How close each solve runs to the machine's limit: FLOPs per solve = NFE x
XLA's FLOP count of one network evaluation on the batch (XLA's cost analysis counts a while-loop
body once, so the solve's own count is not usable; the solver's few vector updates per stage are
left out), over the median time, against a 2048^2 float32 matmul measured in the same run. The
torch side does the same network work per evaluation, so the same count is used for it.

Writes ``sampling.jsonl`` (appended), ``sampling.md`` and ``sampling.png`` (error against time)
under ``benchmarks/results`` (``sampling_quick.*`` with ``--quick``; ``FLOWJAX_FM_BENCH_RESULTS``
redirects). Without torch / torchdiffeq it says so and times ours alone.

Usage::

    python benchmarks/bench_sampling.py           # full run
    python benchmarks/bench_sampling.py --quick   # smoke run: 2D, batch 500, few configurations
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    pin_every_thread,
    pin_one_core,
    write_jsonl,
    write_plot,
    write_table,
)

PINNED = pin_one_core()  # before jax / torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import flowjax_fm as fm  # noqa: E402

try:
    import torch
    import torchdiffeq

    TORCH_ERROR = None
except ImportError as err:  # reported in the output, not hidden
    torch = torchdiffeq = None
    TORCH_ERROR = f"{type(err).__name__}: {err}"

TARGETS = (1e-2, 1e-3, 1e-4)


def make_weights(dim: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of an MLP [x, t] -> width -> width -> dim (float32, LeCun-normal-ish)."""
    rng = np.random.default_rng(seed)
    sizes = [dim + 1, width, width, dim]
    return [
        (
            (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            (0.1 * rng.standard_normal(b)).astype(np.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def jax_field(weights):
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]

    def v(x, t):
        h = jnp.concatenate([x, t[:, None]], axis=1)
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.selu(h)
        return h

    return v


def torch_field(weights, dtype):
    params = [(torch.tensor(w, dtype=dtype), torch.tensor(b, dtype=dtype)) for w, b in weights]

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            h = torch.cat([x, t.expand(x.shape[0], 1).to(x.dtype)], dim=1)
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = torch.nn.functional.selu(h)
            return h

    return Field()


def reference(weights, x0: np.ndarray) -> np.ndarray:
    """x(1) in float64: our dopri5 at rtol = atol = 1e-10 under ``jax.enable_x64``.

    Checked once against tsit5 at 1e-12 (2D): 2.6e-7 max abs apart, far below the targets.
    """
    with jax.enable_x64(True):
        v = jax_field([(w.astype(np.float64), b.astype(np.float64)) for w, b in weights])
        res = fm.sampling.sample(v, jnp.asarray(x0, jnp.float64), solver="dopri5", rtol=1e-10,
                                 atol=1e-10, max_steps=100_000)
        return np.asarray(res.x)

# our solver names -> torchdiffeq's method names (the same tableaus)
TORCH_METHOD = {"rk4_38": "rk4", "euler": "euler", "dopri5": "dopri5"}


class Config(NamedTuple):
    solver: str  # our name (see TORCH_METHOD)
    num_steps: int | None  # None: adaptive
    tol: float | None  # rtol = atol; None for fixed steps


def setting(cfg) -> str:
    return f"{cfg['num_steps']} steps" if cfg["num_steps"] else f"tol {cfg['tol']:g}"


def ours_call(v, x0, cfg: Config):
    tol = cfg.tol or 1e-5  # ignored by fixed-step solves
    run = jax.jit(lambda x: fm.sampling.sample(v, x, solver=cfg.solver, num_steps=cfg.num_steps,
                                               rtol=tol, atol=tol))
    return lambda: jax.block_until_ready(run(x0))


def torch_call(weights, x0, cfg: Config):
    f = torch_field(weights, torch.float32)
    y0 = torch.tensor(x0)
    ts = torch.tensor([0.0, 1.0])
    method = TORCH_METHOD[cfg.solver]
    if cfg.num_steps:
        kwargs = dict(method=method, options={"step_size": 1.0 / cfg.num_steps})
    else:
        kwargs = dict(method=method, rtol=cfg.tol, atol=cfg.tol)

    def call():
        f.nfe = 0
        with torch.no_grad():
            out = torchdiffeq.odeint(f, y0, ts, **kwargs)[-1]
        return out, f.nfe

    return call


class Prepared:
    """One library's solve of one configuration, run once: its NFE, error and first-call time.

    ``call()`` repeats the solve (ours compiled by then).
    """

    def __init__(self, lib: str, cfg: Config, v, weights, x0: np.ndarray, ref: np.ndarray):
        if lib == "ours":
            self.call = ours_call(v, jnp.asarray(x0), cfg)
            start = time.perf_counter()
            res = self.call()
            self.first_s = time.perf_counter() - start
            x, self.nfe = np.asarray(res.x), int(res.nfe)
        else:
            self.call = torch_call(weights, x0, cfg)
            start = time.perf_counter()
            out, self.nfe = self.call()
            self.first_s = time.perf_counter() - start
            x = out.numpy()
        self.err = float(np.abs(x - ref).max())


def time_interleaved(calls: dict, repeats: int) -> dict:
    """Median seconds of each call after one warm-up call; the calls take turns, so that all
    see the same load."""
    for call in calls.values():
        call()
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, call in calls.items():
            start = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(ts)) for k, ts in times.items()}


def first_reaching(grid: list[Config], prepared: dict, lib: str, target: float) -> Config | None:
    """The first configuration of ``grid`` (cheapest first) whose error is at most ``target``."""
    for cfg in grid:
        p = prepared.get((lib, cfg))
        if p is not None and p.err <= target:
            return cfg
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2D, batch 500, few configurations")
    parser.add_argument("--batch", type=int, default=None, help="default 2000 (--quick: 500)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    args.batch = args.batch or (500 if args.quick else 2000)
    if args.quick:
        dims, nfe_steps, tols = [(2, 64)], [8], [1e-3]
        rk4_grid, tol_grid = [4, 8, 16, 32], [1e-3, 1e-5, 1e-6]
    else:
        dims, nfe_steps, tols = [(2, 64), (64, 256)], [8, 32, 100], [1e-3, 1e-4, 1e-5, 1e-6]
        rk4_grid = [3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48]
        tol_grid = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7]
    grids = {"rk4_38": [Config("rk4_38", n, None) for n in rk4_grid],
             "dopri5": [Config("dopri5", None, t) for t in tol_grid]}
    have_torch = torch is not None
    if have_torch:
        torch.set_num_threads(1)
    else:
        print(f"torch / torchdiffeq missing ({TORCH_ERROR}): timing ours only", file=sys.stderr)
    global PINNED
    PINNED = pin_every_thread() or PINNED
    env = environment()
    peak = matmul_peak_flops()
    # A 512^2 product fits in cache and runs ~2-3x faster here than the 2048^2 reference: recorded
    # for context, since a small-matrix workload can exceed "100%" of the 2048^2 limit.
    peak_small = matmul_peak_flops(512, repeats=15)
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s (512^2: {peak_small / 1e9:.1f}); {PINNED}",
          flush=True)
    libs = ["ours", "torch"] if have_torch else ["ours"]

    rows, candidates, probes, summary = [], [], [], []
    for dim, width in dims:
        pin_every_thread()  # threads started since (compilation) too
        weights = make_weights(dim, width)
        x0 = np.asarray(jax.random.normal(jax.random.key(0), (args.batch, dim)), np.float32)
        v = jax_field(weights)
        flops_eval = compiled_flops(v, jnp.asarray(x0), jnp.zeros(args.batch, jnp.float32))
        t = time.perf_counter()
        ref = reference(weights, x0)
        print(f"dim {dim}: float64 reference in {time.perf_counter() - t:.1f} s", flush=True)
        prepared: dict = {}

        def prepare(lib, cfg, *, weights=weights, x0=x0, v=v, ref=ref, prepared=prepared):
            if (lib, cfg) not in prepared:
                try:
                    prepared[(lib, cfg)] = Prepared(lib, cfg, v, weights, x0, ref)
                except Exception as exc:  # noqa: BLE001 - a failed solve (step underflow) is recorded
                    print(f"{lib} {cfg} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                    prepared[(lib, cfg)] = None
            return prepared[(lib, cfg)]

        def base(cfg, view, *, dim=dim, width=width, flops_eval=flops_eval):
            return dict(suite="sampling", view=view, dim=dim, width=width, batch=args.batch,
                        solver=cfg.solver, num_steps=cfg.num_steps, tol=cfg.tol, rtol=cfg.tol,
                        atol=cfg.tol, repeats=repeats, quick=args.quick, pinned=PINNED,
                        flops_per_eval=flops_eval, matmul_peak_flops=peak, matmul512_flops=peak_small)

        def fields(lib, p, seconds, *, flops_eval=flops_eval):
            flops = None if flops_eval is None else p.nfe * flops_eval
            lim = limit_fields(flops, seconds, peak)
            return {f"{lib}_s": seconds, f"{lib}_nfe": p.nfe, f"{lib}_err": p.err, f"{lib}_flops": flops,
                    **{f"{lib}_{k}": x for k, x in lim.items()}}

        # 1. equal NFE (fixed steps), and dopri5 at each tolerance: both sides timed in turn
        cases = [(Config(s, n, None), "equal_nfe") for s in ("rk4_38", "euler") for n in nfe_steps]
        cases += [(Config("dopri5", None, tol), "tolerance") for tol in tols]
        for cfg, view in cases:
            ps = {lib: prepare(lib, cfg) for lib in libs}
            med = time_interleaved({lib: p.call for lib, p in ps.items()}, repeats)
            row = base(cfg, view)
            for lib, p in ps.items():
                row.update(fields(lib, p, med[lib]))
            row["ours_compile_s"] = max(ps["ours"].first_s - med["ours"], 0.0)
            if have_torch:
                row["speedup"] = row["torch_s"] / row["ours_s"]
            rows.append(row)
            print({k: row[k] for k in row if k in ("dim", "solver", "num_steps", "tol", "speedup")
                   or k.endswith(("_s", "_err", "_nfe", "of_peak"))}, flush=True)

        # 2. equal accuracy: the error of each grid point (one untimed solve each, cheapest first,
        # stopping once the smallest target is met); then the cheapest grid point of each solver
        # reaching each target is timed, all of them taking turns
        for lib in libs:
            for grid in grids.values():
                for cfg in grid:
                    p = prepare(lib, cfg)
                    if p is not None:
                        probes.append({**base(cfg, "probe"), "library": lib, "nfe": p.nfe, "err": p.err})
                        if p.err <= min(TARGETS):
                            break
        chosen = sorted(
            {(lib, c) for lib in libs for grid in grids.values() for target in TARGETS
             if (c := first_reaching(grid, prepared, lib, target)) is not None},
            key=lambda k: (k[0], k[1].solver, k[1].num_steps or 0, -(k[1].tol or 0)),
        )
        med = time_interleaved({k: prepared[k].call for k in chosen}, repeats)
        timed = {}
        for (lib, cfg), seconds in med.items():
            row = {**base(cfg, "equal_accuracy_candidate"), "library": lib,
                   **fields(lib, prepared[(lib, cfg)], seconds)}
            candidates.append(row)
            timed[(lib, cfg)] = row
        for target in TARGETS:
            best = {}
            for lib in libs:
                ok = [r for (lb, _), r in timed.items() if lb == lib and r[f"{lib}_err"] <= target]
                if ok:
                    r = min(ok, key=lambda r, lib=lib: r[f"{lib}_s"])
                    best[lib] = dict(solver=r["solver"], setting=setting(r), nfe=r[f"{lib}_nfe"],
                                     seconds=r[f"{lib}_s"], err=r[f"{lib}_err"])
            ratio = best["torch"]["seconds"] / best["ours"]["seconds"] if len(best) == 2 else None
            summary.append(dict(dim=dim, target=target, best=best, ratio=ratio))
            print(summary[-1], flush=True)

    suffix = "_quick" if args.quick else ""
    write_jsonl(f"sampling{suffix}", [{**r, **env} for r in rows + candidates + probes]
                + [dict(suite="sampling", view="equal_accuracy", quick=args.quick, **s, **env)
                   for s in summary])
    render(f"sampling{suffix}", rows, candidates, summary, env, (peak, peak_small), repeats, args,
           have_torch, (rk4_grid, tol_grid))
    print(f"wrote {RESULTS}/sampling{suffix}.jsonl, .md and .png", flush=True)


def lim(row, lib):
    return fmt_limit({k: row.get(f"{lib}_{k}") for k in ("achieved_gflops", "of_peak")})


def render(name, rows, candidates, summary, env, peaks, repeats, args, have_torch, grids):
    peak, peak_small = peaks
    v = env["versions"]
    dash = "-"
    table = []
    for r in rows:
        t = have_torch
        table.append([
            r["dim"], r["solver"], setting(r), f"{r['ours_nfe']} / {r['torch_nfe'] if t else dash}",
            f"{1e3 * r['ours_s']:.2f}", f"{1e3 * r['torch_s']:.2f}" if t else dash,
            f"{r['speedup']:.2f}x" if t else dash, f"{r['ours_compile_s']:.2f}",
            f"{r['ours_err']:.1e}", f"{r['torch_err']:.1e}" if t else dash,
            lim(r, "ours"), lim(r, "torch") if t else dash,
        ])
    missing = "" if have_torch else (
        f"**torch / torchdiffeq not installed ({TORCH_ERROR}): ours only.** ")
    cmd = f"`.venv/bin/python benchmarks/bench_sampling.py{' --quick' if args.quick else ''}`"
    preamble = (
        f"{missing}{env['time']}, {env['device_kind']} ({env['machine']}), {PINNED}, load "
        f"{env['load_avg_1m']:.1f} (other benchmarks were running on this 2-core machine); jax "
        f"{v['jax']}, diffrax {v['diffrax']}, torch {v['torch']}, torchdiffeq {v['torchdiffeq']}; "
        f"batch {args.batch}, median of {repeats}, the two libraries' calls taking turns. "
        "MLP [x, t] -> w -> w -> d, SELU (d = 2: w = 64; d = 64: w = 256), the same float32 "
        "weights on both sides. Errors: max abs against a float64 solve (dopri5, rtol = atol = "
        "1e-10, `jax.enable_x64`; 2.6e-7 from a tsit5 1e-12 solve in 2D); tolerances bound the "
        "error per step, the errors shown are global. `rk4_38` is our 3/8-rule tableau, the method "
        "torchdiffeq calls `rk4` (the errors agree to 3 digits; our classical `rk4` errs about 2.5x "
        "more at equal steps on this field); both sides pick the first dopri5 step by Hairer's "
        "rule, ours counting its 2 evaluations in NFE. `torch / ours` > 1: ours is faster. GFLOP/s: NFE x XLA's FLOP count of one "
        "network evaluation on the batch, over the median time (XLA counts a while-loop body "
        "once, so the solve's own count is unusable; the solver's vector updates are left out; "
        "the torch column uses the same count, the same network work), and its share of a "
        f"2048^2 float32 matmul in the same run ({peak / 1e9:.1f} GFLOP/s; a cache-resident 512^2 "
        f"product reached {peak_small / 1e9:.1f}, so shares above 100% are possible). "
        f"Command: {cmd}.\n\n## Equal NFE (fixed steps), and dopri5 at each tolerance"
    )
    path = write_table(
        name, "Sampling: fm.sampling.sample (diffrax, jit) vs torchdiffeq", preamble,
        ["dim", "solver", "steps / tol", "NFE ours / torch", "ms ours", "ms torch", "torch / ours",
         "compile s", "err ours", "err torch", "GFLOP/s ours (of matmul)",
         "GFLOP/s torch (of matmul)"],
        table,
    )

    def cell(b):
        if b is None:
            return ["not reached", dash, dash]
        return [f"{b['solver']} {b['setting']} (err {b['err']:.1e})", str(b["nfe"]),
                f"{1e3 * b['seconds']:.2f}"]

    rk4_grid, tol_grid = grids
    lines = [
        "", "## Equal accuracy", "",
        "For each target (max abs error against the float64 reference) and each library: the "
        f"fewest rk4 (3/8 rule) steps (searched over {rk4_grid}) and the loosest dopri5 tolerance (over "
        f"{[f'{t:g}' for t in tol_grid]}) that reach it, found by one untimed solve per grid "
        "point; those configurations are then timed (median of "
        f"{repeats}, all taking turns) and the faster one is shown. The grid is coarse, so a "
        "library can overshoot a target by one grid step. `torch / ours` > 1: ours reaches the "
        "target faster.", "",
        "| dim | target | ours: config | NFE | ms | torch: config | NFE | ms | torch / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        ratio = dash if s["ratio"] is None else f"{s['ratio']:.2f}x"
        torch_cells = cell(s["best"].get("torch")) if have_torch else [dash] * 3
        lines.append("| " + " | ".join([str(s["dim"]), f"{s['target']:g}", *cell(s["best"].get("ours")),
                                         *torch_cells, ratio]) + " |")
    lines += ["", "Configurations timed for this view (GFLOP/s as above):", "",
              "| dim | library | solver | steps / tol | NFE | ms | err | GFLOP/s (of matmul) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in candidates:
        lib = r["library"]
        lines.append(f"| {r['dim']} | {lib} | {r['solver']} | {setting(r)} | {r[f'{lib}_nfe']} | "
                     f"{1e3 * r[f'{lib}_s']:.2f} | {r[f'{lib}_err']:.1e} | {lim(r, lib)} |")
    lines += ["", f"Plot: `{name}.png`, max abs error against median time (every timed "
              "configuration), one line per library and solver, one panel per dimension."]
    with open(path, "a") as fh:
        fh.write("\n".join(lines) + "\n")

    long = []
    for r in rows + candidates:
        for lib in ("ours", "torch"):
            if r.get(f"{lib}_s") is not None:
                long.append(dict(dim=r["dim"], library="flowjax_fm" if lib == "ours" else "torchdiffeq",
                                 solver=r["solver"], seconds=r[f"{lib}_s"], err=r[f"{lib}_err"]))
    write_plot(name, long, "seconds", "err", ["library", "solver"], panels="dim",
               title="max abs error vs time", xlabel="median seconds per solve",
               ylabel="max abs error vs float64")


if __name__ == "__main__":
    main()
