"""Entropic OT couplings: flowjax_fm (ott-jax Sinkhorn, jitted) against POT's ``ot.sinkhorn``.

Run (one core, one thread for every library):

    .venv/bin/python benchmarks/bench_sinkhorn.py [--quick]

Problem: squared-Euclidean cost between x0 ~ N(0, I) and x1 ~ N(1, 0.25 I), n points each in
dimension d. Both sides get the same absolute regularisation ``eps = 0.05 * mean(C)`` (ours through
``relative_epsilon="mean"``, POT through ``reg``), and torchcfm's default (POT with reg = 0.05 on the
raw cost) is run too, to show where it breaks. Reported: median time of plan + pair drawing
(compile apart), the transport cost <P, C> * n reached, the exact optimum (our solver) for
reference, and the marginal error max |P 1 - 1/n| * n.
Writes ``benchmarks/results/sinkhorn.jsonl`` (appended) and ``benchmarks/results/sinkhorn.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median_time, pin_one_core, write_jsonl, write_table  # noqa: E402

THREADS = pin_one_core()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import flowjax_fm as fm  # noqa: E402


def problem(n, d, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), 0.5 * jax.random.normal(k1, (n, d)) + 1.0


def ours(x0, x1, repeats):
    cp = fm.couplings.SinkhornCoupling(epsilon=0.05, relative_epsilon="mean", threshold=1e-3)
    f = jax.jit(lambda a, b, k: (cp.plan(a, b), cp(k, a, b)))
    t = time.perf_counter()
    jax.block_until_ready(f(x0, x1, jax.random.key(0)))
    first = time.perf_counter() - t
    med, _ = median_time(lambda: jax.block_until_ready(f(x0, x1, jax.random.key(0))), repeats)
    plan, _ = f(x0, x1, jax.random.key(0))
    return med, first - med, np.asarray(plan, np.float64)


def pot(x0, x1, reg, repeats):
    import ot

    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    n = len(a)
    w = np.full(n, 1.0 / n)

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = ot.sinkhorn(w, w, ot.dist(a, b), reg)
        return plan, [str(c.message)[:60] for c in caught]

    med, _ = median_time(run, repeats)
    plan, warns = run()
    return med, np.asarray(plan, np.float64), warns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import ot  # noqa: F401

        have_pot = True
    except ImportError:
        have_pot = False
        print("POT is missing (pip install POT): its columns are skipped")
    env = environment()
    sizes = [(256, 2), (1024, 2)] if args.quick else [
        (256, 2), (1024, 2), (4096, 2), (256, 64), (1024, 64), (4096, 64), (256, 3072), (1024, 3072)]
    rows, table = [], []
    for n, d in sizes:
        x0, x1 = problem(n, d)
        cost = np.asarray(fm.couplings.squared_distances(x0, x1), np.float64)
        exact = cost[np.arange(n), np.asarray(fm.couplings.solve_assignment(jnp.asarray(cost)))].sum()
        reps = 5 if n <= 1024 else 2
        t_ours, c_ours, plan = ours(x0, x1, reps)
        row = {"suite": "coupling", "part": "sinkhorn", "n": n, "d": d, "threads": THREADS,
               "ours_s": t_ours, "ours_compile_s": c_ours, "ours_cost": float((plan * cost).sum() * n),
               "ours_marginal_err": float(np.abs(plan.sum(1) * n - 1).max()), "exact_cost": float(exact),
               "eps": float(0.05 * cost.mean()), **env}
        if have_pot:
            t_pot, p_pot, w_pot = pot(x0, x1, 0.05 * cost.mean(), reps)
            t_tcfm, p_tcfm, w_tcfm = pot(x0, x1, 0.05, 1 if n > 1024 else reps)
            ok = lambda p: bool(np.isfinite(p).all() and p.sum() > 0.5)
            row.update(
                pot_s=t_pot, pot_cost=float((p_pot * cost).sum() * n) if ok(p_pot) else None,
                pot_warnings=w_pot, torchcfm_default_s=t_tcfm,
                torchcfm_default_cost=float((p_tcfm * cost).sum() * n) if ok(p_tcfm) else None,
                torchcfm_default_warnings=w_tcfm,
            )
        rows.append(row)
        fmt = lambda v: "failed" if v is None else f"{v:.4g}"
        table.append([
            n, d, f"{1e3 * t_ours:.1f}", f"{c_ours:.2f}",
            "-" if not have_pot else f"{1e3 * row['pot_s']:.1f}",
            "-" if not have_pot else f"{row['pot_s'] / t_ours:.1f}x",
            f"{row['ours_cost']:.4g}", "-" if not have_pot else fmt(row["pot_cost"]), f"{exact:.4g}",
            f"{row['ours_marginal_err']:.1e}",
            "-" if not have_pot else f"{1e3 * row['torchcfm_default_s']:.0f} / {fmt(row['torchcfm_default_cost'])}"
            + (" (warns)" if row["torchcfm_default_warnings"] else ""),
        ])
        print(table[-1], flush=True)
    write_jsonl("sinkhorn", rows)
    write_table(
        "sinkhorn", "Entropic OT: flowjax_fm (ott-jax) vs POT sinkhorn",
        f"{env['time']}, {env['device_kind']}, {THREADS}, load {env['load_avg_1m']:.1f}. Both with eps = 0.05 x "
        "mean cost; 'torchcfm default' is POT with reg = 0.05 on the raw cost (time ms / cost reached). "
        "Times: median ms, plan + pairs (ours jitted, compile apart). Cost: n <P, C>; exact: the optimal "
        "assignment. Command: `.venv/bin/python benchmarks/bench_sinkhorn.py`.",
        ["n", "d", "ours ms", "compile s", "POT ms", "POT / ours", "cost ours", "cost POT", "exact",
         "marginal err ours", "torchcfm default"],
        table,
    )


if __name__ == "__main__":
    main()
