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

Both sides get one core: ``_harness.pin_one_core`` and then every thread of the process pinned to
that core again once torch has started (:func:`_harness.pin_every_thread`); torch.set_num_threads(1), single-threaded XLA.
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

    .venv/bin/python -m benchmarks.bench_sampling           # full run
    .venv/bin/python -m benchmarks.bench_sampling --quick   # smoke run: 2D, batch 500, few configurations
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers

TARGETS = (1e-2, 1e-3, 1e-4)
# our solver names -> torchdiffeq's method names (the same tableaus)
TORCH_METHOD = {"rk4_38": "rk4", "euler": "euler", "dopri5": "dopri5"}
GRIDS = {  # equal-accuracy search grids: rk4 (3/8) steps, dopri5 tolerances
    False: ([3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48],
            [1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7]),
    True: ([4, 8, 16, 32], [1e-3, 1e-5, 1e-6]),
}


class Config(NamedTuple):
    solver: str  # our name (see TORCH_METHOD)
    num_steps: int | None  # None: adaptive
    tol: float | None  # rtol = atol; None for fixed steps


def setting(cfg) -> str:
    return f"{cfg['num_steps']} steps" if cfg["num_steps"] else f"tol {cfg['tol']:g}"


def make_weights(dim: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of an MLP [x, t] -> width -> width -> dim (float32, LeCun-normal-ish)."""
    rng = np.random.default_rng(seed)
    sizes = [dim + 1, width, width, dim]
    return [
        ((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), (0.1 * rng.standard_normal(b)).astype(np.float32))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def jax_field(weights):
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]

    def v(x, t):
        h_ = jnp.concatenate([x, t[:, None]], axis=1)
        for i, (w, b) in enumerate(params):
            h_ = h_ @ w + b
            if i < len(params) - 1:
                h_ = jax.nn.selu(h_)
        return h_

    return v


def reference(weights, x0: np.ndarray) -> np.ndarray:
    """x(1) in float64: our dopri5 at rtol = atol = 1e-10 under ``jax.enable_x64``.

    Checked once against tsit5 at 1e-12 (2D): 2.6e-7 max abs apart, far below the targets.
    """
    with jax.enable_x64(True):
        v = jax_field([(w.astype(np.float64), b.astype(np.float64)) for w, b in weights])
        res = fm.sampling.sample(v, jnp.asarray(x0, jnp.float64), solver="dopri5", rtol=1e-10,
                                 atol=1e-10, max_steps=100_000)
        return np.asarray(res.x)


def ours_call(v, x0, cfg: Config):
    tol = cfg.tol or 1e-5  # ignored by fixed-step solves
    run = jax.jit(lambda x: fm.sampling.sample(v, x, solver=cfg.solver, num_steps=cfg.num_steps, rtol=tol, atol=tol))
    return lambda: run(x0)


def torch_call(weights, x0, cfg: Config):
    torch = peers.torch()
    field = peers.CountedField(peers.torch_mlp(weights, "selu"))
    y0, ts = torch.tensor(x0), torch.tensor([0.0, 1.0])
    method = TORCH_METHOD[cfg.solver]
    if cfg.num_steps:
        kwargs = dict(method=method, options={"step_size": 1.0 / cfg.num_steps})
    else:
        kwargs = dict(method=method, rtol=cfg.tol, atol=cfg.tol)

    def call():
        field.nfe = 0
        with torch.no_grad():
            out = peers.torchdiffeq().odeint(field, y0, ts, **kwargs)[-1]
        return out, field.nfe

    return call


class Prepared:
    """One library's solve of one configuration, run once: its NFE, error and first-call time.

    ``call()`` repeats the solve (ours compiled by then).
    """

    def __init__(self, lib: str, cfg: Config, v, weights, x0: np.ndarray, ref: np.ndarray):
        self.call = ours_call(v, jnp.asarray(x0), cfg) if lib == "ours" else torch_call(weights, x0, cfg)
        start = time.perf_counter()
        out = self.call()
        self.first_s = time.perf_counter() - start
        if lib == "ours":
            x, self.nfe = np.asarray(out.x), int(out.nfe)
        else:
            x, self.nfe = out[0].numpy(), out[1]
        self.err = float(np.abs(x - ref).max())


def first_reaching(grid: list[Config], prepared: dict, lib: str, target: float) -> Config | None:
    """The first configuration of ``grid`` (cheapest first) whose error is at most ``target``."""
    for cfg in grid:
        p = prepared.get((lib, cfg))
        if p is not None and p.err <= target:
            return cfg
    return None


def flags(ap) -> None:
    ap.add_argument("--batch", type=int, default=2000)


def setup(ctx) -> None:
    ctx.data["missing"] = peers.start("torch / torchdiffeq side", "torch", "torchdiffeq")
    ctx.threads = h.pin_every_thread()  # torch's threads too
    ctx.data["peak_small"] = h.cache_resident_peak()
    print(f"512^2 matmul: {ctx.data['peak_small'] / 1e9:.1f} GFLOP/s; {ctx.threads}", flush=True)


def cases(ctx):
    return [{"dim": 2, "width": 64}] if ctx.quick else [{"dim": 2, "width": 64}, {"dim": 64, "width": 256}]


def run_case(ctx, case) -> list[dict]:
    """One dimension: equal-NFE and tolerance rows, then the equal-accuracy search (probes,
    candidates timed in turn, one summary row per target)."""
    dim, width, batch, repeats = case["dim"], case["width"], ctx.args.batch, ctx.repeats
    libs = ["ours"] if ctx.data["missing"] else ["ours", "torch"]
    rk4_grid, tol_grid = GRIDS[ctx.quick]
    grids = {"rk4_38": [Config("rk4_38", n, None) for n in rk4_grid],
             "dopri5": [Config("dopri5", None, t) for t in tol_grid]}
    nfe_steps, tols = ([8], [1e-3]) if ctx.quick else ([8, 32, 100], [1e-3, 1e-4, 1e-5, 1e-6])
    h.pin_every_thread()  # threads started since (compilation) too
    weights = make_weights(dim, width)
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (batch, dim)), np.float32)
    v = jax_field(weights)
    flops_eval = h.compiled_flops(v, jnp.asarray(x0), jnp.zeros(batch, jnp.float32))
    t = time.perf_counter()
    ref = reference(weights, x0)
    print(f"dim {dim}: float64 reference in {time.perf_counter() - t:.1f} s", flush=True)
    prepared: dict = {}

    def prepare(lib, cfg):
        if (lib, cfg) not in prepared:
            try:
                prepared[(lib, cfg)] = Prepared(lib, cfg, v, weights, x0, ref)
            except Exception as exc:  # noqa: BLE001 - a failed solve (step underflow) is recorded
                print(f"{lib} {cfg} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                prepared[(lib, cfg)] = None
        return prepared[(lib, cfg)]

    def base(cfg, view):
        return dict(suite="sampling", view=view, dim=dim, width=width, batch=batch, solver=cfg.solver,
                    num_steps=cfg.num_steps, tol=cfg.tol, rtol=cfg.tol, atol=cfg.tol, repeats=repeats,
                    pinned=ctx.threads, flops_per_eval=flops_eval, matmul_peak_flops=ctx.peak,
                    matmul512_flops=ctx.data["peak_small"])

    def fields(lib, p, seconds):
        flops = None if flops_eval is None else p.nfe * flops_eval
        lim = h.limit_fields(flops, seconds, ctx.peak)
        return {f"{lib}_s": seconds, f"{lib}_nfe": p.nfe, f"{lib}_err": p.err, f"{lib}_flops": flops,
                **{f"{lib}_{k}": x for k, x in lim.items()}}

    # 1. equal NFE (fixed steps), and dopri5 at each tolerance: both sides timed in turn
    rows = []
    configs = [(Config(s, n, None), "equal_nfe") for s in ("rk4_38", "euler") for n in nfe_steps]
    configs += [(Config("dopri5", None, tol), "tolerance") for tol in tols]
    for cfg, view in configs:
        ps = {lib: prepare(lib, cfg) for lib in libs}
        med = h.time_interleaved({lib: p.call for lib, p in ps.items()}, repeats)
        row = base(cfg, view)
        for lib, p in ps.items():
            row.update(fields(lib, p, med[lib].median_s))
        row["ours_compile_s"] = max(ps["ours"].first_s - med["ours"].median_s, 0.0)
        if "torch" in ps:
            row["speedup"] = h.speedup(med, "torch", "ours")
        rows.append(row)

    # 2. equal accuracy: the error of each grid point (one untimed solve each, cheapest first,
    # stopping once the smallest target is met); then the cheapest grid point of each solver
    # reaching each target is timed, all of them taking turns
    for lib in libs:
        for grid in grids.values():
            for cfg in grid:
                p = prepare(lib, cfg)
                if p is not None:
                    rows.append({**base(cfg, "probe"), "library": lib, "nfe": p.nfe, "err": p.err})
                    if p.err <= min(TARGETS):
                        break
    chosen = sorted(
        {(lib, c) for lib in libs for grid in grids.values() for target in TARGETS
         if (c := first_reaching(grid, prepared, lib, target)) is not None},
        key=lambda k: (k[0], k[1].solver, k[1].num_steps or 0, -(k[1].tol or 0)),
    )
    med = h.time_interleaved({k: prepared[k].call for k in chosen}, repeats)
    timed = {}
    for (lib, cfg), t in med.items():
        timed[(lib, cfg)] = {**base(cfg, "equal_accuracy_candidate"), "library": lib,
                             **fields(lib, prepared[(lib, cfg)], t.median_s)}
    rows += timed.values()
    for target in TARGETS:
        best = {}
        for lib in libs:
            ok = [r for (lb, _), r in timed.items() if lb == lib and r[f"{lib}_err"] <= target]
            if ok:
                r = min(ok, key=lambda r, lib=lib: r[f"{lib}_s"])
                best[lib] = dict(solver=r["solver"], setting=setting(r), nfe=r[f"{lib}_nfe"],
                                 seconds=r[f"{lib}_s"], err=r[f"{lib}_err"])
        ratio = best["torch"]["seconds"] / best["ours"]["seconds"] if len(best) == 2 else None
        rows.append(dict(suite="sampling", view="equal_accuracy", dim=dim, target=target, best=best, ratio=ratio))
    return rows


def table_rows(ctx, rows):
    return [r for r in rows if r["view"] in ("equal_nfe", "tolerance")]


def lim(row, lib):
    return h.fmt_limit(row, f"{lib}_")


def _torch(fn):
    return lambda r: fn(r) if "torch_s" in r else "-"


COLUMNS = [
    ("dim", lambda r: r["dim"]), ("solver", lambda r: r["solver"]), ("steps / tol", setting),
    ("NFE ours / torch", lambda r: f"{r['ours_nfe']} / {r.get('torch_nfe', '-')}"),
    ("ms ours", lambda r: f"{1e3 * r['ours_s']:.2f}"), ("ms torch", _torch(lambda r: f"{1e3 * r['torch_s']:.2f}")),
    ("torch / ours", _torch(lambda r: f"{r['speedup']:.2f}x")), ("compile s", lambda r: f"{r['ours_compile_s']:.2f}"),
    ("err ours", lambda r: f"{r['ours_err']:.1e}"), ("err torch", _torch(lambda r: f"{r['torch_err']:.1e}")),
    ("GFLOP/s ours (of matmul)", lambda r: lim(r, "ours")), ("GFLOP/s torch (of matmul)", _torch(lambda r: lim(r, "torch"))),
]


def preamble(ctx, rows) -> str:
    v, missing = ctx.env["versions"], ctx.data.get("missing")
    peak, peak_small = ctx.peak, ctx.data["peak_small"]
    return (
        (f"**torch / torchdiffeq not installed ({missing}): ours only.** " if missing else "")
        + f"{h.env_line(ctx.env, ctx.threads)} (other benchmarks were running on this 2-core machine); jax "
        f"{v['jax']}, diffrax {v['diffrax']}, torch {v['torch']}, torchdiffeq {v['torchdiffeq']}; "
        f"batch {ctx.args.batch}, median of {ctx.repeats}, the two libraries' calls taking turns. "
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
        f"Command: {ctx.command}.\n\n## Equal NFE (fixed steps), and dopri5 at each tolerance"
    )


def extra_md(ctx, rows) -> str:
    rk4_grid, tol_grid = GRIDS[ctx.quick]
    have_torch = not ctx.data.get("missing")

    def cell(b):
        if b is None:
            return ["not reached", "-", "-"]
        return [f"{b['solver']} {b['setting']} (err {b['err']:.1e})", str(b["nfe"]), f"{1e3 * b['seconds']:.2f}"]

    summary = [[s["dim"], f"{s['target']:g}", *cell(s["best"].get("ours")),
                *(cell(s["best"].get("torch")) if have_torch else ["-"] * 3), h.fmt(s["ratio"], ".2f") + ("x" if s["ratio"] else "")]
               for s in rows if s["view"] == "equal_accuracy"]
    candidates = [[r["dim"], lib, r["solver"], setting(r), r[f"{lib}_nfe"], f"{1e3 * r[f'{lib}_s']:.2f}",
                   f"{r[f'{lib}_err']:.1e}", lim(r, lib)]
                  for r in rows if r["view"] == "equal_accuracy_candidate" and (lib := r["library"])]
    return "\n".join([
        "", "## Equal accuracy", "",
        "For each target (max abs error against the float64 reference) and each library: the "
        f"fewest rk4 (3/8 rule) steps (searched over {rk4_grid}) and the loosest dopri5 tolerance (over "
        f"{[f'{t:g}' for t in tol_grid]}) that reach it, found by one untimed solve per grid "
        f"point; those configurations are then timed (median of {ctx.repeats}, all taking turns) and the "
        "faster one is shown. The grid is coarse, so a library can overshoot a target by one grid step. "
        "`torch / ours` > 1: ours reaches the target faster.", "",
        h.markdown_table(["dim", "target", "ours: config", "NFE", "ms", "torch: config", "NFE", "ms", "torch / ours"], summary),
        "", "Configurations timed for this view (GFLOP/s as above):", "",
        h.markdown_table(["dim", "library", "solver", "steps / tol", "NFE", "ms", "err", "GFLOP/s (of matmul)"], candidates),
        "", f"Plot: `{ctx.name}.png`, max abs error against median time (every timed configuration), one line "
        "per library and solver, one panel per dimension.",
    ])


def plot(ctx, rows) -> None:
    long = []
    for r in rows:
        for lib in ("ours", "torch"):
            if r["view"] in ("equal_nfe", "tolerance", "equal_accuracy_candidate") and r.get(f"{lib}_s") is not None:
                long.append(dict(dim=r["dim"], library="flowjax_fm" if lib == "ours" else "torchdiffeq",
                                 solver=r["solver"], seconds=r[f"{lib}_s"], err=r[f"{lib}_err"]))
    h.write_plot(ctx.file("png"), long, "seconds", "err", ["library", "solver"], panels="dim",
                 title="max abs error vs time", xlabel="median seconds per solve", ylabel="max abs error vs float64")


SUITE = h.Suite(
    name="sampling", title="Sampling: fm.sampling.sample (diffrax, jit) vs torchdiffeq", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"batch": 500}, repeats=(5, 3), pin=True, quick_file=True, setup=setup,
    table_rows=table_rows, extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
