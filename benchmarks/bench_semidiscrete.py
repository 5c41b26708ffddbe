"""Semidiscrete OT pairing (SD-FM) against minibatch OT and independent pairing on 2D tasks.

Run (one core, one thread):

    .venv/bin/python -m benchmarks.bench_semidiscrete [--quick] [--seeds 0 1 2] [--steps 10000]
        [--parts cost time quality]

Tasks: N(0, I) -> moons and 8gaussians -> moons, the data set being N = 10,000 moons points
drawn once (``fm.data.sample_toy``, key 1); every method trains on that same array. The
potential is learned once per task and epsilon by ``fm.couplings.fit_semidiscrete`` (ott-jax's
``SemidiscreteSolver``, Adam with a cosine-decayed step, batch 256), hard (``epsilon = 0``) and
entropic (``epsilon = 0.01``, squared-distance units); its check assigns 2^17 fresh source
points (``coupling.info``: chi^2 and total variation of the assigned-row histogram against
uniform, with the TV an exact potential shows at that sample size, the dual value, the cost).

(a) Transport cost per pair, over 10 batches of B noise points from the task's source
(B = 256, 1024): the semidiscrete pairing (``coupling.assign``); the exact OT between the same
noise and the very rows SD picked (the best any pairing of that multiset can do); minibatch
exact OT with a fresh data batch (what OT-CFM trains on); the independent pairing of that batch
(I-CFM). Ratios are to the exact OT between N source points and the whole data set (mean of
``--ref-draws`` 3 source draws): the large-batch estimate of W2^2(source, data), biased up by
the source sampling (the potential's dual value is a lower bound).

(b) Pairing time per step: ``jit(coupling.assign)`` against ``jit(squared distances +
solve_assignment)`` (the exact solve of OT-CFM) on the same batch, taking turns, medians.

(c) Quality: torchcfm's 2D tutorial model and path (MLP 3x64 SELU, Gaussian path sigma 0.1,
Adam 1e-3, batch 256), ``--steps`` steps with ``fm.training.fit``: I-CFM, OT-CFM
(``ExactOTCoupling``) and SD (hard, entropic; ``transform=coupling.transform``). W2: exact,
2,000 generated points (dopri5 through ``fm.sampling.sample``, rtol = atol = 1e-4) against
2,000 fresh moons points (the population, not the training set). Train time includes
compilation; SD's potential fit is reported apart (its column).

Writes ``RESULTS/semidiscrete.{jsonl,md,png}`` (``semidiscrete_quick.*`` with ``--quick``); the
table holds the newest row of every case in the JSON lines, so ``--parts cost`` (the potentials
are always fitted first) reruns one part and keeps the others.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import _harness as h

N_DATA = 10_000
TASKS = {"N(0,I)->moons": None, "8gaussians->moons": "8gaussians"}
SD_METHODS = {"SD hard": 0.0, "SD eps=0.01": 0.01}
METHODS = ("I-CFM", "OT-CFM", *SD_METHODS)


def _source(name):
    import jax

    import flowjax_fm as fm

    if name is None:
        return lambda k, n: jax.random.normal(k, (n, 2))
    return lambda k, n: fm.data.sample_toy(name, k, n)


def setup(ctx) -> None:
    import jax

    import flowjax_fm as fm

    ctx.data["data"] = fm.data.sample_toy("moons", jax.random.key(1), ctx.args.n_data)
    ctx.data["couplings"] = {}


def cases(ctx):
    a = ctx.args
    parts = set(a.parts)
    for task in TASKS:  # the potentials: every other part uses them
        for method, eps in SD_METHODS.items():
            yield {"part": "fit", "task": task, "method": method, "epsilon": eps}
    for task in TASKS if "cost" in parts else ():
        for b in a.batches:
            yield {"part": "cost", "task": task, "batch": b}
    for b in a.batches if "time" in parts else ():
        yield {"part": "time", "task": "N(0,I)->moons", "batch": b}
    for task in TASKS if "quality" in parts else ():
        for method in METHODS:
            for seed in a.seeds:
                yield {"part": "quality", "task": task, "method": method, "seed": seed}


# -- the potential ---------------------------------------------------------------------------


def run_fit(ctx, case) -> dict:
    import jax

    import flowjax_fm as fm

    a = ctx.args
    sd = fm.couplings.fit_semidiscrete(
        jax.random.key(0), ctx.data["data"], epsilon=case["epsilon"], num_steps=a.fit_steps,
        batch_size=256, learning_rate=a.lr, source=None if TASKS[case["task"]] is None
        else _source(TASKS[case["task"]]), num_check=a.num_check)
    ctx.data["couplings"][(case["task"], case["method"])] = sd
    i = sd.info
    return {"fit_steps": i.num_steps, "fit_batch": i.batch_size, "lr": i.learning_rate, "fit_s": i.fit_s,
            "check_s": i.check_s, "num_check": i.num_check, "chi2": i.marginal_chi2, "tv": i.marginal_tv,
            "tv_floor": i.marginal_tv_floor, "max_rel": i.marginal_max, "dual": i.dual,
            "sd_cost": i.transport_cost, "solver_chi2": i.solver_chi2}


# -- (a) transport cost ----------------------------------------------------------------------


def _exact_cost(x0, x1) -> float:
    import jax

    import flowjax_fm as fm

    cost = fm.couplings.squared_distances(x0, x1)
    perm = jax.jit(fm.couplings.solve_assignment)(cost)
    return float(cost[np.arange(len(perm)), np.asarray(perm)].mean())


def reference_w2sq(ctx, task) -> float:
    """Exact OT between ``--ref`` source points and as many data rows drawn without replacement
    (the whole data set by default), averaged over ``--ref-draws`` source samples."""
    import jax

    key = ("ref", task)
    if key not in ctx.data:
        data = ctx.data["data"]
        n = min(ctx.args.ref or data.shape[0], data.shape[0])
        costs = []
        for r in range(ctx.args.ref_draws):
            x0 = _source(TASKS[task])(jax.random.key(101 + r), n)
            rows = jax.random.choice(jax.random.key(201 + r), data.shape[0], (n,), replace=False)
            costs.append(_exact_cost(x0, data[rows]))
        ctx.data[key] = (float(np.mean(costs)), n)
    return ctx.data[key]


def run_cost(ctx, case) -> dict:
    import jax
    import jax.numpy as jnp

    data = ctx.data["data"]
    b, src = case["batch"], _source(TASKS[case["task"]])
    ref, ref_n = reference_w2sq(ctx, case["task"])
    sums: dict[str, list[float]] = {}
    for r in range(ctx.args.cost_batches):
        k0, k1, k2 = jax.random.split(jax.random.key(1000 + r), 3)
        x0 = src(k0, b)
        fresh = data[jax.random.choice(k1, data.shape[0], (b,), replace=False)]
        sums.setdefault("ot_cost", []).append(_exact_cost(x0, fresh))
        sums.setdefault("indep_cost", []).append(float(jnp.sum((x0 - fresh) ** 2, axis=1).mean()))
        for method in SD_METHODS:
            sd = ctx.data["couplings"][(case["task"], method)]
            x1 = data[jax.jit(sd.assign)(k2, x0)]
            tag = "sd_hard" if SD_METHODS[method] == 0 else "sd_soft"
            sums.setdefault(f"{tag}_cost", []).append(float(jnp.sum((x0 - x1) ** 2, axis=1).mean()))
            sums.setdefault(f"{tag}_resolved", []).append(_exact_cost(x0, x1))
    row = {k: float(np.mean(v)) for k, v in sums.items()}
    row.update({f"{k}_ratio": v / ref for k, v in list(row.items())})
    return {**row, "ref_w2sq": ref, "ref_n": ref_n, "ref_draws": ctx.args.ref_draws,
            "cost_batches": ctx.args.cost_batches}


# -- (b) pairing time --------------------------------------------------------------------------


def run_time(ctx, case) -> dict:
    import jax

    import flowjax_fm as fm

    data, b = ctx.data["data"], case["batch"]
    x0 = jax.random.normal(jax.random.key(7), (b, 2))
    x1 = data[:b]
    key = jax.random.key(8)
    ot = jax.jit(lambda a, c: fm.couplings.solve_assignment(fm.couplings.squared_distances(a, c)))
    calls = {"ot": lambda: ot(x0, x1)}
    for method in SD_METHODS:
        sd = ctx.data["couplings"][(case["task"], method)]
        f = jax.jit(sd.assign)
        calls["sd_hard" if SD_METHODS[method] == 0 else "sd_soft"] = lambda f=f: f(key, x0)
    t = h.time_interleaved(calls, ctx.repeats)
    out = {f"{k}_ms": v.median_s * 1e3 for k, v in t.items()}
    out.update({f"{k}_compile_s": v.compile_s for k, v in t.items()})
    return out


# -- (c) quality ---------------------------------------------------------------------------------


def run_quality(ctx, case) -> dict:
    import jax
    import optax
    from flax import nnx

    import flowjax_fm as fm

    a, data = ctx.args, ctx.data["data"]
    src_name = TASKS[case["task"]]
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(case["seed"]))
    opt = optax.adam(1e-3)
    coupling, transform, fit_s = fm.couplings.IndependentCoupling(), None, None
    if case["method"] == "OT-CFM":
        coupling = fm.couplings.ExactOTCoupling()
    elif case["method"] in SD_METHODS:
        sd = ctx.data["couplings"][(case["task"], case["method"])]
        transform, fit_s = sd.transform, sd.info.fit_s
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.GaussianPath(sigma=0.1),
                                       coupling=coupling)
    source = None if src_name is None else _source(src_name)
    state, _, timing = h.fit_timed(step, fm.training.init_state(model, opt), jax.random.key(case["seed"]),
                                   source, data, steps=a.steps, batch=256, chunk=a.chunk, transform=transform)
    k0, k1 = jax.random.split(jax.random.key(10_000 + case["seed"]))
    x0 = _source(src_name)(k0, a.eval)
    field = fm.training.make_vector_field(model, state.params)
    start = time.perf_counter()
    res = fm.sampling.sample(field, x0, solver="dopri5", rtol=1e-4, atol=1e-4)
    x_gen = np.asarray(res.x)
    sample_s = time.perf_counter() - start
    x_ref = np.asarray(fm.data.sample_toy("moons", k1, a.eval))
    return {"steps": a.steps, "w2": float(fm.metrics.wasserstein(x_gen, x_ref)), "nfe": int(res.nfe),
            "train_s": timing.train_s, "steps_per_s": timing.steps_per_s, "sample_s": sample_s,
            "potential_fit_s": fit_s, "eval": a.eval}


PARTS = {"fit": run_fit, "cost": run_cost, "time": run_time, "quality": run_quality}


def run_case(ctx, case) -> dict:
    row = PARTS[case["part"]](ctx, case)
    return {"suite": "semidiscrete", "n_data": ctx.args.n_data, "command": ctx.command, **case, **row}


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--steps", type=int, default=10_000, help="training steps per quality run")
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--n-data", type=int, default=N_DATA)
    ap.add_argument("--fit-steps", type=int, default=3000, help="SGD steps of the potential")
    ap.add_argument("--lr", type=float, default=0.05, help="the potential's Adam step")
    ap.add_argument("--num-check", type=int, default=2**17)
    ap.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    ap.add_argument("--cost-batches", type=int, default=10)
    ap.add_argument("--ref", type=int, default=None, help="size of the exact-OT reference (default: N)")
    ap.add_argument("--ref-draws", type=int, default=3, help="source samples averaged in the reference")
    ap.add_argument("--parts", nargs="*", default=["cost", "time", "quality"],
                    choices=["cost", "time", "quality"],
                    help="which parts to run after the potentials (the table keeps the newest row of each)")


# -- tables --------------------------------------------------------------------------------------


def history(ctx, rows):
    """The newest row of every (part, task, method, batch, seed) at this data size (and, for the
    quality runs, at ``--steps``): a partial rerun (``--parts cost``) completes the table."""
    a = ctx.args
    keep = (r for r in rows if r.get("suite") == "semidiscrete" and r.get("n_data") == a.n_data
            and (r["part"] != "quality" or r.get("steps") == a.steps))
    return h.latest(keep, lambda r: (r["part"], r["task"], r.get("method"), r.get("batch"), r.get("seed")))


def table_rows(ctx, rows):
    out = []
    for task in TASKS:
        for method in METHODS:
            rs = [r for r in rows if r["part"] == "quality" and (r["task"], r["method"]) == (task, method)]
            if rs:
                out.append({"task": task, "method": method, "rows": rs})
    return out


COLUMNS = [
    ("task", lambda t: t["task"]), ("method", lambda t: t["method"]), ("seeds", lambda t: len(t["rows"])),
    ("W2 (mean +- sd)", lambda t: h.mean_sd(r["w2"] for r in t["rows"])),
    ("NFE (dopri5)", lambda t: f"{h.mean_of(t['rows'], 'nfe'):.0f}"),
    ("train s", lambda t: f"{h.mean_of(t['rows'], 'train_s'):.0f}"),
    ("steps/s", lambda t: h.fmt(h.mean_of(t["rows"], "steps_per_s"), ".0f")),
    ("potential fit s", lambda t: h.fmt(h.mean_of(t["rows"], "potential_fit_s"), ".0f")),
]


def preamble(ctx, rows) -> str:
    q = [r for r in rows if r["part"] == "quality"]
    steps = q[0]["steps"] if q else "-"
    return (f"{h.env_line(ctx.env, ctx.threads)}. Data: {ctx.args.n_data:,} moons points drawn once; "
            f"every method trains on them ({steps} steps, batch 256, MLP 3x64 SELU, Gaussian path "
            "sigma 0.1, Adam 1e-3). W2: exact, generated vs fresh moons points "
            f"({ctx.args.eval:,} each); NFE: dopri5 at rtol = atol = 1e-4. Train s includes compilation; "
            f"the potential's fit (ott-jax) is apart. Rows: the newest of each case in {ctx.name}.jsonl, "
            f"from {' and '.join(sorted({r.get('command', '(not recorded)') for r in rows}))}.")


def extra_md(ctx, rows) -> str:
    fits = [r for r in rows if r["part"] == "fit"]
    costs = [r for r in rows if r["part"] == "cost"]
    times = [r for r in rows if r["part"] == "time"]
    parts = []
    if fits:
        parts.append(
            "\n## The potentials (fit_semidiscrete, batch 256)\n\n"
            f"Checked on {fits[0]['num_check']:,} fresh source points: chi2 (unbiased, 0 at the optimum), "
            "TV of the assigned-row histogram against uniform, next to the TV an exact potential shows at "
            "that sample size, the worst row's relative share error, the dual value (<= W2^2 in expectation) "
            "and the cost of the pairs.\n\n" + h.markdown_table(
                ["task", "method", "steps", "fit s", "chi2", "TV", "TV floor", "max rel", "dual", "pair cost"],
                [[r["task"], r["method"], r["fit_steps"], f"{r['fit_s']:.0f}", f"{r['chi2']:.3f}", f"{r['tv']:.3f}",
                  f"{r['tv_floor']:.3f}", f"{r['max_rel']:.2f}", f"{r['dual']:.4f}", f"{r['sd_cost']:.4f}"]
                 for r in fits]))
    if costs:
        parts.append(
            "\n## (a) Transport cost per pair (ratio to the reference W2^2)\n\n"
            f"Reference: exact OT between {costs[0]['ref_n']:,} source points and {costs[0]['ref_n']:,} data rows "
            f"(mean of {costs[0].get('ref_draws', 1)} source draws; biased up by the source sampling, the SD "
            "dual above is a lower bound). "
            f"Mean over {costs[0]['cost_batches']} noise batches. SD: the semidiscrete pairs; SD re-solved: exact "
            "OT between the same noise and the rows SD picked; minibatch OT: exact OT with a fresh data batch "
            "(OT-CFM); independent: that batch as drawn (I-CFM).\n\n" + h.markdown_table(
                ["task", "B", "W2^2 ref", "SD hard", "SD hard re-solved", "SD eps=0.01", "SD eps re-solved",
                 "minibatch OT", "independent"],
                [[r["task"], r["batch"], f"{r['ref_w2sq']:.4f}",
                  *(f"{r[k]:.4f} ({r[k + '_ratio']:.3f})" for k in
                    ("sd_hard_cost", "sd_hard_resolved", "sd_soft_cost", "sd_soft_resolved", "ot_cost",
                     "indep_cost"))] for r in costs]))
    if times:
        parts.append(
            "\n## (b) Pairing time per step (ms, median; compile apart)\n\n" + h.markdown_table(
                ["B", "SD hard assign", "SD eps=0.01 assign", "exact OT (cost + solve_assignment)",
                 "OT / SD hard"],
                [[r["batch"], f"{r['sd_hard_ms']:.2f}", f"{r['sd_soft_ms']:.2f}", f"{r['ot_ms']:.2f}",
                  f"{r['ot_ms'] / r['sd_hard_ms']:.1f}x"] for r in times]))
    return "\n".join(parts)


def plot(ctx, rows) -> None:
    points = [{"task": t["task"], "method": t["method"], "nfe": h.mean_of(t["rows"], "nfe"),
               "w2": h.mean_of(t["rows"], "w2")} for t in table_rows(ctx, rows)]
    h.write_plot(ctx.file("png"), points, "nfe", "w2", ["method"], title="W2 vs NFE", panels="task",
                 xlabel="NFE (dopri5, tol 1e-4)", ylabel="W2 to moons", logx=False, logy=False)


SUITE = h.Suite(
    name="semidiscrete", title="Semidiscrete pairing (SD-FM) vs minibatch OT and I-CFM, 2D", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags, repeats=(30, 5),
    quick={"steps": 200, "eval": 300, "chunk": 100, "n_data": 2000, "fit_steps": 100, "num_check": 4096,
           "batches": [256], "cost_batches": 2, "ref": 512, "ref_draws": 1},
    quick_file=True, pin=True, peak=False, setup=setup, history=history, table_rows=table_rows,
    extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
