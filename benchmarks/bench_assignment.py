"""Exact minibatch OT (assignment) solvers on one CPU thread: flowjax_fm vs POT vs scipy.

Run (one core, one thread for every library, same process for all solvers):

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/bench_assignment.py [--quick]

Problem: squared-Euclidean cost between x0 ~ N(0, I) and x1 ~ N(1, 0.25 I), n points each in
dimension d. Every timing includes building the cost matrix from the points:

- ``flowjax_fm``: ``jax.jit`` of (cost matrix in XLA + ``solve_assignment``, the C solver through
  ``jax.pure_callback``), float64 (x64 enabled), ``block_until_ready``; compile time apart.
- ``flowjax_fm_c``: the same C solver called directly on a numpy cost (no JAX), to show the
  callback overhead.
- ``pot``: ``ot.dist`` + ``ot.emd`` (network simplex, default ``numItermax=100000``).
- ``scipy``: ``ot``-free numpy cost + ``scipy.optimize.linear_sum_assignment``.

The transport cost reached is ``sum_i C[i, sigma(i)]`` (for POT, ``n * <plan, C>``), evaluated in
float64 on the same matrix; ``gap`` is its relative excess over the best cost in the row.
Writes JSON lines to ``benchmarks/results/assignment.jsonl`` (appended) and a markdown table to
``benchmarks/results/assignment.md`` (rewritten from the latest line of every (n, d, solver) in the
JSON lines file). ``--quick``: n in {256, 1024}; ``--big``: add n = 8192; ``--sizes 8192``: only
those sizes.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

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
    print("POT is missing (pip install POT): its rows are skipped")
try:
    import scipy
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover
    scipy = None
    print("scipy is missing: its rows are skipped")

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def repeats_for(n: int) -> int:
    return {256: 30, 1024: 7, 4096: 3}.get(n, 1)


def timed(fn, repeats: int):
    """Median and min wall time, and median process CPU time (robust to a loaded machine)."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - c)
        times.append(time.perf_counter() - t)
    return out, (float(np.median(times)), float(np.min(times)), float(np.median(cpu)))


def sq_dists_np(x0, x1):
    return np.maximum((x0**2).sum(1)[:, None] + (x1**2).sum(1)[None] - 2.0 * x0 @ x1.T, 0.0)


@jax.jit
def ours_jit(x0, x1):
    cost = jnp.maximum(jnp.sum(x0**2, 1)[:, None] + jnp.sum(x1**2, 1)[None] - 2.0 * x0 @ x1.T, 0.0)
    return solve_assignment(cost)


def run_case(n: int, d: int, seed: int, scipy_max_n: int):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n, d))
    x1 = 1.0 + 0.5 * rng.normal(size=(n, d))
    cost = sq_dists_np(x0, x1)  # float64 reference matrix for the transport costs
    reps = repeats_for(n)
    rows = []

    def record(method, secs, repeats, perm=None, plan=None, **extra):
        if perm is not None:
            total = float(cost[np.arange(n), perm].sum())
        else:
            total = float((plan * cost).sum() * n)
        rows.append(
            dict(
                n=n,
                d=d,
                method=method,
                time_s=secs[0],
                time_min_s=secs[1],
                cpu_s=secs[2],
                repeats=repeats,
                transport_cost=total,
                **extra,
            )
        )

    # flowjax_fm, jitted, through the callback
    jx0, jx1 = jnp.asarray(x0), jnp.asarray(x1)
    t = time.perf_counter()
    ours_jit.lower(jx0, jx1).compile()
    compile_s = time.perf_counter() - t
    ours_jit(jx0, jx1).block_until_ready()
    perm, secs = timed(lambda: ours_jit(jx0, jx1).block_until_ready(), reps)
    record("flowjax_fm", secs, reps, perm=np.asarray(perm), compile_s=compile_s)

    # the C solver directly on numpy, cost matrix included
    def direct():
        c = sq_dists_np(x0, x1)
        out = np.empty((1, n), np.int32)
        _lap.solve(c, out, 1, n)
        return out[0]

    perm, secs = timed(direct, reps)
    record("flowjax_fm_c", secs, reps, perm=perm)

    if ot is not None:
        a = np.full(n, 1.0 / n)

        def pot():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plan = ot.emd(a, a, ot.dist(x0, x1))
            return plan, [str(w.message) for w in caught]

        (plan, msgs), secs = timed(pot, reps)
        record("pot", secs, reps, plan=plan, warning="; ".join(sorted(set(msgs))) or None)

    if scipy is not None and n <= scipy_max_n:

        def sp():
            r, c = linear_sum_assignment(sq_dists_np(x0, x1))
            out = np.empty(n, np.int64)
            out[r] = c
            return out

        sreps = max(1, reps // 3) if n >= 1024 else reps
        perm, secs = timed(sp, sreps)
        record("scipy", secs, sreps, perm=perm)

    best = min(r["transport_cost"] for r in rows)
    for r in rows:
        r["gap"] = (r["transport_cost"] - best) / abs(best)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n in {256, 1024} only")
    parser.add_argument("--big", action="store_true", help="add n = 8192")
    parser.add_argument(
        "--scipy-max-n", type=int, default=4096, help="skip scipy above this n (slow, O(n^3))"
    )
    parser.add_argument("--sizes", type=str, default=None, help="comma list of n, e.g. 8192")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [256, 1024] if args.quick else [256, 1024, 4096] + ([8192] if args.big else [])
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]

    versions = {
        "jax": jax.__version__,
        "numpy": np.__version__,
        "pot": getattr(ot, "__version__", None),
        "scipy": getattr(scipy, "__version__", None),
        "python": platform.python_version(),
    }
    context = dict(
        device_kind=jax.devices()[0].device_kind,
        backend=jax.default_backend(),
        cpu=platform.processor() or platform.machine(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        versions=versions,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    print(json.dumps(context))
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "assignment.jsonl", "a") as f:
        for n in sizes:
            for d in (2, 64):
                rows = run_case(n, d, args.seed, args.scipy_max_n)
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                for r in rows:
                    r.update(context, load_avg_1min=load)
                    f.write(json.dumps(r) + "\n")
                    print(
                        f"n={n:5d} d={d:2d} {r['method']:13s} {r['time_s'] * 1e3:10.3f} ms "
                        f"(min {r['time_min_s'] * 1e3:.3f}, cpu {r['cpu_s'] * 1e3:.3f})  "
                        f"cost {r['transport_cost']:.10g}  "
                        f"gap {r['gap']:.2e}" + (f"  [{r['warning']}]" if r.get("warning") else ""),
                        flush=True,
                    )
    # the table shows the latest row of every (n, d, method) in the JSON lines file
    latest = {}
    with open(RESULTS / "assignment.jsonl") as f:
        for line in f:
            r = json.loads(line)
            latest[r["n"], r["d"], r["method"]] = r
    write_markdown(list(latest.values()), context)


def write_markdown(rows, context):
    def get(n, d, m):
        return next((r for r in rows if (r["n"], r["d"], r["method"]) == (n, d, m)), None)

    lines = [
        "# Exact assignment: flowjax_fm vs POT `ot.emd` vs scipy",
        "",
        f"Last run {context['date']}, {context['device_kind']} ({context['cpu']}), one thread "
        f"(`OMP_NUM_THREADS=1 taskset -c 0`), versions {context['versions']}, 1-min load "
        f"average {max(r['load_avg_1min'] or 0 for r in rows):.1f} at most. Times: median wall "
        "ms (median process CPU ms in brackets; CPU time is the fairer figure on a shared "
        "machine), cost matrix included; flowjax_fm jitted (float64), compile time apart. "
        "Ratios: wall / CPU. Costs: sum over the n pairs; gap = relative excess over the best "
        "cost found.",
        "",
        "| n | d | flowjax_fm (jit) | C direct | POT emd | scipy | POT / ours | scipy / ours "
        "| compile (s) | cost ours | cost POT | POT gap | cost scipy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["n"], r["d"]) for r in rows})

    def ms(r):
        return f"{r['time_s'] * 1e3:.2f} ({r['cpu_s'] * 1e3:.2f})" if r else "-"

    for n, d in keys:
        o, c, p, s = (get(n, d, m) for m in ("flowjax_fm", "flowjax_fm_c", "pot", "scipy"))
        ratio = lambda r, o=o: (  # noqa: E731
            f"{r['time_s'] / o['time_s']:.1f}x / {r['cpu_s'] / o['cpu_s']:.1f}x" if r else "-"
        )
        cost = lambda r: f"{r['transport_cost']:.8g}" if r else "-"  # noqa: E731
        pgap = (f"{p['gap']:.1e}" + (" (numItermax)" if p.get("warning") else "")) if p else "-"
        lines.append(
            f"| {n} | {d} | {ms(o)} | {ms(c)} | {ms(p)} | {ms(s)} | {ratio(p)} | {ratio(s)} "
            f"| {o['compile_s']:.2f} | {cost(o)} | {cost(p)} | {pgap} | {cost(s)} |"
        )
    (RESULTS / "assignment.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
