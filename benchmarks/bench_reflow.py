"""Reflow and distillation on 8gaussians -> moons: W2 of few-step Euler sampling before and after.

Run:

    .venv/bin/python benchmarks/bench_reflow.py [--quick] [--seeds 0] [--base-steps 10000]

1. Base flow: I-CFM as in ``bench_quality.py`` (MLP 3x64 SELU, Adam 1e-3, batch 256,
   GaussianPath(0.1), independent coupling), ``--base-steps`` steps.
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
under ``benchmarks/results`` (``reflow_quick.*`` with ``--quick``; ``FLOWJAX_FM_BENCH_RESULTS``
redirects). ``--render`` rewrites the md and png from the newest run in the JSON lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    write_jsonl,
    write_plot,
    write_table,
)
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

EULER = (1, 2, 4, 100)


def evaluate(field, x0, x_ref) -> dict:
    out = {}
    for k in EULER:
        x = fm.sampling.sample(field, x0, solver="euler", num_steps=k).x
        out[f"w2_euler{k}"] = float(fm.metrics.wasserstein(np.asarray(x), x_ref))
    r = fm.metrics.evaluate(field, x0, x_ref, solver="dopri5", rtol=1e-4, atol=1e-4)
    out.update(w2_dopri5=r["w2"], nfe_dopri5=r["nfe"], mmd=r["mmd"],
               straightness=r["straightness"], curvature=r["curvature"],
               path_energy=r["path_energy"])
    return out


def step_flops(model) -> dict:
    """XLA's FLOP count of one train step (batch 256): the base I-CFM step and the reflow step."""
    opt = optax.adam(1e-3)
    state = fm.training.init_state(model, opt)
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x0 = fm.data.make_sampler("8gaussians")(k0, 256)
    x1 = fm.data.make_sampler("moons")(k1, 256)
    out = {}
    for stage, path in (("base", fm.paths.GaussianPath(0.1)), ("reflow", fm.paths.CondOTPath(0.0))):
        step = fm.training.make_train_step(model, optimizer=opt, path=path,
                                           coupling=fm.couplings.IndependentCoupling())
        out[stage] = compiled_flops(lambda s, k, step=step: step(s, k, x0, x1), state, k2)
    return out


def run(seed: int, args) -> list[dict]:
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    k_base, k_pairs, k_reflow, k_pairs2, k_distill, k_e0, k_e1 = jax.random.split(
        jax.random.key(seed), 7
    )
    x0_eval = src(k_e0, args.eval)
    x_ref = np.asarray(tgt(k_e1, args.eval))
    rows = []

    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(seed))
    flops = step_flops(model)
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.IndependentCoupling(),
    )
    t = time.perf_counter()
    base, _ = fm.training.fit(step, fm.training.init_state(model, opt), k_base, src, tgt,
                              num_steps=args.base_steps, batch_size=256, progress=False)
    train_s = time.perf_counter() - t
    field = fm.training.make_vector_field(model, base.params)
    rows.append({"stage": "base (I-CFM)", "train_steps": args.base_steps, "train_s": train_s,
                 "flops_per_step": flops["base"], **evaluate(field, x0_eval, x_ref)})
    print(rows[-1], flush=True)

    t = time.perf_counter()
    x0, x1 = fm.reflow.generate_pairs(field, k_pairs, src, args.pairs, batch_size=2000)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    rf, _ = fm.reflow.reflow(model, k_reflow, x0, x1, num_steps=args.reflow_steps,
                             batch_size=256, optimizer=optax.adam(1e-3), params=base.params)
    train_s = time.perf_counter() - t
    field_rf = fm.training.make_vector_field(model, rf.params)
    rows.append({"stage": "1-reflow", "train_steps": args.reflow_steps, "train_s": train_s,
                 "flops_per_step": flops["reflow"], "pairs": args.pairs, "pairs_s": pairs_s,
                 **evaluate(field_rf, x0_eval, x_ref)})
    print(rows[-1], flush=True)

    t = time.perf_counter()
    y0, y1 = fm.reflow.generate_pairs(field_rf, k_pairs2, src, args.pairs, batch_size=2000)
    pairs_s = time.perf_counter() - t
    t = time.perf_counter()
    ds, _ = fm.reflow.distill(model, k_distill, y0, y1, euler_steps=1,
                              num_steps=args.distill_steps, batch_size=256,
                              optimizer=optax.adam(1e-3), params=rf.params)
    train_s = time.perf_counter() - t
    field_ds = fm.training.make_vector_field(model, ds.params)
    rows.append({"stage": "1-reflow + distill (k=1)", "train_steps": args.distill_steps,
                 "train_s": train_s, "flops_per_step": flops["reflow"], "pairs": args.pairs,
                 "pairs_s": pairs_s,
                 **evaluate(field_ds, x0_eval, x_ref)})
    print(rows[-1], flush=True)
    return rows


def render(name: str, rows: list[dict]) -> None:
    """Rewrite ``NAME.md`` and ``NAME.png`` from one run's rows."""
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    by_stage = {r["stage"]: r for r in rows}
    table, points = [], []
    for r in rows:
        steps_per_s = r["train_steps"] / r["train_s"]
        table.append([r["stage"], r["seed"], r["train_steps"]]
                     + [f"{r[f'w2_euler{k}']:.3f}" for k in EULER]
                     + [f"{r['w2_dopri5']:.3f}", r["nfe_dopri5"], f"{r['straightness']:.3f}",
                        f"{r['curvature']:.2f}", f"{r['path_energy']:.2f}",
                        f"{r['train_s']:.0f}", f"{steps_per_s:.0f}", fmt_limit(r)])
        for k in EULER:
            points.append({"seed": r["seed"], "stage": r["stage"], "solver": "euler", "nfe": k,
                           "w2": r[f"w2_euler{k}"]})
        points.append({"seed": r["seed"], "stage": r["stage"], "solver": "dopri5",
                       "nfe": r["nfe_dopri5"], "w2": r["w2_dopri5"]})
    if r0.get("quick"):
        cmd = "`.venv/bin/python benchmarks/bench_reflow.py --quick`"
    else:
        base, rf = by_stage["base (I-CFM)"], by_stage["1-reflow"]
        ds = by_stage["1-reflow + distill (k=1)"]
        cmd = (f"`.venv/bin/python benchmarks/bench_reflow.py --seeds {' '.join(map(str, seeds))} "
               f"--base-steps {base['train_steps']} --reflow-steps {rf['train_steps']} "
               f"--distill-steps {ds['train_steps']} --pairs {rf['pairs']}`")
    peak = r0.get("matmul_peak_flops")
    n_eval = r0["eval_points"]
    write_table(
        name, "Reflow and distillation, 8gaussians -> moons",
        f"{r0['time']}, {r0['device_kind']}, load {r0['load_avg_1m']:.1f}. Exact W2 between "
        f"{n_eval} generated and {n_eval} fresh moons points (the same source points for "
        f"every stage); two independent moons samples are W2 = {r0['w2_floor']:.3f} apart (the floor). "
        f"Euler k: k equal steps; dopri5 at rtol = atol = 1e-4. Straightness "
        "E int ||x1 - x0 - v||^2 dt, curvature E int ||dv/dt||^2 dt, path energy E int ||v||^2 dt "
        f"(fm.metrics.evaluate). Base: I-CFM (GaussianPath 0.1, independent coupling); reflow: "
        f"{r0.get('pairs', by_stage.get('1-reflow', {}).get('pairs'))} dopri5 pairs, CondOTPath(0), "
        "identity pairing, warm start; distill: pairs of the reflowed flow, t on the 1-step grid. "
        "Steps/s: train steps / train time (compilation included). GFLOP/s: XLA's FLOP count of one "
        "train step x steps/s, and its share of a 2048^2 float32 matmul measured in the same run "
        f"({'-' if peak is None else f'{peak / 1e9:.1f}'} GFLOP/s; '-' for runs recorded before these "
        f"fields). Plot: `{name}.png` (W2 against NFE, one panel per seed). Command: {cmd}.",
        ["stage", "seed", "train steps"] + [f"W2 Euler {k}" for k in EULER]
        + ["W2 dopri5", "NFE dopri5", "straightness", "curvature", "path energy", "train s",
           "steps/s", "GFLOP/s (of matmul)"],
        table,
    )
    write_plot(name, points, "nfe", "w2", ["stage", "solver"], panels="seed",
               title="W2 vs NFE", xlabel="NFE (Euler steps; dopri5 tol 1e-4)", ylabel="W2 to moons")


def newest_run(name: str) -> list[dict]:
    """The rows of the newest run recorded in ``NAME.jsonl``."""
    import json

    rows = [json.loads(line) for line in (RESULTS / f"{name}.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("suite") == "reflow"]
    if not rows:
        raise SystemExit(f"no reflow rows in {RESULTS / f'{name}.jsonl'}")
    newest = max(r["time"] for r in rows)
    return [r for r in rows if r["time"] == newest]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the md and png from the newest run in the JSON lines")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--base-steps", type=int, default=10_000)
    ap.add_argument("--reflow-steps", type=int, default=10_000)
    ap.add_argument("--distill-steps", type=int, default=5_000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)
    args = ap.parse_args()
    name = "reflow_quick" if args.quick else "reflow"
    if args.render:
        render(name, newest_run(name))
        return
    if args.quick:
        args.base_steps, args.reflow_steps, args.distill_steps = 1000, 1000, 500
        args.pairs, args.eval = 2000, 500
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s", flush=True)
    floor = float(fm.metrics.wasserstein(
        np.asarray(fm.data.sample_toy("moons", jax.random.key(123), args.eval)),
        np.asarray(fm.data.sample_toy("moons", jax.random.key(456), args.eval)),
    ))
    rows = []
    for seed in args.seeds:
        for r in run(seed, args):
            lim = limit_fields(r["flops_per_step"], r["train_s"] / r["train_steps"], peak)
            rows.append({"suite": "reflow", "task": "8gaussians->moons", "seed": seed,
                         "quick": args.quick, "eval_points": args.eval, "w2_floor": floor,
                         "matmul_peak_flops": peak, **r, **lim, **env})
    write_jsonl(name, rows)
    render(name, rows)
    print(f"wrote {RESULTS}/{name}.jsonl, .md and .png", flush=True)


if __name__ == "__main__":
    main()
