"""Exact minibatch OT (assignment) solvers on one CPU thread: flowjax_fm vs POT vs scipy.

Run (one core, one thread for every library, same process for all solvers):

    .venv/bin/python -m benchmarks.bench_assignment [--quick] [--big] [--sizes 8192] [--dims 2 64]

Problem: squared-Euclidean cost between x0 ~ N(0, I) and x1 ~ N(1, 0.25 I), n points each in
dimension d (n in {256, 1024, 4096} and 8192 with ``--big``; d in {2, 64, 3072}). Every timing
includes building the cost matrix from the points:

- ``flowjax_fm``: ``jax.jit`` of (cost matrix in XLA + ``solve_assignment``, the C solver through
  ``jax.pure_callback``), float64 (x64 enabled), ``block_until_ready``; compile time apart. Its
  cost-matrix build is also timed alone (``cost_matrix_s``).
- ``flowjax_fm_f32``: the same on float32 points (the cost built in float32, as in a training
  step without x64), at d = 3072 only, where the cost build dominates.
- ``flowjax_fm_c``: the same C solver called directly on a numpy cost (no JAX), to show the
  callback overhead (skipped for n >= 4096 at d = 3072, where it only repeats the solver).
- ``pot``: ``ot.dist`` + ``ot.emd`` (network simplex, default ``numItermax=100000``).
- ``scipy``: ``ot``-free numpy cost + ``scipy.optimize.linear_sum_assignment`` (n <= 4096).

The transport cost reached is ``sum_i C[i, sigma(i)]`` (for POT, ``n * <plan, C>``), evaluated in
float64 on the same matrix; ``gap`` is its relative excess over the best cost in the row.

How close to the machine's limit: the solvers are combinatorial (auction bids, shortest augmenting
paths, simplex pivots: comparisons and index chasing over the n^2 reduced costs, no multiply-add
work to count), so only the cost-matrix build is counted, analytically: ``2 n^2 d + 3 n^2`` FLOPs
(the matrix product and the norms), the same for every method. ``achieved_gflops`` = that count /
the whole call's median wall time (low by nature where the solver dominates, i.e. at small d);
for ours, ``cost_matrix_gflops`` = the count / the cost build's own time. Both against a float32
matrix product timed in the same run (the cost is float64 here, whose own limit is about half of it).

Writes JSON lines to ``RESULTS/assignment.jsonl`` (appended, per case as it finishes), a markdown
table to ``RESULTS/assignment.md`` and a plot to ``RESULTS/assignment.png`` (both from the latest
line of every (n, d, solver) written by this version of the suite, so partial runs such as
``--sizes 8192`` complete the table). ``--quick``: n = 256 in every d and (1024, 2), at most 5
repeats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as h
from benchmarks import _peers as peers
from flowjax_fm.couplings import _lap
from flowjax_fm.couplings._assignment import solve_assignment

jax.config.update("jax_enable_x64", True)

SCHEMA = 2  # rows of this version carry "schema": 2; older lines are left out of the table


def repeats_for(n: int) -> int:
    return {256: 30, 1024: 7, 4096: 3}.get(n, 1)


def sq_dists_np(x0, x1):
    return np.maximum((x0**2).sum(1)[:, None] + (x1**2).sum(1)[None] - 2.0 * x0 @ x1.T, 0.0)


def sq_dists_jax(x0, x1):
    return jnp.maximum(jnp.sum(x0**2, 1)[:, None] + jnp.sum(x1**2, 1)[None] - 2.0 * x0 @ x1.T, 0.0)


def ours_fn(x0, x1):
    return solve_assignment(sq_dists_jax(x0, x1))


def cost_flops(n: int, d: int) -> float:
    """The FLOP-like part of every method: the cost matrix (matrix product + norms)."""
    return 2.0 * n * n * d + 3.0 * n * n


def flags(ap) -> None:
    ap.add_argument("--big", action="store_true", help="add n = 8192")
    ap.add_argument("--scipy-max-n", type=int, default=4096, help="skip scipy above this n (slow, O(n^3))")
    ap.add_argument("--sizes", type=str, default=None, help="comma list of n, e.g. 8192")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 64, 3072])
    ap.add_argument("--seed", type=int, default=0)


def setup(ctx) -> None:
    ctx.data["ot"] = peers.start("POT rows", "ot") is None
    import scipy

    ctx.env["versions"] |= {"numpy": np.__version__, "scipy": scipy.__version__}
    ctx.env["peak_cpu_share"] = ctx.peak_cpu_share


def cases(ctx):
    a = ctx.args
    if ctx.quick:
        return [{"n": 256, "d": d} for d in a.dims] + [{"n": 1024, "d": 2}]
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else [256, 1024, 4096] + ([8192] if a.big else [])
    return [{"n": n, "d": d} for n in sizes for d in a.dims]


def run_case(ctx, case) -> list[dict]:
    n, d = case["n"], case["d"]
    rng = np.random.default_rng(ctx.args.seed)
    x0 = rng.normal(size=(n, d))
    x1 = 1.0 + 0.5 * rng.normal(size=(n, d))
    cost = sq_dists_np(x0, x1)  # float64 reference matrix for the transport costs
    reps = min(repeats_for(n), 5) if ctx.quick else repeats_for(n)
    warm = n <= 1024  # a warm-up call where calls are cheap
    rows = []

    def record(method, t: h.Timing, repeats, perm=None, plan=None, **extra):
        total = float(cost[np.arange(n), perm].sum()) if perm is not None else float((plan * cost).sum() * n)
        rows.append(dict(
            schema=SCHEMA, suite="coupling", part="assignment", n=n, d=d, method=method,
            time_s=t.median_s, time_min_s=t.min_s, cpu_s=t.cpu_s, repeats=repeats,
            transport_cost=total, flops_counted=cost_flops(n, d), threads=ctx.threads,
            **h.limit_fields(cost_flops(n, d), t.median_s, ctx.peak), **extra,
        ))

    # flowjax_fm, jitted, through the callback; compiled apart, then the executable is timed
    jx0, jx1 = jnp.asarray(x0), jnp.asarray(x1)
    ours, compile_s = h.compile_timed(ours_fn, jx0, jx1)
    timing = h.time_fn(lambda: ours(jx0, jx1), reps, first_apart=warm)
    # the cost-matrix build alone (the FLOP-bound part), same XLA code; not at n = 8192, d = 3072
    # (over a minute a call on a shared core)
    extra = {}
    if n * n * d <= 4096 * 4096 * 3072:
        build, _ = h.compile_timed(sq_dists_jax, jx0, jx1)
        c = h.time_fn(lambda: build(jx0, jx1), max(1, reps // 3) if n >= 4096 else reps, first_apart=warm)
        extra = dict(cost_matrix_s=c.median_s, cost_matrix_cpu_s=c.cpu_s,
                     cost_matrix_gflops=cost_flops(n, d) / c.median_s / 1e9)
    record("flowjax_fm", timing, reps, perm=np.asarray(timing.out), compile_s=compile_s, **extra)

    # where the cost build dominates: float32 points, as a training step passes them (the cost
    # matrix in float32, widened to float64 for the solver)
    if d >= 3072:
        fx0, fx1 = jnp.asarray(x0, jnp.float32), jnp.asarray(x1, jnp.float32)
        ours32, _ = h.compile_timed(ours_fn, fx0, fx1)
        timing = h.time_fn(lambda: ours32(fx0, fx1), reps, first_apart=warm)
        record("flowjax_fm_f32", timing, reps, perm=np.asarray(timing.out))

    # the C solver directly on numpy, cost matrix included
    if not (n >= 4096 and d >= 3072):

        def direct():
            out = np.empty((1, n), np.int32)
            _lap.solve(sq_dists_np(x0, x1), out, 1, n)
            return out[0]

        timing = h.time_fn(direct, reps, first_apart=warm)
        record("flowjax_fm_c", timing, reps, perm=timing.out)

    if ctx.data["ot"]:
        timing = h.time_fn(lambda: peers.pot_emd(x0, x1), reps, first_apart=warm)
        plan, msgs = timing.out
        record("pot", timing, reps, plan=plan, warning="; ".join(msgs) or None)

    if n <= ctx.args.scipy_max_n:
        from scipy.optimize import linear_sum_assignment

        def sp():
            r, c = linear_sum_assignment(sq_dists_np(x0, x1))
            out = np.empty(n, np.int64)
            out[r] = c
            return out

        sreps = max(1, reps // 3) if n >= 1024 else reps
        timing = h.time_fn(sp, sreps, first_apart=False)
        record("scipy", timing, sreps, perm=timing.out)

    best = min(r["transport_cost"] for r in rows)
    load = h.load_avg()
    for r in rows:
        r.update(gap=(r["transport_cost"] - best) / abs(best), load_avg_1m_after=load)
    return rows


def history(ctx, rows):
    """The latest row of every (n, d, method) of this schema."""
    return h.latest((r for r in rows if r.get("schema") == SCHEMA), lambda r: (r["n"], r["d"], r["method"]))


def table_rows(ctx, rows):
    by = {(r["n"], r["d"], r["method"]): r for r in rows}
    out = []
    for n, d in sorted({(r["n"], r["d"]) for r in rows}):
        if (n, d, "flowjax_fm") in by:
            out.append({m: by.get((n, d, m)) for m in ("flowjax_fm", "flowjax_fm_f32", "flowjax_fm_c", "pot", "scipy")}
                       | {"n": n, "d": d})
    return out


def _ms(r):
    return f"{r['time_s'] * 1e3:.2f} ({r['cpu_s'] * 1e3:.2f})" if r else "-"


def _ratio(t, m):
    o, r = t["flowjax_fm"], t[m]
    return f"{r['time_s'] / o['time_s']:.1f}x / {r['cpu_s'] / o['cpu_s']:.1f}x" if r else "-"


def _cost(r):
    return f"{r['transport_cost']:.8g}" if r else "-"


def _build(o):
    if "cost_matrix_s" not in o:
        return "-"
    return (f"{o['cost_matrix_s'] * 1e3:.2f} / {o['cost_matrix_gflops']:.1f} "
            f"({100 * o['cost_matrix_gflops'] / o['peak_gflops']:.0f}%)")


def _gap(p):
    return (f"{p['gap']:.1e}" + (" (numItermax)" if p.get("warning") else "")) if p else "-"


COLUMNS = [
    ("n", lambda t: t["n"]), ("d", lambda t: t["d"]),
    ("flowjax_fm (jit)", lambda t: _ms(t["flowjax_fm"])),
    ("ours float32", lambda t: _ms(t["flowjax_fm_f32"]) + (f", gap {t['flowjax_fm_f32']['gap']:.0e}" if t["flowjax_fm_f32"] else "")),
    ("C direct", lambda t: _ms(t["flowjax_fm_c"])), ("POT emd", lambda t: _ms(t["pot"])),
    ("scipy", lambda t: _ms(t["scipy"])), ("POT / ours", lambda t: _ratio(t, "pot")),
    ("scipy / ours", lambda t: _ratio(t, "scipy")),
    ("compile (s)", lambda t: f"{t['flowjax_fm']['compile_s']:.2f}"),
    ("cost build ms / GFLOP/s", lambda t: _build(t["flowjax_fm"])),
    ("GFLOP/s ours", lambda t: h.fmt_limit(t["flowjax_fm"])),
    ("GFLOP/s POT", lambda t: h.fmt_limit(t["pot"]) if t["pot"] else "-"),
    ("cost ours", lambda t: _cost(t["flowjax_fm"])), ("cost POT", lambda t: _cost(t["pot"])),
    ("POT gap", lambda t: _gap(t["pot"])), ("cost scipy", lambda t: _cost(t["scipy"])),
]


def preamble(ctx, rows) -> str:
    env = rows[-1]
    runs = sorted({r["time"] for r in rows})
    shown = {k: v for k, v in env["versions"].items() if k in ("jax", "numpy", "ot", "scipy", "python")}
    return (
        f"Latest run {env['time']}, {env['device_kind']}, {env.get('threads')}, versions {shown}, "
        f"1-min load average {max(r['load_avg_1m'] or 0 for r in rows):.1f} at most (the machine is shared: "
        "CPU time is the fairer figure). Times: median wall ms (median process CPU ms in brackets), cost "
        "matrix included; flowjax_fm jitted (float64), compile time apart. Ratios: wall / CPU. Costs: sum "
        "over the n pairs; gap = relative excess over the best cost found. "
        "GFLOP/s: only the cost-matrix build (2 n^2 d + 3 n^2 FLOPs) is counted, for every method: the "
        "solvers themselves are combinatorial (auction bids, augmenting paths, simplex pivots: comparisons "
        "and index chasing, no multiply-adds to count), so a whole call is not FLOP-bound and its figure "
        "is low by nature at small d. 'cost build' = ours' XLA cost matrix timed alone and its GFLOP/s "
        "(float64; not timed at n = 8192, d = 3072). "
        f"Percentages are of a float32 matrix product timed in the run ({env['peak_gflops']:.1f} GFLOP/s; "
        f"this process had {100 * (env.get('peak_cpu_share') or 0):.0f}% of its core while measuring it). "
        "'ours float32': the same call on float32 points (cost built in float32, as in training), d = 3072 "
        "only. C direct is skipped for n >= 4096 at d = 3072 (the same solver again). "
        + (f"Rows come from {len(runs)} runs ({', '.join(runs)}). " if len(runs) > 1 else "")
        + f"Command: {ctx.command} (under `flock /tmp/flowjax_bench.lock`; `--big` adds n = 8192)."
    )


def plot(ctx, rows) -> None:
    h.write_plot(ctx.file("png"), [r | {"d": f"{r['d']:>4}"} for r in rows], "n", "time_s", ["method"],
                 panels="d", title="exact OT, one core", ylabel="median seconds per call (cost matrix included)")


SUITE = h.Suite(
    name="assignment", title="Exact assignment: flowjax_fm vs POT `ot.emd` vs scipy", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags, pin=True,
    setup=setup, history=history, table_rows=table_rows, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
