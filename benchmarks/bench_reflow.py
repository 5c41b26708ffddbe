"""Reflow and distillation on 8gaussians -> moons: W2 of few-step Euler sampling before and after.

Run:

    .venv/bin/python -m benchmarks.bench_reflow [--quick] [--seeds 0] [--base-steps 10000]

1. Base flow: I-CFM as in ``bench_quality`` (MLP 3x64 SELU, Adam 1e-3, batch 256,
   GaussianPath(0.1), independent coupling), ``--base-steps`` steps: the main job,
   ``fm.experiments.train_and_evaluate`` on ``configs/torchcfm_tutorial.json``.
2. Reflow: ``--pairs`` pairs (x0, ODE(x0)) from the base flow (dopri5, rtol = atol = 1e-5),
   ``fm.reflow.reflow`` warm-started from the base parameters, ``--reflow-steps`` steps.
3. Distillation: fresh pairs from the reflowed flow, ``fm.reflow.distill`` to 1 Euler step,
   warm-started from the reflowed parameters, ``--distill-steps`` steps.

Evaluation (every stage, the same 2,000 source points and 2,000 fresh moons points): exact W2
of Euler sampling with 1, 2, 4 and 100 steps and of adaptive dopri5 (rtol = atol = 1e-4), its
NFE, and straightness / curvature / path energy (``fm.metrics.evaluate``).

Timing: each stage's training wall time (compilation included). How close training runs to the
machine's limit: XLA's FLOP count of one train step (batch 256; the base I-CFM step, and the
straight-path step for reflow, also used for distillation, whose step differs only in its time
sampler) x steps / training time, against a 2048^2 float32 matmul measured in the same run.

Writes ``reflow.jsonl`` (appended), ``reflow.md`` and ``reflow.png`` (W2 against NFE per stage)
under ``RESULTS`` (``reflow_quick.*`` with ``--quick``; ``FLOWJAX_FM_BENCH_RESULTS``
redirects). ``--render`` rewrites the md and png from the newest run in the JSON lines.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

import flowjax_fm as fm
from benchmarks import _harness as h
from flowjax_fm import experiments as ex

EULER = (1, 2, 4, 100)
STAGES = ("base (I-CFM)", "1-reflow", "1-reflow + distill (k=1)")


def evaluate(field, x0, x_ref) -> dict:
    out = {}
    for k in EULER:
        x = fm.sampling.sample(field, x0, solver="euler", num_steps=k).x
        out[f"w2_euler{k}"] = float(fm.metrics.wasserstein(np.asarray(x), x_ref))
    r = fm.metrics.evaluate(field, x0, x_ref, solver="dopri5", rtol=1e-4, atol=1e-4)
    out.update(w2_dopri5=r["w2"], nfe_dopri5=r["nfe"], mmd=r["mmd"], straightness=r["straightness"],
               curvature=r["curvature"], path_energy=r["path_energy"])
    return out


def base_config(seed: int, steps: int):
    return h.experiment_config("torchcfm_tutorial", {"coupling": "independent", "seed": seed, "steps": steps})


def reflow_flops(model) -> float | None:
    """XLA's FLOP count of one reflow train step (batch 256: straight path, identity pairing)."""
    opt = optax.adam(1e-3)
    state = fm.training.init_state(model, opt)
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x0 = fm.data.make_sampler("8gaussians")(k0, 256)
    x1 = fm.data.make_sampler("moons")(k1, 256)
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath(0.0),
                                       coupling=fm.couplings.IndependentCoupling())
    return h.compiled_flops(lambda s, k: step(s, k, x0, x1), state, k2)


def stages(seed: int, args) -> list[dict]:
    """Train and evaluate the three stages of one seed."""
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    _, k_pairs, k_reflow, k_pairs2, k_distill, k_e0, k_e1 = jax.random.split(jax.random.key(seed), 7)
    x0_eval = src(k_e0, args.eval)
    x_ref = np.asarray(tgt(k_e1, args.eval))

    cfg = base_config(seed, args.base_steps)
    t = time.perf_counter()
    m, run = h.run_experiment(cfg, keep=ex.load_run)
    train_s = time.perf_counter() - t if m["train_s"] is None else m["train_s"]
    model, field = run.model, run.field()
    rows = [{"stage": STAGES[0], "train_steps": args.base_steps, "train_s": train_s,
             "flops_per_step": h.experiment_flops(cfg, "points", (2,)), **evaluate(field, x0_eval, x_ref)}]
    flops = reflow_flops(model)

    t = time.perf_counter()
    x0, x1 = fm.reflow.generate_pairs(field, k_pairs, src, args.pairs, batch_size=2000)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    rf, _ = fm.reflow.reflow(model, k_reflow, x0, x1, num_steps=args.reflow_steps, batch_size=256,
                             optimizer=optax.adam(1e-3), params=run.params())
    train_s = time.perf_counter() - t
    field_rf = fm.training.make_vector_field(model, rf.params)
    rows.append({"stage": STAGES[1], "train_steps": args.reflow_steps, "train_s": train_s, "flops_per_step": flops,
                 "pairs": args.pairs, "pairs_s": pairs_s, **evaluate(field_rf, x0_eval, x_ref)})

    t = time.perf_counter()
    y0, y1 = fm.reflow.generate_pairs(field_rf, k_pairs2, src, args.pairs, batch_size=2000)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    ds, _ = fm.reflow.distill(model, k_distill, y0, y1, euler_steps=1, num_steps=args.distill_steps,
                              batch_size=256, optimizer=optax.adam(1e-3), params=rf.params)
    train_s = time.perf_counter() - t
    field_ds = fm.training.make_vector_field(model, ds.params)
    rows.append({"stage": STAGES[2], "train_steps": args.distill_steps, "train_s": train_s, "flops_per_step": flops,
                 "pairs": args.pairs, "pairs_s": pairs_s, **evaluate(field_ds, x0_eval, x_ref)})
    return rows


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--base-steps", type=int, default=10_000)
    ap.add_argument("--reflow-steps", type=int, default=10_000)
    ap.add_argument("--distill-steps", type=int, default=5_000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)


def setup(ctx) -> None:
    ctx.data["floor"] = float(fm.metrics.wasserstein(
        np.asarray(fm.data.sample_toy("moons", jax.random.key(123), ctx.args.eval)),
        np.asarray(fm.data.sample_toy("moons", jax.random.key(456), ctx.args.eval)),
    ))


def cases(ctx):
    return [{"seed": seed} for seed in ctx.args.seeds]


def run_case(ctx, case) -> list[dict]:
    return [{"suite": "reflow", "task": "8gaussians->moons", "seed": case["seed"], "eval_points": ctx.args.eval,
             "w2_floor": ctx.data["floor"], "matmul_peak_flops": ctx.peak, **r,
             **h.limit_fields(r["flops_per_step"], r["train_s"] / r["train_steps"], ctx.peak)}
            for r in stages(case["seed"], ctx.args)]


def history(ctx, rows):
    """The rows of the newest run."""
    return h.newest_run([r for r in rows if r.get("suite") == "reflow"])


COLUMNS = [
    ("stage", lambda r: r["stage"]), ("seed", lambda r: r["seed"]), ("train steps", lambda r: r["train_steps"]),
    *((f"W2 Euler {k}", lambda r, k=k: f"{r[f'w2_euler{k}']:.3f}") for k in EULER),
    ("W2 dopri5", lambda r: f"{r['w2_dopri5']:.3f}"), ("NFE dopri5", lambda r: r["nfe_dopri5"]),
    ("straightness", lambda r: f"{r['straightness']:.3f}"), ("curvature", lambda r: f"{r['curvature']:.2f}"),
    ("path energy", lambda r: f"{r['path_energy']:.2f}"), ("train s", lambda r: f"{r['train_s']:.0f}"),
    ("steps/s", lambda r: f"{r['train_steps'] / r['train_s']:.0f}"), ("GFLOP/s (of matmul)", h.fmt_limit),
]


def preamble(ctx, rows) -> str:
    r0, peak = rows[0], rows[0].get("matmul_peak_flops")
    pairs = next((r["pairs"] for r in rows if r.get("pairs")), None)
    return (
        f"{r0['time']}, {r0['device_kind']}, load {r0['load_avg_1m']:.1f}. Exact W2 between "
        f"{r0['eval_points']} generated and {r0['eval_points']} fresh moons points (the same source points for "
        f"every stage); two independent moons samples are W2 = {r0['w2_floor']:.3f} apart (the floor). "
        f"Euler k: k equal steps; dopri5 at rtol = atol = 1e-4. Straightness "
        "E int ||x1 - x0 - v||^2 dt, curvature E int ||dv/dt||^2 dt, path energy E int ||v||^2 dt "
        f"(fm.metrics.evaluate). Base: I-CFM (GaussianPath 0.1, independent coupling; the main job, "
        f"`configs/torchcfm_tutorial.json`); reflow: {pairs} dopri5 pairs, CondOTPath(0), "
        "identity pairing, warm start; distill: pairs of the reflowed flow, t on the 1-step grid. "
        "Steps/s: train steps / train time (reflow and distill: compilation included; base: the job's "
        "training time). GFLOP/s: XLA's FLOP count of one train step x steps/s, and its share of a "
        f"2048^2 float32 matmul measured in the same run ({h.fmt(None if peak is None else peak / 1e9, '.1f')} GFLOP/s; '-' for "
        f"runs recorded before these fields). Plot: `{ctx.name}.png` (W2 against NFE, one panel per seed). "
        f"Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    points = []
    for r in rows:
        at = {"seed": r["seed"], "stage": r["stage"]}
        points += [at | {"solver": "euler", "nfe": k, "w2": r[f"w2_euler{k}"]} for k in EULER]
        points.append(at | {"solver": "dopri5", "nfe": r["nfe_dopri5"], "w2": r["w2_dopri5"]})
    h.write_plot(ctx.file("png"), points, "nfe", "w2", ["stage", "solver"], panels="seed", title="W2 vs NFE",
                 xlabel="NFE (Euler steps; dopri5 tol 1e-4)", ylabel="W2 to moons")


SUITE = h.Suite(
    name="reflow", title="Reflow and distillation, 8gaussians -> moons", doc=__doc__, cases=cases,
    run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"base_steps": 1000, "reflow_steps": 1000, "distill_steps": 500, "pairs": 2000, "eval": 500},
    quick_file=True, setup=setup, history=history, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
