"""Large-batch Sinkhorn couplings (online cost): transport cost, time, memory, and a 2D flow.

Run:

    .venv/bin/python -m benchmarks.bench_large_sinkhorn [--quick] [--sizes 1024 4096 16384 65536]
        [--epsilons 0.1 0.03 0.01] [--steps 20000] [--rounds 4] [--no-quality]

Problem: n points of 8gaussians (source) and n of moons (target) (``fm.data.sample_toy``, seed 0),
squared-Euclidean cost. ``fm.couplings.LargeSinkhornCoupling(epsilon=e, relative_epsilon="mean",
anderson=5, chunk=1024, sampling="rows")``: ``e`` times the mean cost (the cost is about 35 here,
so ``e = 0.01`` is an absolute 0.35), Anderson acceleration (2-4x fewer iterations at these
``e``), every source point paired once.

(a) Transport cost per pair, ``mean_k |x0[s_k] - x1[t_k]|^2`` of the sampled pairing, against
exact OT on the same n points (``fm.couplings.solve_assignment``, n <= ``--exact-max``; above it,
exact OT of the first ``--exact-max`` points of each cloud, which is higher than the n-point
optimum), against minibatch exact OT in batches of 256 (what OT-CFM pairs: the n points cut
into n / 256 batches, each solved exactly), and against the independent pairing.

(b) Time of one pairing call (``jax.jit(...).lower().compile()`` apart; median wall and process
CPU time of the repeats: one repeat from n = 4096 on), ott-jax iterations, marginal error, and
working memory: XLA's count of the compiled program's scratch memory (``temp_size_in_bytes``)
against one n x n float32 matrix, the least the dense ``SinkhornCoupling`` stores (it holds a
cost matrix and a plan). A case whose predicted time (the same epsilon at the previous n, times
(n / n_prev)^2) exceeds ``--call-budget`` seconds is skipped and recorded with the prediction.

(c) Quality, 8gaussians -> moons, torchcfm's tutorial settings (``configs/torchcfm_tutorial.json``:
MLP 3x64 SELU, Adam 1e-3, sigma 0.1, batch 256, ``--steps`` steps):

- ``OT-CFM (batch 256)``: the main job's step with ``ExactOTCoupling`` on every batch of 256;
- ``large Sinkhorn (16k)``: ``--rounds`` times, pair a fresh global batch of ``--global-batch``
  points with the coupling above (``--quality-epsilon``), then fit ``steps / rounds`` steps on
  minibatches of 256 of those pairs (``fm.training.fit(..., paired=True)``, the independent
  coupling inside the step, so the pairs are kept), as Zhang et al. 2025 do;

evaluated as the main job does: 2,000 samples by dopri5 (rtol = atol = 1e-4), exact W2 against
2,000 fresh target points (``fm.metrics.wasserstein``), NFE. Wall time includes compilation and,
for large Sinkhorn, the pairings (also reported apart).

Writes ``RESULTS/large_sinkhorn.{jsonl,md}`` (JSON lines appended; the tables show the newest row
of every case in the file, so ``--no-pairing`` or ``--no-quality`` runs add to them; ``--render``
rewrites the md alone).
"""

from __future__ import annotations

import time

import jax
import numpy as np

import flowjax_fm as fm
from benchmarks import _harness as h

CHUNK, ANDERSON, MINIBATCH = 1024, 5, 256


def problem(n: int, seed: int = 0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return fm.data.sample_toy("8gaussians", k0, n), fm.data.sample_toy("moons", k1, n)


def coupling(eps: float) -> fm.couplings.LargeSinkhornCoupling:
    return fm.couplings.LargeSinkhornCoupling(
        epsilon=eps, relative_epsilon="mean", anderson=ANDERSON, chunk=CHUNK, throw=False)


def per_pair(x0, x1, rows=None, cols=None) -> float:
    a = np.asarray(x0, np.float64)[rows if rows is not None else slice(None)]
    b = np.asarray(x1, np.float64)[cols if cols is not None else slice(None)]
    return float(((a - b) ** 2).sum(1).mean())


def exact_per_pair(x0, x1) -> float:
    cost = fm.couplings.squared_distances(x0, x1)
    perm = np.asarray(fm.couplings.solve_assignment(cost))
    return per_pair(x0, x1, np.arange(len(perm)), perm)


def references(ctx, n: int, x0, x1) -> dict:
    """Exact OT (or of a subsample), minibatch exact OT at 256 and independent, per n (cached)."""
    if n in ctx.data["refs"]:
        return ctx.data["refs"][n]
    cap = ctx.args.exact_max
    t = time.perf_counter()
    exact = exact_per_pair(x0[:cap], x1[:cap])
    exact_s = time.perf_counter() - t
    batches = [exact_per_pair(x0[i:i + MINIBATCH], x1[i:i + MINIBATCH]) for i in range(0, n, MINIBATCH)]
    out = {"exact_cost": exact, "exact_points": min(n, cap), "exact_s": exact_s,
           "minibatch_ot_cost": float(np.mean(batches)), "independent_cost": per_pair(x0, x1)}
    ctx.data["refs"][n] = out
    return out


def pairing_case(ctx, case) -> dict:
    n, eps = case["n"], case["eps"]
    row = {"part": "pairing", "n": n, "eps_rel": eps, "chunk": CHUNK, "anderson": ANDERSON}
    prev = ctx.data["times"].get(eps)
    if prev is not None:
        predicted = prev[1] * (n / prev[0]) ** 2
        if predicted > ctx.args.call_budget:
            row["skipped"] = f"predicted {predicted:.0f} s a call (n = {prev[0]} took {prev[1]:.0f} s)"
            row["predicted_s"] = predicted
            return row
    x0, x1 = problem(n)
    row |= references(ctx, n, x0, x1)
    cp, key = coupling(eps), jax.random.key(1)
    fn, compile_s = h.compile_timed(lambda k, a, b: cp._pair(k, a, b, None, None), key, x0, x1)
    mem = fn.memory_analysis()
    repeats = 3 if n <= 1024 else 1
    t = h.time_fn(lambda: fn(key, x0, x1), repeats, first_apart=False)
    pairing, iters = t.out
    rows, cols = np.asarray(pairing.source), np.asarray(pairing.target)
    ctx.data["times"][eps] = (n, t.median_s)
    cost = per_pair(x0, x1, rows, cols)
    return row | {
        "call_s": t.median_s, "call_cpu_s": t.cpu_s, "compile_s": compile_s, "iterations": int(iters),
        "converged": bool(pairing.converged), "marginal_error": float(pairing.marginal_error),
        "cost": cost, "unique_targets": float(len(np.unique(cols)) / n),
        "temp_bytes": int(mem.temp_size_in_bytes), "dense_bytes": 4 * n * n,
        "eps_abs": eps * mean_cost(x0, x1),
    }


def mean_cost(x0, x1) -> float:
    """Mean squared distance over all n^2 pairs, without the matrix."""
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    return float((a**2).sum(1).mean() + (b**2).sum(1).mean() - 2 * a.mean(0) @ b.mean(0))


# -- (c) quality -----------------------------------------------------------------------------


def _sampler(name):
    return lambda key, n: fm.data.sample_toy(name, key, n)


def _built(coupling_name: str, steps: int, seed: int):
    from flowjax_fm import experiments as ex

    cfg = h.experiment_config("torchcfm_tutorial", {"coupling": coupling_name, "seed": seed, "steps": steps})
    cfg = ex.resolve(cfg, "points")
    built = ex.build(cfg, (2,), None)
    return cfg, built, fm.training.init_state(built.init, built.optimizer)


def evaluate(cfg, built, params, seed: int, n_eval: int) -> dict:
    """As the main job evaluates a points run: dopri5 samples vs fresh target points, exact W2."""
    k0, k1 = jax.random.split(jax.random.fold_in(jax.random.key(seed), 7))
    x0 = fm.data.sample_toy("8gaussians", k0, n_eval)
    x_ref = np.asarray(fm.data.sample_toy("moons", k1, n_eval))
    field = fm.training.make_vector_field(built.model, params)
    e = cfg.eval
    res = fm.sampling.sample(field, x0, solver="dopri5", rtol=e.rtol, atol=e.atol)
    return {"w2": float(fm.metrics.wasserstein(np.asarray(res.x), x_ref, p=2)), "nfe": int(res.nfe)}


def quality_case(ctx, case) -> dict:
    a, seed, steps = ctx.args, case["seed"], ctx.args.steps
    row = {"part": "quality", "method": case["method"], "seed": seed, "steps": steps, "batch": MINIBATCH}
    key = jax.random.key(seed)
    start = time.perf_counter()
    if case["method"] == "OT-CFM (batch 256)":
        cfg, built, state = _built("exact-ot", steps, seed)
        state, _, ft = h.fit_timed(built.step, state, key, _sampler("8gaussians"), _sampler("moons"),
                                   steps=steps, batch=MINIBATCH, chunk=500)
        row |= {"steps_per_s": ft.steps_per_s, "compile_s": ft.compile_s}
    else:
        cfg, built, state = _built("independent", steps, seed)
        cp, m = coupling(a.quality_epsilon), a.global_batch
        pair = jax.jit(lambda k, x0, x1: cp(k, x0, x1))
        pair_s, costs, errors = [], [], []
        per_round = [steps // a.rounds + (r < steps % a.rounds) for r in range(a.rounds)]
        for r, count in enumerate(per_round):
            k_data, k_pair, k_fit = jax.random.split(jax.random.fold_in(key, r), 3)
            k0, k1 = jax.random.split(k_data)
            x0 = fm.data.sample_toy("8gaussians", k0, m)
            x1 = fm.data.sample_toy("moons", k1, m)
            t = time.perf_counter()
            p = jax.block_until_ready(pair(k_pair, x0, x1))
            pair_s.append(time.perf_counter() - t)
            costs.append(per_pair(x0, x1, np.asarray(p.source), np.asarray(p.target)))
            errors.append(float(p.marginal_error))
            x0p, x1p = p.apply(x0, x1)
            state, _, _ = h.fit_timed(built.step, state, k_fit, x0p, x1p, steps=count, batch=MINIBATCH,
                                      chunk=500, paired=True)
        row |= {"global_batch": m, "rounds": a.rounds, "eps_rel": a.quality_epsilon,
                "pairing_s": pair_s, "pairing_total_s": float(np.sum(pair_s)), "pair_cost": costs,
                "marginal_error": max(errors)}
    row["train_s"] = time.perf_counter() - start
    params = state.ema if cfg.ema_decay is not None else state.params
    return row | evaluate(cfg, built, params, seed, a.eval)


# -- the suite -------------------------------------------------------------------------------


def flags(ap) -> None:
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.03, 0.01])
    ap.add_argument("--exact-max", type=int, default=4096, help="exact OT on at most this many points")
    ap.add_argument("--call-budget", type=float, default=300.0, help="skip a pairing predicted longer (s)")
    ap.add_argument("--no-quality", action="store_true", help="skip part (c)")
    ap.add_argument("--no-pairing", action="store_true", help="skip parts (a) and (b)")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=4, help="global pairings in part (c)")
    ap.add_argument("--global-batch", type=int, default=16_384)
    ap.add_argument("--quality-epsilon", type=float, default=0.03)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--eval", type=int, default=2000)


QUICK = {"sizes": [256, 1024], "epsilons": [0.1], "steps": 600, "rounds": 2, "global_batch": 2048,
         "eval": 500}


def setup(ctx) -> None:
    ctx.data.update(refs={}, times={})


def cases(ctx):
    a = ctx.args
    if not a.no_pairing:
        for n in sorted(a.sizes):
            for eps in a.epsilons:
                yield {"part": "pairing", "n": n, "eps": eps}
    if not a.no_quality:
        for seed in a.seeds:
            for method in ("OT-CFM (batch 256)", "large Sinkhorn"):
                yield {"part": "quality", "method": method, "seed": seed}


def run_case(ctx, case):
    row = pairing_case(ctx, case) if case["part"] == "pairing" else quality_case(ctx, case)
    return row | {"command": ctx.command}


def _mb(v) -> str:
    return "-" if v is None else f"{v / 2**20:,.0f}"


COLUMNS = [
    ("n", lambda r: r["n"]),
    ("eps (x mean cost)", lambda r: r["eps_rel"]),
    ("cost / pair", lambda r: h.fmt(r.get("cost"), ".3f") if "skipped" not in r else "skipped"),
    ("exact OT", lambda r: "-" if "exact_cost" not in r else
     f"{r['exact_cost']:.3f}" + ("" if r["exact_points"] == r["n"] else f" (first {r['exact_points']})")),
    ("minibatch OT (256)", lambda r: h.fmt(r.get("minibatch_ot_cost"), ".3f")),
    ("independent", lambda r: h.fmt(r.get("independent_cost"), ".3f")),
    ("call s (CPU s)", lambda r: r.get("skipped") or f"{r['call_s']:.2f} ({r['call_cpu_s']:.2f})"),
    ("compile s", lambda r: h.fmt(r.get("compile_s"), ".1f")),
    ("iters", lambda r: r.get("iterations", "-")),
    ("marginal err", lambda r: h.fmt(r.get("marginal_error"), ".1e")),
    ("distinct targets", lambda r: h.fmt(r.get("unique_targets"), ".2f")),
    ("scratch MiB", lambda r: _mb(r.get("temp_bytes"))),
    ("one n x n f32 MiB", lambda r: f"{4 * r['n'] ** 2 / 2**20:,.1f}"),
]


def history(ctx, rows):
    """The newest row of every pairing case (n, epsilon) and quality case (method, settings)."""
    def key(r):
        if r.get("part") == "pairing":
            return ("pairing", r["n"], r["eps_rel"])
        return ("quality", r["method"], r["seed"], r["steps"], r.get("eps_rel"), r.get("rounds"),
                r.get("global_batch"))

    return h.latest(rows, key)


def table_rows(ctx, rows):
    return sorted((r for r in rows if r.get("part") == "pairing"), key=lambda r: (r["n"], -r["eps_rel"]))


def preamble(ctx, rows) -> str:
    return (
        f"{h.env_line(ctx.env, ctx.threads)}. 8gaussians -> moons point clouds (seed 0). "
        f"LargeSinkhornCoupling(relative_epsilon='mean', anderson={ANDERSON}, chunk={CHUNK}, "
        "sampling='rows'): the cost is computed online, 1,024 columns at a time. Cost / pair: mean "
        "squared distance of the sampled pairs; exact OT: the optimal assignment of the same points "
        "(above 4,096 points: of the first 4,096 of each cloud, which sits above the n-point "
        "optimum); minibatch OT (256): exact OT within each batch of 256 (OT-CFM's pairs); "
        "independent: x0[i] with x1[i]. Call: one jitted pairing (Sinkhorn + marginal check + "
        "Gumbel-max draws), compile apart; median wall s (process CPU s). Scratch: XLA's "
        "temp_size_in_bytes of the compiled call; the dense SinkhornCoupling stores at least one n x n "
        "float32 cost matrix and a plan of the same size. Skipped: predicted from the same epsilon "
        f"at the previous n times (n / n_prev)^2. Commands: {_commands(rows)}."
    )


def _commands(rows) -> str:
    default = "`.venv/bin/python -m benchmarks.bench_large_sinkhorn`"  # rows written before the field
    return ", ".join(dict.fromkeys(r.get("command", default) for r in rows))


def extra_md(ctx, rows) -> str:
    q = [r for r in rows if r.get("part") == "quality"]
    if not q:
        return ""
    header = ["method", "seed", "steps", "W2", "NFE", "train s (wall)", "pairing s",
              "cost / pair of the training pairs"]
    cells = []
    for r in q:
        pairing = "-" if "pairing_total_s" not in r else (
            f"{r['pairing_total_s']:.0f} ({r['rounds']} x {r['global_batch']:,} points, "
            f"eps {r['eps_rel']})")
        cost = "-" if "pair_cost" not in r else f"{np.mean(r['pair_cost']):.3f}"
        cells.append([r["method"], r["seed"], r["steps"], f"{r['w2']:.3f}", r["nfe"],
                      f"{r['train_s']:.0f}", pairing, cost])
    return (
        "\n## (c) Quality: 8gaussians -> moons, torchcfm tutorial settings\n\n"
        "MLP 3x64 SELU, Adam 1e-3, sigma 0.1, minibatch 256, the same steps. Large Sinkhorn: "
        "each round pairs a fresh global batch, then fits steps / rounds steps on minibatches of "
        "those pairs (fm.training.fit(paired=True)). W2: exact, 2,000 dopri5 samples (rtol = atol "
        "= 1e-4) vs 2,000 fresh target points. Train s: wall time, compilation and pairings "
        f"included. Commands: {_commands(q)}.\n\n" + h.markdown_table(header, cells) + "\n"
    )


def plot(ctx, rows) -> None:
    pairing = [r for r in rows if r.get("part") == "pairing" and r.get("cost")]
    h.write_plot(ctx.file("png"), pairing, "n", "cost", ["eps_rel"], title="cost per pair of the pairing",
                 xlabel="points", ylabel="mean squared distance", logy=False)


SUITE = h.Suite(
    plot=plot,
    name="large_sinkhorn",
    title="Large-batch Sinkhorn couplings (online cost): transport cost, time, memory, quality",
    doc=__doc__,
    cases=cases,
    run_case=run_case,
    columns=COLUMNS,
    preamble=preamble,
    flags=flags,
    quick=QUICK,
    peak=False,
    quick_file=True,
    setup=setup,
    history=history,
    table_rows=table_rows,
    extra_md=extra_md,
)

if __name__ == "__main__":
    h.main(SUITE)
