"""Entropic OT plans: flowjax_fm's Sinkhorn (jitted) against POT's ``ot.sinkhorn``.

Run (one core, one thread for every library):

    .venv/bin/python -m benchmarks.bench_sinkhorn [--quick] [--sizes 256 1024] [--dims 2 64]
    .venv/bin/python -m benchmarks.bench_sinkhorn --options      # ott-jax solver options instead

Problem: squared-Euclidean cost between x0 ~ N(0, I) and x1 ~ N(1, 0.25 I), n points each in
dimension d, n in {256, 1024, 4096, 8192} x d in {2, 64, 3072}. Both sides get the same absolute
regularisation ``eps = 0.05 * mean(C)`` (ours through ``relative_epsilon="mean"``, POT through
``reg``) and the same stopping rule:

- ours: ``SinkhornCoupling(threshold=1e-3).plan`` (cost matrix + Sinkhorn, float32), which stops
  once the 1-norm marginal error ``|P^T 1 - b|_1`` is below 1e-3, checked every 10 iterations;
  timed in its default ``domain="auto"`` (the stabilised kernel domain) and, as ``ours log``, in
  ``domain="log"`` (ott-jax's log-domain solver, the default before issue 13): the same
  iterates, so the same iteration count;
- ``POT``: ``ot.dist`` + ``ot.sinkhorn`` (float64), which stops on the 2-norm of the same error,
  given ``stopThr = 1e-3 / sqrt(n)`` (so that ``|.|_1 <= sqrt(n) |.|_2 <= 1e-3``: the same or a
  stricter rule than ours);
- ``POT 1e-9``: POT's default ``stopThr`` (what torchcfm runs), n <= 1024 only;
- ``torchcfm default``: POT with ``reg = 0.05`` on the raw cost (torchcfm's setting; it
  underflows in 64+ dimensions), n <= 1024 only (about 20 s a call at n = 4096).

The plan is timed alone (one Sinkhorn solve on each side; the coupling's pair drawing is timed
apart, on the solved plan: ``draw_indices`` by inverse CDF, 2n uniforms). Compile time is measured
apart (``jit(...).lower().compile()``). Ours, ours log and POT (same stop) are timed interleaved
(one warm-up call each, then rounds taking turns, so a busy neighbour slows all alike). Times are
medians of wall and of process CPU time (the fairer figure on a shared machine). A POT call at
n = 8192 is skipped when 4x its time at 4096 (same d) exceeds 60 s.

FLOPs (analytic: XLA's cost analysis counts a ``while`` body once, whatever the iteration count),
with ``k`` the iterations reached and an ``exp`` counted as one FLOP:

- ours (kernel domain): cost matrix ``2 n^2 d + 3 n^2``; the first iteration (column minimum,
  shift, scale, exp, column sum, one matrix-vector product, the kernel's scaling) ``9 n^2``; each
  further iteration two matrix-vector products ``4 n^2 (k - 1)`` (the marginal check reuses the
  next product); the plan ``2 n^2``; a rebuild of the kernel when a scaling leaves its range
  (``4 n^2``, zero to two times in these problems) is not counted;
- ours log (log domain): cost matrix ``2 n^2 d + 3 n^2``; each iteration two log-sum-exp passes
  over the n^2 cells at 5 FLOPs a cell (add the potential, scale by 1/eps, subtract the max, exp,
  sum), so ``10 n^2 k``; the marginal check every 10 iterations ``5 n^2 k / 10``; the plan ``4 n^2``;
- POT (kernel domain, float64): cost matrix ``2 n^2 d + 3 n^2``; kernel ``exp(-C / reg)``
  ``2 n^2``; two matrix-vector products per iteration ``4 n^2 k``; the error check every 10
  iterations ``2 n^2 k / 10``; the plan ``2 n^2``.

Achieved FLOP/s = that count / median wall time, against a float32 matrix product timed in the same
run (:func:`_harness.matmul_peak_flops`).

Reported besides: the transport cost ``n <P, C>`` each reaches, the exact optimum (the assignment
solver) for reference, and the marginal error ``max(|P 1 n - 1|, |P^T 1 n - 1|)``.
Writes ``RESULTS/sinkhorn.{jsonl,md,png}`` (JSON lines appended; table and plot from this run).
``--options``: ott-jax Sinkhorn settings (inner iterations, momentum, Anderson, Gaussian
initializer, kernel mode) against ott-jax's default, a bare kernel-domain loop, the coupling's
default (``domain="auto"``) and POT, written to ``RESULTS/sinkhorn_options.{jsonl,md}``.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers
from flowjax_fm.couplings._ot import draw_indices

EPS_REL, THRESHOLD, MAX_ITERATIONS = 0.05, 1e-3, 2000
POT_SMALL_N = 1024  # POT at its default stopThr and torchcfm's setting: at most this n
CALL_BUDGET_S = 60.0  # a single call predicted to take longer is skipped


def problem(n, d, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n, d)), 0.5 * jax.random.normal(k1, (n, d)) + 1.0


def repeats_for(n: int) -> tuple[int, bool]:
    """(repeats, a warm-up call first) by size: fewer where one call takes seconds."""
    return {256: (10, True), 1024: (5, True), 4096: (2, False)}.get(n, (1, False))


def flops_ours(n, d, iters):
    return 2 * n * n * d + 3 * n * n + 9 * n * n + 4 * n * n * (iters - 1) + 2 * n * n


def flops_ours_log(n, d, iters):
    return 2 * n * n * d + 3 * n * n + 10 * n * n * iters + 0.5 * n * n * iters + 4 * n * n


def flops_pot(n, d, iters):
    return 2 * n * n * d + 3 * n * n + 2 * n * n + 4 * n * n * iters + 0.2 * n * n * iters + 2 * n * n


def ott_solve(x0, x1, *, geometry_kind="cost", **solver_kwargs):
    """The coupling's solve written out with ott-jax (same cost, eps and stopping rule), returning
    the ott output: for its iteration count, and for trying solver options."""
    from ott.geometry import geometry, pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    cost = fm.couplings.squared_distances(x0, x1).astype(jnp.float32)
    eps = EPS_REL * jnp.mean(cost)
    if geometry_kind == "pointcloud":
        geom = pointcloud.PointCloud(x0, x1, epsilon=eps)
    else:
        geom = geometry.Geometry(cost_matrix=cost, epsilon=eps)
    kwargs = dict(threshold=THRESHOLD, max_iterations=MAX_ITERATIONS) | solver_kwargs
    return sinkhorn.Sinkhorn(**kwargs)(linear_problem.LinearProblem(geom))


def draw_pairs(key, plan):
    """The coupling's default ``sampling="pairs"`` step on a solved plan (as in ``pair``)."""
    plan = jnp.maximum(jnp.nan_to_num(plan, nan=0.0), 0.0)
    k_rows, k_cols = jax.random.split(key)
    rows = draw_indices(k_rows, plan.sum(axis=1), num=plan.shape[0])
    return rows, draw_indices(k_cols, plan[rows])


def marginal_err(plan):
    n = plan.shape[0]
    return float(max(np.abs(plan.sum(1) * n - 1).max(), np.abs(plan.sum(0) * n - 1).max()))


def transport(plan, cost):
    return float((plan * cost).sum() * len(plan))


def coupling(domain="auto"):
    return fm.couplings.SinkhornCoupling(
        epsilon=EPS_REL, relative_epsilon="mean", threshold=THRESHOLD, max_iterations=MAX_ITERATIONS,
        domain=domain,
    )


def ours(x0, x1, repeats, pot_call=None):
    """Ours (default domain), ours in the log domain and, given ``pot_call``, POT: interleaved."""
    cp, cp_log = coupling(), coupling("log")
    plan_fn, compile_s = h.compile_timed(cp.plan, x0, x1)
    log_fn, log_compile_s = h.compile_timed(cp_log.plan, x0, x1)
    calls = {"ours": lambda: plan_fn(x0, x1), "log": lambda: log_fn(x0, x1)}
    if pot_call is not None:
        calls["pot"] = pot_call
    t = h.time_interleaved(calls, repeats)
    solve, solve_log = t["ours"], t["log"]
    plan, key = solve.out, jax.random.key(0)
    draw_fn, draw_compile_s = h.compile_timed(draw_pairs, key, plan)
    draw = h.time_fn(lambda: draw_fn(key, plan), max(repeats, 3))
    iters = int(jax.jit(lambda a, b: cp._solve(a, b, None, None)[3])(x0, x1))
    iters_log = int(jax.jit(lambda a, b: cp_log._solve(a, b, None, None)[3])(x0, x1))
    plan_log = np.asarray(solve_log.out, np.float64)
    row = dict(
        domain=cp.resolved_domain, ours_s=solve.median_s, ours_cpu_s=solve.cpu_s, ours_compile_s=compile_s,
        ours_iters=iters, ours_log_s=solve_log.median_s, ours_log_cpu_s=solve_log.cpu_s,
        ours_log_compile_s=log_compile_s, ours_log_iters=iters_log,
        ours_vs_log_l1=float(np.abs(np.asarray(plan, np.float64) - plan_log).sum()),
        draw_s=draw.median_s, draw_cpu_s=draw.cpu_s, draw_compile_s=draw_compile_s,
    )
    return row, np.asarray(plan, np.float64), t.get("pot")


def pot_call(x0, x1, reg, stop_thr):
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    return lambda: peers.pot_sinkhorn(a, b, reg, stop_thr)


def pot(x0, x1, reg, repeats, warm, stop_thr):
    t = h.time_fn(pot_call(x0, x1, reg, stop_thr), repeats, first_apart=warm)
    return pot_fields(t)


def pot_fields(t):
    plan, iters, warns = t.out
    ok = bool(np.isfinite(plan).all() and plan.sum() > 0.5)
    return dict(s=t.median_s, cpu_s=t.cpu_s, iters=iters, warnings=warns, ok=ok), np.asarray(plan, np.float64)


def flags(ap) -> None:
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 64, 3072])
    ap.add_argument("--options", action="store_true", help="compare ott-jax Sinkhorn options instead")


def setup(ctx) -> None:
    ctx.data.update(have_pot=peers.start("POT columns", "ot") is None, pot_4096={})
    # share of the core this process got while the limit was measured (a shared machine)
    ctx.env["peak_cpu_share"] = ctx.peak_cpu_share


def cases(ctx):
    if ctx.quick:
        return [{"n": 256, "d": 2}, {"n": 1024, "d": 2}, {"n": 256, "d": 3072}]
    return [{"n": n, "d": d} for d in ctx.args.dims for n in sorted(ctx.args.sizes)]


def run_case(ctx, case) -> dict:
    n, d, peak = case["n"], case["d"], ctx.peak
    x0, x1 = problem(n, d)
    cost = np.asarray(fm.couplings.squared_distances(x0, x1), np.float64)
    exact = float(cost[np.arange(n), np.asarray(fm.couplings.solve_assignment(jnp.asarray(cost)))].sum())
    reps, warm = repeats_for(n)
    reps = min(reps, 3) if ctx.quick else reps
    row = {"suite": "coupling", "part": "sinkhorn", "n": n, "d": d, "threads": ctx.threads,
           "eps": EPS_REL * float(cost.mean()), "threshold": THRESHOLD, "exact_cost": exact,
           "repeats": reps}
    pot_4096, have_pot = ctx.data["pot_4096"], ctx.data["have_pot"]
    predicted = 4 * pot_4096.get(d, 0.0) if n > 4096 else 0.0
    if not have_pot:
        row["pot_skipped"] = "POT not installed"
    elif predicted > CALL_BUDGET_S:
        row["pot_skipped"] = f"predicted {predicted:.0f} s a call (4x n=4096) > {CALL_BUDGET_S:.0f} s"
    same_stop = pot_call(x0, x1, row["eps"], THRESHOLD / np.sqrt(n)) if "pot_skipped" not in row else None
    mine, plan, pot_t = ours(x0, x1, reps, same_stop)
    row |= mine
    row |= {"ours_cost": transport(plan, cost), "ours_marginal_err": marginal_err(plan)}
    row |= {f"ours_{k}": v for k, v in h.limit_fields(flops_ours(n, d, row["ours_iters"]), row["ours_s"], peak).items()}
    row["ours_gflops_by_cpu_time"] = flops_ours(n, d, row["ours_iters"]) / row["ours_cpu_s"] / 1e9
    row |= {f"ours_log_{k}": v for k, v in h.limit_fields(
        flops_ours_log(n, d, row["ours_log_iters"]), row["ours_log_s"], peak).items()}
    row["peak_gflops"] = peak / 1e9
    if not have_pot:
        return row
    if pot_t is not None:
        p, pplan = pot_fields(pot_t)
        row |= {f"pot_{k}": v for k, v in p.items()}
        if p["ok"]:
            row |= {"pot_cost": transport(pplan, cost), "pot_marginal_err": marginal_err(pplan)}
            row |= {f"pot_{k}": v for k, v in h.limit_fields(flops_pot(n, d, p["iters"]), p["s"], peak).items()}
            row["pot_gflops_by_cpu_time"] = flops_pot(n, d, p["iters"]) / p["cpu_s"] / 1e9
        if n == 4096:
            pot_4096[d] = p["s"]
    if n <= (256 if ctx.quick else POT_SMALL_N):
        p, pplan = pot(x0, x1, row["eps"], reps, warm, 1e-9)
        row |= {f"pot_default_{k}": v for k, v in p.items()}
        row["pot_default_cost"] = transport(pplan, cost) if p["ok"] else None
        p, pplan = pot(x0, x1, 0.05, 1 if n > 256 else reps, warm, 1e-9)
        row |= {f"torchcfm_default_{k}": v for k, v in p.items()}
        row["torchcfm_default_cost"] = transport(pplan, cost) if p["ok"] else None
    return row


def _ms(s, c):
    return f"{1e3 * s:.1f} ({1e3 * c:.1f})"


def _tcfm(r):
    if "torchcfm_default_s" not in r:
        return "-"
    c = r["torchcfm_default_cost"]
    return (f"{1e3 * r['torchcfm_default_s']:.0f} / {'failed' if c is None else f'{c:.6g}'}"
            + (" (warns)" if r["torchcfm_default_warnings"] else ""))


def _has_pot(r):
    return "pot_s" in r


COLUMNS = [
    ("n", lambda r: r["n"]), ("d", lambda r: r["d"]),
    ("ours plan ms", lambda r: _ms(r["ours_s"], r["ours_cpu_s"])), ("iters", lambda r: r["ours_iters"]),
    ("ours log ms", lambda r: _ms(r["ours_log_s"], r["ours_log_cpu_s"]) if "ours_log_s" in r else "-"),
    ("compile s", lambda r: f"{r['ours_compile_s']:.2f}"), ("draw ms", lambda r: _ms(r["draw_s"], r["draw_cpu_s"])),
    ("POT ms", lambda r: _ms(r["pot_s"], r["pot_cpu_s"]) if _has_pot(r) else r.get("pot_skipped", "-")),
    ("POT iters", lambda r: r.get("pot_iters", "-")),
    ("POT / ours", lambda r: f"{r['pot_s'] / r['ours_s']:.2f}x / {r['pot_cpu_s'] / r['ours_cpu_s']:.2f}x" if _has_pot(r) else "-"),
    ("POT / ours log", lambda r: f"{r['pot_s'] / r['ours_log_s']:.2f}x / {r['pot_cpu_s'] / r['ours_log_cpu_s']:.2f}x"
     if _has_pot(r) and "ours_log_s" in r else "-"),
    ("cost ours", lambda r: f"{r['ours_cost']:.6g}"),
    ("cost POT", lambda r: (h.fmt(r.get("pot_cost"), ".6g", "failed")) if _has_pot(r) else "-"),
    ("exact", lambda r: f"{r['exact_cost']:.6g}"),
    ("marginal err ours / POT", lambda r: f"{r['ours_marginal_err']:.1e} / " + h.fmt(r.get("pot_marginal_err"), ".1e")),
    ("GFLOP/s ours (of peak)", lambda r: h.fmt_limit(r, "ours_")),
    ("GFLOP/s ours log (of peak)", lambda r: h.fmt_limit(r, "ours_log_") if "ours_log_s" in r else "-"),
    ("GFLOP/s POT (of peak)", lambda r: h.fmt_limit(r, "pot_") if _has_pot(r) else "-"),
    ("POT 1e-9", lambda r: f"{1e3 * r['pot_default_s']:.1f} / {r['pot_default_iters']}" if "pot_default_s" in r else "-"),
    ("torchcfm default", _tcfm),
]


def preamble(ctx, rows) -> str:
    skipped = sorted({r["pot_skipped"] for r in rows if "pot_skipped" in r})
    return (
        f"{ctx.env['time']}, {ctx.env['device_kind']}, {ctx.threads}, 1-min load {ctx.env['load_avg_1m']:.1f} at the start "
        f"(the machine is shared: CPU times in brackets are the fairer figure). Matmul limit measured in this "
        f"run: {ctx.peak / 1e9:.1f} GFLOP/s (float32; this process had {100 * ctx.peak_cpu_share:.0f}% of its "
        "core while measuring it, so on a busy machine it reads low and a short call timed at a quieter "
        "moment can exceed it; the JSON lines also hold FLOP/s by CPU time). Both sides: eps = 0.05 x mean cost, cost matrix included, "
        "one Sinkhorn solve, stopping at 1-norm marginal error 1e-3 (POT: stopThr = 1e-3 / sqrt(n) on its "
        "2-norm, the same or stricter). Ours float32, jitted, compile apart: 'ours' is the default "
        "domain='auto' (the stabilised kernel domain), 'ours log' is domain='log' (ott-jax's log-domain "
        "solver, the default before issue 13; same iterates, same iterations); POT float64 kernel domain. "
        "Ours, ours log and POT (same stop) timed interleaved. Times: median wall ms (median CPU ms). 'draw' = drawing n pairs from the solved plan "
        "(inverse CDF), the rest of a coupling call. POT / ours: wall / CPU. Cost: n <P, C>; exact: the "
        "optimal assignment. Marginal err: max |P 1 n - 1| over both marginals. GFLOP/s: analytic counts "
        "from the iterations reached (see the suite's docstring; exp = 1 FLOP), / median wall time. "
        "'POT 1e-9': POT's default stopThr (ms / iterations); 'torchcfm default': POT with reg = 0.05 on the "
        "raw cost (ms / cost); both n <= 1024 only. "
        + (f"POT skipped: {'; '.join(skipped)}. " if skipped else "")
        + f"Command: {ctx.command} (under `flock /tmp/flowjax_bench.lock`)."
    )


def plot(ctx, rows) -> None:
    padded = [r | {"d": f"{r['d']:>4}"} for r in rows]  # d as right-aligned text: panels 64 before 3072
    long = h.long_rows(padded, ("n", "d"), "time_s", {
        "flowjax_fm plan": "ours_s", "flowjax_fm plan (log domain)": "ours_log_s",
        "flowjax_fm draw pairs": "draw_s", "POT plan (same stop)": "pot_s",
        "POT plan (stopThr 1e-9)": "pot_default_s"})
    h.write_plot(ctx.file("png"), long, "n", "time_s", ["library"], panels="d",
                 title="Sinkhorn plan, one core", ylabel="median seconds per call")


SUITE = h.Suite(
    name="sinkhorn", title="Entropic OT plans: flowjax_fm (kernel and log domain) vs POT `ot.sinkhorn`",
    doc=__doc__, cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    pin=True, setup=setup, plot=plot,
)


# -- ``--options``: ott-jax solver options on the same problem -------------------------------

OPTIONS = {
    "ott-jax default (lse, inner 10)": {},
    "inner_iterations=5": dict(inner_iterations=5),
    "lse_mode=False (kernel)": dict(lse_mode=False),
    "momentum 1.3": "momentum",
    "Anderson memory 5": "anderson",
    "Gaussian initializer (PointCloud)": "gaussian",
    "kernel-domain loop, u @ K (no safeguards)": "kernel_loop",
    "flowjax_fm default (stabilised kernel domain)": "coupling",
}


def kernel_loop(x0, x1):
    """What a kernel-domain solve costs when written for XLA's CPU matrix-vector products.

    Same cost, eps and stopping rule as the coupling, float32. Each row of the kernel is shifted
    by its smallest cost (absorbed in the scaling ``u``), so no row is all zeros; entries below
    float32's range (``C - min_j C > 87 eps``) become zero. The column update is written
    ``u @ K``: ``K.T @ u`` (as ott-jax's ``apply_kernel`` does for axis 0) transposes ``K``
    inside the loop, about 15x slower per iteration on a CPU.
    """
    cost = fm.couplings.squared_distances(x0, x1).astype(jnp.float32)
    n = cost.shape[0]
    eps = EPS_REL * jnp.mean(cost)
    kernel = jnp.exp(-(cost - cost.min(axis=1, keepdims=True)) / eps)
    a = jnp.full(n, 1.0 / n, cost.dtype)

    def one(_, uv):
        u = a / (kernel @ uv[1])
        return u, a / (u @ kernel)

    def ten(state):
        u, v = jax.lax.fori_loop(0, 10, one, state[:2])
        return u, v, state[2] + 10, jnp.abs(u * (kernel @ v) - a).sum()

    def go_on(state):
        return (state[3] > THRESHOLD) & (state[2] < MAX_ITERATIONS)

    u, v, it, _ = jax.lax.while_loop(go_on, ten, (a, jnp.ones_like(a), 0, jnp.asarray(jnp.inf, cost.dtype)))
    return u[:, None] * kernel * v[None, :], it


def options_kwargs(spec):
    from ott.initializers.linear import initializers
    from ott.solvers.linear import acceleration

    if spec == "momentum":
        return dict(momentum=acceleration.Momentum(value=1.3))
    if spec == "anderson":
        return dict(anderson=acceleration.AndersonAcceleration(memory=5))
    if spec == "gaussian":
        return dict(geometry_kind="pointcloud", initializer=initializers.GaussianInitializer())
    return spec


def plan_and_iters(solver_kwargs):
    if solver_kwargs == "kernel_loop":
        return kernel_loop
    if solver_kwargs == "coupling":
        return lambda x0, x1: (lambda out: (out[0], out[3]))(coupling()._solve(x0, x1, None, None))

    def fn(x0, x1):
        out = ott_solve(x0, x1, **solver_kwargs)
        return out.matrix, out.n_iters

    return fn


def options_cases(ctx):
    if ctx.quick:
        return [{"n": 256, "d": 2}, {"n": 1024, "d": 2}]
    return [{"n": n, "d": d} for n, d in ((256, 2), (1024, 2), (4096, 2), (256, 64), (1024, 64))]


def run_options(ctx, case) -> list[dict]:
    n, d = case["n"], case["d"]
    x0, x1 = problem(n, d)
    cost = np.asarray(fm.couplings.squared_distances(x0, x1), np.float64)
    reps, warm = repeats_for(n)
    rows = []
    for name, spec in OPTIONS.items():
        kw = options_kwargs(spec)
        fn, compile_s = h.compile_timed(plan_and_iters(kw), x0, x1)
        t = h.time_fn(lambda fn=fn: fn(x0, x1), reps, first_apart=warm)
        plan, iters = np.asarray(t.out[0], np.float64), int(t.out[1])
        kernel_domain = spec == "kernel_loop" or isinstance(kw, dict) and kw.get("lse_mode") is False
        flops = flops_ours if spec == "coupling" else flops_pot if kernel_domain else flops_ours_log
        rows.append({"suite": "coupling", "part": "sinkhorn_options", "n": n, "d": d, "option": name,
                     "time_s": t.median_s, "cpu_s": t.cpu_s, "compile_s": compile_s, "iters": iters,
                     "cost": transport(plan, cost), "marginal_err": marginal_err(plan), "threads": ctx.threads,
                     **h.limit_fields(flops(n, d, iters), t.median_s, ctx.peak)})
    if ctx.data["have_pot"]:
        p, pplan = pot(x0, x1, EPS_REL * float(cost.mean()), reps, warm, THRESHOLD / np.sqrt(n))
        rows.append({"suite": "coupling", "part": "sinkhorn_options", "n": n, "d": d, "option": "POT",
                     "time_s": p["s"], "cpu_s": p["cpu_s"], "iters": p["iters"], "cost": transport(pplan, cost),
                     "marginal_err": marginal_err(pplan),
                     **h.limit_fields(flops_pot(n, d, p["iters"]), p["s"], ctx.peak)})
    base = rows[0]["cpu_s"]
    for r in rows:
        r["speedup_vs_default"] = base / r["cpu_s"]
    return rows


OPTION_COLUMNS = [
    ("n", lambda r: r["n"]), ("d", lambda r: r["d"]),
    ("option", lambda r: "POT (same stop)" if r["option"] == "POT" else r["option"]),
    ("ms (cpu)", lambda r: f"{1e3 * r['time_s']:.2f} ({1e3 * r['cpu_s']:.2f})"),
    ("speed-up", lambda r: f"{r['speedup_vs_default']:.2f}x"), ("iters", lambda r: int(r["iters"])),
    ("cost", lambda r: f"{r['cost']:.6g}"), ("marginal err", lambda r: f"{r['marginal_err']:.1e}"),
    ("GFLOP/s (of peak)", h.fmt_limit),
]


def options_preamble(ctx, rows) -> str:
    return (
        f"{ctx.env['time']}, {ctx.env['device_kind']}, {ctx.threads}, load {ctx.env['load_avg_1m']:.1f}; matmul limit "
        f"{ctx.peak / 1e9:.1f} GFLOP/s. eps = 0.05 x mean cost, threshold 1e-3, cost matrix included, float32; "
        "median wall ms (median process CPU ms); speed-up = CPU time of ott-jax's default / this option. "
        "GFLOP/s: the suite docstring's count of ours log for ott-jax's log-domain rows, of ours for the "
        f"flowjax_fm row, of POT for the other kernel-domain rows. Command: {ctx.command}."
    )


OPTIONS_SUITE = h.Suite(
    name="sinkhorn_options", title="ott-jax Sinkhorn options on the coupling's problem", doc=__doc__,
    cases=options_cases, run_case=run_options, columns=OPTION_COLUMNS, preamble=options_preamble,
    flags=flags, pin=True, setup=setup,
)

if __name__ == "__main__":
    h.main(OPTIONS_SUITE if "--options" in sys.argv[1:] else SUITE)
