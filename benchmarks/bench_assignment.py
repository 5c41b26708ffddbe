"""Exact minibatch OT (assignment) solvers on one CPU thread: flowjax_fm vs POT vs scipy.

Run (one core, one thread for every library, same process for all solvers):

    .venv/bin/python benchmarks/bench_assignment.py [--quick] [--big] [--sizes 8192] [--dims 2 64]

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
matrix product timed in the same run (:func:`_common.matmul_peak_flops`; the cost is float64 here,
whose own limit is about half of it).

Writes JSON lines to ``RESULTS/assignment.jsonl`` (appended), a markdown table to
``RESULTS/assignment.md`` and a plot to ``RESULTS/assignment.png`` (both from the latest line of
every (n, d, solver) written by this version of the script, so partial runs such as
``--sizes 8192`` complete the table). ``--quick``: n = 256 in every d and (1024, 2), at most 5
repeats.
"""

# (``_common`` sets one BLAS / OpenMP thread before it imports numpy.)
import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    pin_one_core,
    timed,
    write_jsonl,
    write_plot,
    write_table,
)

THREADS = pin_one_core()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

from flowjax_fm.couplings import _lap  # noqa: E402
from flowjax_fm.couplings._assignment import solve_assignment  # noqa: E402

try:
    import ot
except ImportError:  # pragma: no cover
    ot = None
    print("POT is missing (pip install POT): its rows are skipped, ours runs alone")
try:
    import scipy
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover
    scipy = None
    print("scipy is missing: its rows are skipped, ours runs alone")

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


def run_case(n: int, d: int, seed: int, scipy_max_n: int, peak: float, quick: bool):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n, d))
    x1 = 1.0 + 0.5 * rng.normal(size=(n, d))
    cost = sq_dists_np(x0, x1)  # float64 reference matrix for the transport costs
    reps = min(repeats_for(n), 5) if quick else repeats_for(n)
    warm = 1 if n <= 1024 else 0  # a warm-up call where calls are cheap
    rows = []

    def record(method, secs, repeats, perm=None, plan=None, **extra):
        if perm is not None:
            total = float(cost[np.arange(n), perm].sum())
        else:
            total = float((plan * cost).sum() * n)
        rows.append(
            dict(
                schema=SCHEMA, suite="coupling", part="assignment", n=n, d=d, method=method,
                time_s=secs[0], time_min_s=secs[1], cpu_s=secs[2], repeats=repeats,
                transport_cost=total, flops_counted=cost_flops(n, d),
                **limit_fields(cost_flops(n, d), secs[0], peak), **extra,
            )
        )

    # flowjax_fm, jitted, through the callback; compiled apart, then the executable is timed
    jx0, jx1 = jnp.asarray(x0), jnp.asarray(x1)
    t = time.perf_counter()
    ours = jax.jit(ours_fn).lower(jx0, jx1).compile()
    compile_s = time.perf_counter() - t
    perm, secs = timed(lambda: ours(jx0, jx1).block_until_ready(), reps, warm)
    # the cost-matrix build alone (the FLOP-bound part), same XLA code; not at n = 8192, d = 3072
    # (over a minute a call on a shared core)
    extra = {}
    if n * n * d <= 4096 * 4096 * 3072:
        build = jax.jit(sq_dists_jax).lower(jx0, jx1).compile()
        _, csecs = timed(lambda: build(jx0, jx1).block_until_ready(), max(1, reps // 3) if n >= 4096 else reps, warm)
        extra = dict(cost_matrix_s=csecs[0], cost_matrix_cpu_s=csecs[2],
                     cost_matrix_gflops=cost_flops(n, d) / csecs[0] / 1e9)
    record("flowjax_fm", secs, reps, perm=np.asarray(perm), compile_s=compile_s, **extra)

    # where the cost build dominates: float32 points, as a training step passes them (the cost
    # matrix in float32, widened to float64 for the solver)
    if d >= 3072:
        fx0, fx1 = jnp.asarray(x0, jnp.float32), jnp.asarray(x1, jnp.float32)
        ours32 = jax.jit(ours_fn).lower(fx0, fx1).compile()
        perm, secs = timed(lambda: ours32(fx0, fx1).block_until_ready(), reps, warm)
        record("flowjax_fm_f32", secs, reps, perm=np.asarray(perm))

    # the C solver directly on numpy, cost matrix included
    if not (n >= 4096 and d >= 3072):

        def direct():
            c = sq_dists_np(x0, x1)
            out = np.empty((1, n), np.int32)
            _lap.solve(c, out, 1, n)
            return out[0]

        perm, secs = timed(direct, reps, warm)
        record("flowjax_fm_c", secs, reps, perm=perm)

    if ot is not None:
        a = np.full(n, 1.0 / n)

        def pot():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plan = ot.emd(a, a, ot.dist(x0, x1))
            return plan, [str(w.message) for w in caught]

        (plan, msgs), secs = timed(pot, reps, warm)
        record("pot", secs, reps, plan=plan, warning="; ".join(sorted(set(msgs))) or None)

    if scipy is not None and n <= scipy_max_n:

        def sp():
            r, c = linear_sum_assignment(sq_dists_np(x0, x1))
            out = np.empty(n, np.int64)
            out[r] = c
            return out

        sreps = max(1, reps // 3) if n >= 1024 else reps
        perm, secs = timed(sp, sreps, warmup=0)
        record("scipy", secs, sreps, perm=perm)

    best = min(r["transport_cost"] for r in rows)
    for r in rows:
        r["gap"] = (r["transport_cost"] - best) / abs(best)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 256 in every d, and (1024, 2)")
    parser.add_argument("--big", action="store_true", help="add n = 8192")
    parser.add_argument(
        "--scipy-max-n", type=int, default=4096, help="skip scipy above this n (slow, O(n^3))"
    )
    parser.add_argument("--sizes", type=str, default=None, help="comma list of n, e.g. 8192")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64, 3072])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [256, 1024, 4096] + ([8192] if args.big else [])
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    cases = [(n, d) for n in sizes for d in args.dims]
    if args.quick:
        cases = [(256, d) for d in args.dims] + [(1024, 2)]

    env = environment()
    env["versions"] |= {"numpy": np.__version__, "scipy": getattr(scipy, "__version__", None)}
    wall, cpu = time.perf_counter(), time.process_time()
    peak = matmul_peak_flops()
    env["peak_cpu_share"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
    print(json.dumps(env), flush=True)
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s (CPU share {env['peak_cpu_share']:.2f})", flush=True)
    for n, d in cases:
        rows = run_case(n, d, args.seed, args.scipy_max_n, peak, args.quick)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        for r in rows:
            r.update(env, threads=THREADS, load_avg_1m_after=load)
            print(
                f"n={n:5d} d={d:4d} {r['method']:13s} {r['time_s'] * 1e3:10.3f} ms "
                f"(min {r['time_min_s'] * 1e3:.3f}, cpu {r['cpu_s'] * 1e3:.3f})  "
                f"cost {r['transport_cost']:.10g}  gap {r['gap']:.2e}  {fmt_limit(r)}"
                + (f"  [{r['warning']}]" if r.get("warning") else ""),
                flush=True,
            )
        write_jsonl("assignment", rows)  # per case, as it finishes
    # the table and plot show the latest row of every (n, d, method) of this schema
    latest = {}
    with open(RESULTS / "assignment.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r.get("schema") == SCHEMA:
                latest[r["n"], r["d"], r["method"]] = r
    write_markdown(list(latest.values()), env, peak)
    write_plot("assignment", [r | {"d": f"{r['d']:>4}"} for r in latest.values()], "n", "time_s", ["method"], panels="d",
               title="exact OT, one core", ylabel="median seconds per call (cost matrix included)")


def write_markdown(rows, env, peak):
    def get(n, d, m):
        return next((r for r in rows if (r["n"], r["d"], r["method"]) == (n, d, m)), None)

    runs = sorted({r["time"] for r in rows})
    preamble = (
        f"Latest run {env['time']}, {env['device_kind']}, {THREADS}, versions "
        f"{ {k: v for k, v in env['versions'].items() if k in ('jax', 'numpy', 'ot', 'scipy', 'python')} }, "
        f"1-min load average {max(r['load_avg_1m'] or 0 for r in rows):.1f} at most (the machine is shared: "
        "CPU time is the fairer figure). Times: median wall ms (median process CPU ms in brackets), cost "
        "matrix included; flowjax_fm jitted (float64), compile time apart. Ratios: wall / CPU. Costs: sum "
        "over the n pairs; gap = relative excess over the best cost found. "
        f"GFLOP/s: only the cost-matrix build (2 n^2 d + 3 n^2 FLOPs) is counted, for every method: the "
        "solvers themselves are combinatorial (auction bids, augmenting paths, simplex pivots: comparisons "
        "and index chasing, no multiply-adds to count), so a whole call is not FLOP-bound and its figure "
        "is low by nature at small d. 'cost build' = ours' XLA cost matrix timed alone and its GFLOP/s "
        "(float64; not timed at n = 8192, d = 3072). "
        f"Percentages are of a float32 matrix product timed in the run ({peak / 1e9:.1f} GFLOP/s; "
        f"this process had {100 * env['peak_cpu_share']:.0f}% of its core while measuring it). "
        "'ours float32': the same call on float32 points (cost built in float32, as in training), d = 3072 "
        "only. C direct is skipped for n >= 4096 at d = 3072 (the same solver again). "
        + (f"Rows come from {len(runs)} runs ({', '.join(runs)}). " if len(runs) > 1 else "")
        + "Command: `flock /tmp/flowjax_bench.lock .venv/bin/python benchmarks/bench_assignment.py [--big]`."
    )
    header = ["n", "d", "flowjax_fm (jit)", "ours float32", "C direct", "POT emd", "scipy", "POT / ours", "scipy / ours",
              "compile (s)", "cost build ms / GFLOP/s", "GFLOP/s ours", "GFLOP/s POT", "cost ours",
              "cost POT", "POT gap", "cost scipy"]
    keys = sorted({(r["n"], r["d"]) for r in rows})

    def ms(r):
        return f"{r['time_s'] * 1e3:.2f} ({r['cpu_s'] * 1e3:.2f})" if r else "-"

    table = []
    for n, d in keys:
        o, f, c, p, s = (get(n, d, m) for m in ("flowjax_fm", "flowjax_fm_f32", "flowjax_fm_c", "pot", "scipy"))
        if o is None:
            continue
        ratio = lambda r, o=o: (  # noqa: E731
            f"{r['time_s'] / o['time_s']:.1f}x / {r['cpu_s'] / o['cpu_s']:.1f}x" if r else "-"
        )
        cost = lambda r: f"{r['transport_cost']:.8g}" if r else "-"  # noqa: E731
        pgap = (f"{p['gap']:.1e}" + (" (numItermax)" if p.get("warning") else "")) if p else "-"
        build = "-"
        if "cost_matrix_s" in o:
            build = (f"{o['cost_matrix_s'] * 1e3:.2f} / {o['cost_matrix_gflops']:.1f} "
                     f"({100 * o['cost_matrix_gflops'] / o['peak_gflops']:.0f}%)")
        table.append([n, d, ms(o), ms(f) + (f", gap {f['gap']:.0e}" if f else ""), ms(c), ms(p), ms(s), ratio(p), ratio(s), f"{o['compile_s']:.2f}", build,
                      fmt_limit(o), fmt_limit(p) if p else "-", cost(o), cost(p), pgap, cost(s)])
    path = write_table("assignment", "Exact assignment: flowjax_fm vs POT `ot.emd` vs scipy", preamble,
                       header, table)
    print(path.read_text())


if __name__ == "__main__":
    main()
