"""Few-step generation on 2D tasks: W2 at 1, 2 and 4 NFE for MeanFlow, shortcut, consistency,
reflow and CFM / OT-CFM with Euler, against the multi-step OT-CFM of the same network and budget.

Run:

    .venv/bin/python -m benchmarks.bench_fewstep [--quick] [--steps N] [--seeds 0 1 2]
        [--tasks "8gaussians->moons" ...] [--methods mf-ot ot-cfm ...] [--hidden 256 256 256]

``--quick``: a smoke test (8gaussians -> moons, seed 0, OT-CFM and MeanFlow-OT, 50 steps, 300
evaluation points); ``--methods`` widens it.

Tasks: N(0, I) -> moons, 8gaussians -> moons, N(0, I) -> checkerboard (``fm.data``'s samplers;
fresh batches every step).

Methods (one network for all: ``fm.models.MLP``, ``--hidden`` SiLU layers, 3 x 256 by default,
two time inputs for MeanFlow and shortcut; straight path ``CondOTPath()``; Adam ``--lr``,
cosine-decayed to 0 over the run (``--schedule constant``: no decay), batch ``--batch``,
``--steps`` optimiser steps each; ``--ema`` evaluates the parameter EMA instead):

* ``mf-indep`` / ``mf-ot``: ``MeanFlowObjective`` (``--mf-ratio``, ``--mf-power``, ``--mf-eps``;
  time sampler uniform or ``LogitNormalTime(--mf-time-loc, --mf-time-scale)``) with independent /
  exact-OT minibatch pairs; sampled with ``fm.sampling.sample_few_step`` (K jumps).
* ``shortcut``: ``ShortcutObjective`` (OT pairs); K jumps of size 1/K.
* ``consistency``: ``ConsistencyObjective`` (OT pairs, one-time model F(x, t));
  ``sample_few_step`` on ``lambda x, t, r: F(x, t)``.
* ``cfm`` (I-CFM, which is 1-RF) and ``ot-cfm``: ``CFMObjective``; K Euler steps. OT-CFM is also
  solved with dopri5 (rtol = atol = 1e-5): the multi-step reference.
* ``2-rf``: one rectification of the same seed's ``cfm`` model: ``--pairs`` pairs from its dopri5
  flow (``fm.reflow.generate_pairs``), ``fm.reflow.reflow`` warm-started from its parameters for
  another ``--steps`` steps. Its budget is the CFM's plus the pairs plus the reflow (the table
  shows the total).

Evaluation: per task, ``--eval-draws`` fixed sets of ``--eval`` source points (the same for every
method and seed) and one fixed set of ``--eval`` target points; exact W2 (``fm.metrics.wasserstein``)
between the K-NFE samples and the target points, K = 1, 2, 4, averaged over the source draws (each
draw's W2 is kept in the row). One draw is not enough on N(0, I) -> moons: the target is split
exactly 50/50 between the moons, and the share of 2,000 Gaussian points that a flow sends to each
moon varies by about 1% from draw to draw, which alone moves W2 by about 0.08 (a 2.3% imbalance
costs 0.24; the same OT-CFM model scored 0.16-0.36 on four draws). The floor: W2 between two independent
target samples of that size. Train time: wall time of the optimiser steps, compilation included
(``h.fit_timed``; the machine is shared, so the load is recorded).

Writes ``fewstep.jsonl`` (one line per task, method and seed; appended), ``fewstep.md`` (mean +- sd
over seeds, the MeanFlow-OT / multi-step OT-CFM ratio per task) and ``fewstep.png`` under
``RESULTS`` (``fewstep_quick.*`` with ``--quick``). The table keeps the newest row of every
(task, method, seed) run with the same settings, so ``--tasks`` / ``--methods`` reruns complete it.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from benchmarks import _harness as h

NAME = "fewstep"
TASKS = {  # name: (source toy set, target toy set)
    "N(0,I)->moons": ("gaussian", "moons"),
    "8gaussians->moons": ("8gaussians", "moons"),
    "N(0,I)->checkerboard": ("gaussian", "checkerboard"),
}
METHODS = {  # key: table label
    "cfm": "CFM (= 1-RF), Euler",
    "ot-cfm": "OT-CFM, Euler",
    "mf-indep": "MeanFlow, indep. pairs",
    "mf-ot": "MeanFlow, OT pairs",
    "shortcut": "shortcut, OT pairs",
    "consistency": "consistency, OT pairs",
    "2-rf": "2-RF (reflow of CFM), Euler",
}
NFE = (1, 2, 4)
REF_TOL = 1e-5
EVAL_KEYS = (10_001, 10_002, 10_003)  # source points, target points, second target sample (floor)


# -- one method -----------------------------------------------------------------------------------


def objective_and_coupling(method: str, args):
    """``(objective, coupling, time_sampler, two_time)`` of a method (not 2-RF)."""
    import flowjax_fm as fm

    ot, indep = fm.couplings.ExactOTCoupling(), fm.couplings.IndependentCoupling()
    uniform = fm.time_sampling.UniformTime()
    if method in ("mf-indep", "mf-ot"):
        power = None if args.mf_power < 0 else args.mf_power
        obj = fm.losses.MeanFlowObjective(ratio=args.mf_ratio, power=power, eps=args.mf_eps)
        ts = uniform if args.mf_time_scale is None else fm.time_sampling.LogitNormalTime(
            args.mf_time_loc, args.mf_time_scale)
        return obj, ot if method == "mf-ot" else indep, ts, True
    if method == "shortcut":
        return fm.losses.ShortcutObjective(), ot, uniform, True
    if method == "consistency":
        return fm.losses.ConsistencyObjective(), ot, uniform, False
    if method in ("cfm", "ot-cfm"):
        return fm.losses.CFMObjective(), ot if method == "ot-cfm" else indep, uniform, False
    raise ValueError(f"unknown method {method!r}")


def few_step_field(model, params, method: str):
    """``u(x, t, r)`` for ``fm.sampling.sample_few_step``: the two-time field itself, or a
    one-time field (CFM: Euler; consistency: the jump along F) that ignores ``r``."""
    import flowjax_fm as fm

    f = fm.training.make_vector_field(model, params)
    if getattr(model, "two_time", False):
        return f
    return lambda x, t, r: f(x, t)


def _mean_over_draws(per_draw: list) -> dict:
    """``{name: mean over source draws}`` plus ``{name_draws: [each draw]}`` (None if any failed)."""
    out = {}
    for name in per_draw[0]:
        vals = [d[name] for d in per_draw]
        out[name] = None if any(v is None for v in vals) else float(np.mean(vals))
        if len(vals) > 1 and name.startswith("w2"):
            out[name + "_draws"] = vals
    return out


def w2_few_step(u, x0s, x_ref) -> dict:
    import flowjax_fm as fm

    per_draw = []
    for x0 in x0s:
        out = {}
        for k in NFE:
            x = np.asarray(fm.sampling.sample_few_step(u, x0, num_steps=k).x)
            out[f"w2_nfe{k}"] = float(fm.metrics.wasserstein(x, x_ref)) if np.isfinite(x).all() else None
        per_draw.append(out)
    return _mean_over_draws(per_draw)


def w2_dopri5(field, x0s, x_ref) -> dict:
    import flowjax_fm as fm

    per_draw = []
    for x0 in x0s:
        res = fm.sampling.sample(field, x0, solver="dopri5", rtol=REF_TOL, atol=REF_TOL)
        per_draw.append({"w2_dopri5": float(fm.metrics.wasserstein(np.asarray(res.x), x_ref)),
                         "nfe_dopri5": int(res.nfe)})
    return _mean_over_draws(per_draw)


@functools.cache
def sampler(name: str):
    """One sampler object per toy set, so that ``fit`` finds its compiled chunks again."""
    import flowjax_fm as fm

    return fm.data.make_sampler(name)


@functools.cache
def adam(lr: float, steps: int, cosine: bool):
    """Adam at ``lr`` (cosine-decayed to 0 over ``steps`` with ``cosine``): one object per
    setting, since the train step holds it as a static part and ``fit`` reuses its compilation."""
    import optax

    return optax.adam(optax.cosine_decay_schedule(lr, steps) if cosine else lr)


def _model(two_time: bool, seed: int, args):
    from flax import nnx

    import flowjax_fm as fm

    return fm.models.MLP(2, tuple(args.hidden), activation="silu", two_time=two_time, rngs=nnx.Rngs(seed))


def _params(state, args):
    return state.ema if args.ema is not None else state.params


def train(task: str, method: str, seed: int, args):
    """Train one method on one task: ``(model, state, row)``."""
    import jax

    import flowjax_fm as fm

    src, tgt = (sampler(n) for n in TASKS[task])
    obj, coupling, ts, two = objective_and_coupling(method, args)
    model = _model(two, seed, args)
    opt = adam(args.lr, args.steps, args.schedule == "cosine")
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath(), coupling=coupling,
                                       objective=obj, time_sampler=ts, ema_decay=args.ema)
    state, hist, timing = h.fit_timed(step, fm.training.init_state(model, opt), jax.random.key(seed), src, tgt,
                                      steps=args.steps, batch=args.batch, chunk=min(args.chunk, args.steps))
    tail = np.asarray(hist["loss"][-min(100, len(hist["loss"])):])
    row = {"train_steps": args.steps, "total_steps": args.steps, "train_s": timing.train_s,
           "total_s": timing.train_s, "compile_s": timing.compile_s, "steps_per_s": timing.steps_per_s,
           "final_loss": float(tail.mean()), "load_after": h.load_avg()}
    return model, state, row


def reflow_once(task: str, seed: int, base, args):
    """2-RF from the seed's CFM run ``base = (model, state, row)``: pairs, then reflow."""
    import jax

    import flowjax_fm as fm

    model, state, base_row = base
    src = sampler(TASKS[task][0])
    k_pairs, k_reflow = jax.random.split(jax.random.key(50_000 + seed))
    field = fm.training.make_vector_field(model, _params(state, args))
    t = time.perf_counter()
    x0, x1 = fm.reflow.generate_pairs(field, k_pairs, src, args.pairs, batch_size=min(2000, args.pairs))
    x1 = jax.block_until_ready(x1)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    rf, hist = fm.reflow.reflow(model, k_reflow, x0, x1, num_steps=args.steps, batch_size=args.batch,
                                optimizer=adam(args.lr, args.steps, args.schedule == "cosine"), params=_params(state, args), ema_decay=args.ema,
                                chunk_size=min(args.chunk, args.steps))
    rf = jax.block_until_ready(rf)
    train_s = time.perf_counter() - t
    tail = np.asarray(hist["loss"][-min(100, len(hist["loss"])):])
    row = {"train_steps": args.steps, "total_steps": base_row["train_steps"] + args.steps, "train_s": train_s,
           "pairs": args.pairs, "pairs_s": pairs_s, "total_s": base_row["train_s"] + pairs_s + train_s,
           "compile_s": None, "steps_per_s": args.steps / train_s, "final_loss": float(tail.mean()),
           "load_after": h.load_avg()}
    return model, rf, row


# -- the suite ------------------------------------------------------------------------------------


def eval_sets(ctx, task: str):
    """The task's fixed evaluation points ``(x0, x_ref)`` and its W2 floor (cached)."""
    import jax

    import flowjax_fm as fm

    if task not in ctx.data["eval"]:
        n = ctx.args.eval
        src, tgt = TASKS[task]
        # several source draws: on N(0, I) -> moons the score hangs on how one draw of 2,000
        # Gaussian points splits between the two moons (a 1% imbalance alone costs W2 0.08)
        x0 = [fm.data.sample_toy(src, jax.random.key(EVAL_KEYS[0] + 1000 * j), n)
              for j in range(ctx.args.eval_draws)]
        x_ref = np.asarray(fm.data.sample_toy(tgt, jax.random.key(EVAL_KEYS[1]), n))
        other = np.asarray(fm.data.sample_toy(tgt, jax.random.key(EVAL_KEYS[2]), n))
        ctx.data["eval"][task] = (x0, x_ref, float(fm.metrics.wasserstein(x_ref, other)))
    return ctx.data["eval"][task]


def setup(ctx) -> None:
    ctx.data["eval"] = {}
    ctx.data["cfm"] = {}


def methods(args) -> list[str]:
    """The requested methods in run order; 2-RF needs (and brings) the seed's CFM run."""
    want = set(args.methods) | ({"cfm"} if "2-rf" in args.methods else set())
    return [m for m in METHODS if m in want]


def cases(ctx):
    for task in ctx.args.tasks:
        for seed in ctx.args.seeds:
            for method in methods(ctx.args):
                yield {"task": task, "seed": seed, "method": method}


def run_case(ctx, case) -> dict:
    a, task, seed, method = ctx.args, case["task"], case["seed"], case["method"]
    x0, x_ref, floor = eval_sets(ctx, task)
    if method == "2-rf":
        model, state, row = reflow_once(task, seed, ctx.data["cfm"].pop((task, seed)), a)
    else:
        model, state, row = train(task, method, seed, a)
        if method == "cfm" and "2-rf" in a.methods:
            ctx.data["cfm"][(task, seed)] = (model, state, row)
    params = _params(state, a)
    t = time.perf_counter()
    row.update(w2_few_step(few_step_field(model, params, method), x0, x_ref))
    if method in ("ot-cfm", "cfm"):
        import flowjax_fm as fm

        row.update(w2_dopri5(fm.training.make_vector_field(model, params), x0, x_ref))
    row["eval_s"] = time.perf_counter() - t
    return {"suite": NAME, **case, "label": METHODS[method], "w2_floor": floor, "command": ctx.command,
            **settings(a), **row}


def settings(args) -> dict:
    """What makes runs comparable (the table only mixes rows with equal settings)."""
    return {"steps": args.steps, "batch": args.batch, "lr": args.lr, "schedule": args.schedule, "hidden": list(args.hidden),
            "ema": args.ema, "eval": args.eval, "pairs": args.pairs, "mf_ratio": args.mf_ratio,
            "mf_power": args.mf_power, "mf_eps": args.mf_eps, "mf_time_loc": args.mf_time_loc,
            "mf_time_scale": args.mf_time_scale, "eval_draws": args.eval_draws}


def flags(ap) -> None:
    ap.add_argument("--steps", type=int, default=2000, help="optimiser steps per method (2-RF: again on top)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256], help="MLP widths (SiLU)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam step, every method")
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                    help="Adam step: cosine-decayed from --lr to 0 over the run, or constant")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ema", type=float, default=None, help="EMA decay; evaluate the EMA parameters")
    ap.add_argument("--eval", type=int, default=2000, help="generated and target points per W2")
    ap.add_argument("--eval-draws", type=h.positive_int, default=5,
                    help="source draws per score: W2 is the mean over them (the target points stay fixed)")
    ap.add_argument("--pairs", type=int, default=10_000, help="2-RF: dopri5 pairs from the CFM flow")
    ap.add_argument("--chunk", type=int, default=500, help="steps per compiled chunk")
    ap.add_argument("--mf-ratio", type=float, default=0.25, help="MeanFlow: fraction with r != t")
    ap.add_argument("--mf-power", type=float, default=0.5, help="MeanFlow adaptive weight power (< 0: off)")
    ap.add_argument("--mf-eps", type=float, default=1e-3, help="MeanFlow adaptive weight c")
    ap.add_argument("--mf-time-loc", type=float, default=0.0, help="MeanFlow logit-normal time loc")
    ap.add_argument("--mf-time-scale", type=float, default=None,
                    help="MeanFlow logit-normal time scale (default: uniform times)")


def history(ctx, rows):
    """The newest row of every (task, method, seed) run with this run's settings."""
    want = settings(ctx.args)
    keep = [r for r in rows if r.get("suite") == NAME and r.get("quick") == ctx.quick
            and all(r.get(k, 1 if k == "eval_draws" else None) == v for k, v in want.items())]
    return h.latest(keep, lambda r: (r["task"], r["method"], r["seed"]))


def table_rows(ctx, rows):
    out = []
    for task in TASKS:
        for method in METHODS:
            rs = [r for r in rows if (r["task"], r["method"]) == (task, method)]
            if rs:
                out.append({"task": task, "method": method, "rows": rs})
    return out


def _w2(t, key):
    return h.mean_sd(r.get(key) for r in t["rows"])


def _failed(t, key):
    bad = sum(r.get(key) is None for r in t["rows"])
    return f" ({bad} non-finite)" if bad else ""


COLUMNS = [
    ("task", lambda t: t["task"]), ("method", lambda t: METHODS[t["method"]]), ("seeds", lambda t: len(t["rows"])),
    *((f"W2 {k} NFE", lambda t, k=k: _w2(t, f"w2_nfe{k}") + _failed(t, f"w2_nfe{k}")) for k in NFE),
    ("W2 dopri5 (NFE)", lambda t: "-" if t["rows"][0].get("w2_dopri5") is None else
     f"{_w2(t, 'w2_dopri5')} ({h.mean_of(t['rows'], 'nfe_dopri5'):.0f})"),
    ("train steps", lambda t: t["rows"][0]["total_steps"]),
    ("train s", lambda t: f"{h.mean_of(t['rows'], 'total_s'):.0f}"),
    ("final loss", lambda t: f"{h.mean_of(t['rows'], 'final_loss'):.3g}"),
]


def preamble(ctx, rows) -> str:
    r0 = rows[0]
    floors = "; ".join(f"{t} {next(r['w2_floor'] for r in rows if r['task'] == t):.3f}"
                       for t in TASKS if any(r["task"] == t for r in rows))
    ema = "raw parameters" if r0["ema"] is None else f"EMA {r0['ema']} parameters"
    mf_t = ("uniform" if r0["mf_time_scale"] is None
            else f"logit-normal({r0['mf_time_loc']}, {r0['mf_time_scale']})")
    power = "off" if r0["mf_power"] < 0 else r0["mf_power"]
    return (
        f"{h.env_line(ctx.env, ctx.threads)}; 1-minute load after each training "
        f"{min(r['load_after'] for r in rows):.1f}-{max(r['load_after'] for r in rows):.1f} (2 cores shared "
        f"with other jobs: times are indicative). Every method: MLP {'x'.join(map(str, r0['hidden']))} SiLU, CondOTPath, Adam "
        f"{r0['lr']}{' cosine-decayed to 0' if r0['schedule'] == 'cosine' else ''}, batch {r0['batch']}, "
        f"{r0['steps']} steps, {ema}. MeanFlow: ratio {r0['mf_ratio']}, "
        f"adaptive power {power}, eps {r0['mf_eps']}, times {mf_t}. Exact W2 between {r0['eval']} "
        f"samples and {r0['eval']} fixed target points, averaged over {r0.get('eval_draws', 1)} fixed "
        f"source draws per task (the same for every method and seed); mean +- sd over "
        f"seeds. Floor (two target samples): {floors}. K NFE: K jumps of the average-velocity field "
        f"(MeanFlow, shortcut), K steps along the consistency prediction, K Euler steps (CFM, OT-CFM, "
        f"2-RF). dopri5: rtol = atol = {REF_TOL:g} (OT-CFM: the multi-step reference). 2-RF: "
        f"{r0['pairs']} dopri5 pairs of the CFM flow, reflow warm-started for {r0['steps']} more steps: "
        f"its train steps and seconds are the total (CFM + pairs + reflow). Train s: wall time, "
        f"compilation included (the first seed of a task compiles; later seeds reuse it). Command: "
        f"{'; '.join(sorted({r.get('command') or ctx.command for r in rows}))}."
    )


def _by(rows, task, method):
    return {r["seed"]: r for r in rows if (r["task"], r["method"]) == (task, method)}


def extra_md(ctx, rows) -> str:
    lines = []
    for task in TASKS:
        mf, ref = _by(rows, task, "mf-ot"), _by(rows, task, "ot-cfm")
        if not mf or not ref:
            continue
        ratios = [mf[s]["w2_nfe1"] / ref[s]["w2_dopri5"] for s in mf if s in ref and mf[s]["w2_nfe1"] is not None]
        mean_mf = h.mean_of(mf.values(), "w2_nfe1")
        mean_ref = h.mean_of(ref.values(), "w2_dopri5")
        cells = [task, h.fmt(mean_mf, ".3f"), f"{mean_ref:.3f}",
                 h.fmt(None if mean_mf is None else mean_mf / mean_ref, ".2f"),
                 ", ".join(f"{x:.2f}" for x in ratios) or "-"]
        for other, key in (("ot-cfm", "w2_nfe1"), ("2-rf", "w2_nfe1")):
            o = _by(rows, task, other)
            both = [s for s in mf if s in o and mf[s]["w2_nfe1"] is not None and o[s].get(key) is not None]
            if not both:
                cells.append("-")
                continue
            wins = sum(mf[s]["w2_nfe1"] < o[s][key] for s in both)
            mean_o = float(np.mean([o[s][key] for s in both]))
            mean_m = float(np.mean([mf[s]["w2_nfe1"] for s in both]))
            cells.append(f"{'yes' if mean_m < mean_o else 'no'} ({mean_m:.3f} vs {mean_o:.3f}; "
                         f"{wins}/{len(both)} seeds)")
        lines.append(cells)
    if not lines:
        return ""
    return ("\n## MeanFlow (OT pairs) at 1 NFE against the multi-step OT-CFM\n\n"
            "Ratio: mean MeanFlow-OT 1-NFE W2 / mean OT-CFM dopri5 W2 (the acceptance asks <= 1.3 on the two "
            "moons tasks); per seed: each seed's ratio. Beats: mean 1-NFE W2 lower (and in how many seeds).\n\n"
            + h.markdown_table(["task", "MeanFlow-OT W2 1 NFE", "OT-CFM dopri5 W2", "ratio", "ratio per seed",
                                "beats OT-CFM Euler 1", "beats 2-RF at 1 NFE"], lines))


def plot(ctx, rows) -> None:
    points = []
    for t in table_rows(ctx, rows):
        for k in NFE:
            w = h.mean_of(t["rows"], f"w2_nfe{k}")
            if w is not None:
                points.append({"task": t["task"], "method": METHODS[t["method"]], "nfe": k, "w2": w})
    h.write_plot(ctx.file("png"), points, "nfe", "w2", ["method"], panels="task", title="W2 vs NFE (mean)",
                 xlabel="NFE", ylabel="W2 to target", logx=False)


SUITE = h.Suite(
    name=NAME, title="Few-step generation: W2 at 1, 2, 4 NFE, 2D", doc=__doc__, cases=cases, run_case=run_case,
    columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"steps": 50, "seeds": [0], "tasks": ["8gaussians->moons"], "methods": ["ot-cfm", "mf-ot"], "eval": 300,
           "pairs": 1000, "chunk": 25, "eval_draws": 2},
    quick_file=True, pin=True, peak=False, setup=setup, history=history, table_rows=table_rows,
    extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
