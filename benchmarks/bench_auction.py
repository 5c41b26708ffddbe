"""Exact OT on the device: the pure-JAX auction against the host C solver and POT, one core.

Run (one core, one thread for every library, same process for all solvers):

    .venv/bin/python -m benchmarks.bench_auction [--quick] [--sizes 256 1024 4096] [--batch 64x64]

Problem: squared-Euclidean cost between x0 ~ N(0, I) and x1 ~ N(1, 0.25 I), n points each in 2D,
float32 points (as a training step passes them). Every timing includes building the cost matrix:

- ``auction``: ``jax.jit`` of (cost matrix in XLA + ``fm.couplings.auction_assignment``, default
  ``tol=1e-6``), compiled apart (ahead of time), ``block_until_ready``; with its bidding rounds,
  epsilon phases and certified ``gap_bound``.
- ``c``: the same jitted program with ``solve_assignment(method="c")`` (the compiled C solver
  through ``jax.pure_callback``; the float32 cost widened exactly to float64): the exact optimum.
- ``pot``: ``ot.dist`` + ``ot.emd`` on the float32 points as float64 (network simplex, default
  ``numItermax=100000``, which it exceeds at n = 4096: its gap is then not zero).
- the batched row (``--batch BxN``, default 64 problems of n = 64, per-shard OT): ``jax.vmap`` of
  both solvers over a stack, one jitted program each (the C solver gets the whole stack in one
  host call).

``gap`` is the relative excess of a method's total cost over the C solver's optimum, evaluated in
float64 on the float32 cost that was solved (summed over the batch for the batched row);
``bound`` is the auction's own certificate ``gap_bound`` relative to the same optimum.

Writes JSON lines to ``RESULTS/auction.jsonl`` (appended) and a table to ``RESULTS/auction.md``
(the latest line of every (batch, n, method) of this schema). ``--quick``: n = 256 and 1024 and
the batched row, fewer repeats. On an accelerator host (no POT there) the same command times the
auction on the device and the C solver through its host callback.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as h
from benchmarks import _peers as peers
from flowjax_fm.couplings import auction_assignment, solve_assignment

SCHEMA = 1


def repeats_for(n: int, quick: bool) -> int:
    reps = {64: 10, 256: 10, 1024: 5, 4096: 1}.get(n, 1)
    return min(reps, 3) if quick else reps


def points(n: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (batch, n, 2) if batch > 1 else (n, 2)
    x0 = rng.normal(size=shape).astype(np.float32)
    x1 = (1.0 + 0.5 * rng.normal(size=shape)).astype(np.float32)
    return x0, x1


def sq_dists(x0, x1):
    return jnp.maximum(jnp.sum(x0**2, -1)[:, None] + jnp.sum(x1**2, -1)[None] - 2.0 * x0 @ x1.T, 0.0)


def auction_fn(x0, x1):
    res = auction_assignment(sq_dists(x0, x1))
    return res.perm, res.rounds, res.phases, res.gap_bound, res.converged


def c_fn(x0, x1):
    return solve_assignment(sq_dists(x0, x1), method="c")


def flags(ap) -> None:
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--batch", type=str, default="64x64", help="BxN batched row ('' for none)")
    ap.add_argument("--seed", type=int, default=0)


def setup(ctx) -> None:
    ctx.data["pot"] = peers.start("POT rows", "ot") is None


def cases(ctx):
    sizes = [n for n in ctx.args.sizes if not ctx.quick or n <= 1024]
    out = [{"batch": 1, "n": n} for n in sizes]
    if ctx.args.batch:
        b, n = (int(v) for v in ctx.args.batch.lower().split("x"))
        out.append({"batch": b, "n": n})
    return out


def run_case(ctx, case) -> list[dict]:
    batch, n = case["batch"], case["n"]
    x0, x1 = points(n, batch, ctx.args.seed)
    jx0, jx1 = jnp.asarray(x0), jnp.asarray(x1)
    reps = repeats_for(n, ctx.quick)
    many = batch > 1
    wrap = jax.vmap if many else (lambda f: f)
    # the float32 cost each solver sees, in float64, for the totals
    cost = np.asarray(jax.jit(wrap(sq_dists))(jx0, jx1), np.float64).reshape(batch, n, n)

    def total(perm) -> float:
        perm = np.asarray(perm).reshape(batch, n)
        return float(sum(cost[b, np.arange(n), perm[b]].sum() for b in range(batch)))

    rows = []

    def record(method, t: h.Timing, transport, **extra):
        rows.append(
            dict(
                schema=SCHEMA,
                suite="auction",
                batch=batch,
                n=n,
                d=2,
                method=method,
                time_s=t.median_s,
                time_min_s=t.min_s,
                cpu_s=t.cpu_s,
                iqr_s=t.iqr_s,
                repeats=len(t.times),
                transport_cost=transport,
                threads=ctx.threads,
                **extra,
            )
        )

    ours, compile_s = h.compile_timed(wrap(auction_fn), jx0, jx1)
    t = h.time_fn(lambda: ours(jx0, jx1), reps, first_apart=n <= 1024)
    perm, rounds, phases, bound, converged = (np.asarray(v) for v in t.out)
    record(
        "auction",
        t,
        total(perm),
        compile_s=compile_s,
        rounds=int(rounds.max()),
        rounds_mean=float(rounds.mean()),
        phases=int(phases.max()),
        converged=bool(converged.all()),
        gap_bound=float(bound.sum()),
    )

    exact, compile_c = h.compile_timed(wrap(c_fn), jx0, jx1)
    t = h.time_fn(lambda: exact(jx0, jx1), reps, first_apart=n <= 1024)
    record("c", t, total(t.out), compile_s=compile_c)

    if ctx.data["pot"] and not many:
        a, b = x0.astype(np.float64), x1.astype(np.float64)
        t = h.time_fn(lambda: peers.pot_emd(a, b), reps, first_apart=n <= 1024)
        plan, msgs = t.out
        c64 = cost[0]
        record("pot", t, float((plan * c64).sum() * n), warning="; ".join(msgs) or None)

    best = next(r["transport_cost"] for r in rows if r["method"] == "c")
    load = h.load_avg()
    for r in rows:
        r.update(gap=(r["transport_cost"] - best) / abs(best), load_avg_1m_after=load)
        if r["method"] == "auction":
            r.update(bound_rel=r["gap_bound"] / abs(best))
    return rows


def history(ctx, rows):
    return h.latest(
        (r for r in rows if r.get("schema") == SCHEMA), lambda r: (r["batch"], r["n"], r["method"])
    )


def table_rows(ctx, rows):
    by = {(r["batch"], r["n"], r["method"]): r for r in rows}
    keys = sorted({(r["batch"], r["n"]) for r in rows})
    return [
        {m: by.get((b, n, m)) for m in ("auction", "c", "pot")} | {"batch": b, "n": n}
        for b, n in keys
        if (b, n, "auction") in by
    ]


def _ms(r):
    return f"{r['time_s'] * 1e3:.1f} ({r['cpu_s'] * 1e3:.1f})" if r else "-"


def _ratio(t, m):
    a, r = t["auction"], t[m]
    return f"{a['cpu_s'] / r['cpu_s']:.0f}x" if r else "-"


def _gap(r):
    if not r:
        return "-"
    return f"{r['gap']:.1e}" + (" (numItermax)" if r.get("warning") else "")


COLUMNS = [
    ("problems x n", lambda t: f"{t['batch']} x {t['n']}"),
    ("auction ms (CPU ms)", lambda t: _ms(t["auction"])),
    ("C ms (CPU ms)", lambda t: _ms(t["c"])),
    ("POT emd ms (CPU ms)", lambda t: _ms(t["pot"])),
    ("auction / C (CPU)", lambda t: _ratio(t, "c")),
    ("auction / POT (CPU)", lambda t: _ratio(t, "pot")),
    ("rounds (mean)", lambda t: f"{t['auction']['rounds']} ({t['auction']['rounds_mean']:.0f})"),
    ("phases", lambda t: t["auction"]["phases"]),
    ("us / round", lambda t: f"{t['auction']['cpu_s'] / t['auction']['rounds'] * 1e6:.0f}"),
    ("auction gap", lambda t: _gap(t["auction"])),
    ("auction bound", lambda t: f"{t['auction']['bound_rel']:.1e}"),
    ("POT gap", lambda t: _gap(t["pot"])),
    ("compile s (auction / C)", lambda t: f"{t['auction']['compile_s']:.1f} / {t['c']['compile_s']:.1f}"),
]


def preamble(ctx, rows) -> str:
    env = rows[-1]
    runs = sorted({r["time"] for r in rows})
    shown = {k: v for k, v in env["versions"].items() if k in ("jax", "ot", "python")}
    return (
        f"Latest run {env['time']}, {env['device_kind']} ({env['platform']}), {env.get('threads')}, "
        f"versions {shown}, 1-min load average {max(r['load_avg_1m'] or 0 for r in rows):.1f} at most "
        "(a shared machine: CPU time is the fairer figure). 2D Gaussian clouds (x0 ~ N(0, I), "
        "x1 ~ N(1, 0.25 I)), float32 points, squared-Euclidean cost built inside each timed call. "
        "Times: median wall ms (median process CPU ms). auction = `fm.couplings.auction_assignment` "
        "(pure JAX, tol=1e-6) jitted; C = `solve_assignment(method='c')` jitted (host callback); "
        "both compiled ahead of time (compile apart). Batched rows: `jax.vmap` over the problems, "
        "rounds = the slowest problem's (a vmapped loop runs until every problem is done), mean in "
        "brackets. gap: relative excess over the C solver's exact optimum of the float32 cost; "
        "bound: the auction's certificate (`gap_bound`) over the same optimum. us / round: CPU time "
        "of a call over its rounds (rounds with few bidders gather only their rows). "
        + (f"Rows come from {len(runs)} runs ({', '.join(runs)}). " if len(runs) > 1 else "")
        + f"Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    single = [dict(r, cpu_ms=1e3 * r["cpu_s"]) for r in rows if r.get("batch") == 1 and r.get("cpu_s")]
    h.write_plot(ctx.file("png"), single, "n", "cpu_ms", ["method"], title="one assignment, CPU ms",
                 xlabel="n", ylabel="CPU ms")


SUITE = h.Suite(
    plot=plot,
    name="auction",
    title="Exact OT on the device: pure-JAX auction vs host C solver vs POT",
    doc=__doc__,
    cases=cases,
    run_case=run_case,
    columns=COLUMNS,
    preamble=preamble,
    flags=flags,
    pin=True,
    setup=setup,
    history=history,
    table_rows=table_rows,
    peak=False,
)

if __name__ == "__main__":
    h.main(SUITE)
