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
NFE, and straightness / curvature / path energy (``fm.metrics.evaluate``). Writes
``benchmarks/results/reflow.jsonl`` (appended) and ``benchmarks/results/reflow.md``.
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
from _common import environment, write_jsonl, write_table  # noqa: E402
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


def run(seed: int, args) -> list[dict]:
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    k_base, k_pairs, k_reflow, k_pairs2, k_distill, k_e0, k_e1 = jax.random.split(
        jax.random.key(seed), 7
    )
    x0_eval = src(k_e0, args.eval)
    x_ref = np.asarray(tgt(k_e1, args.eval))
    rows = []

    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(seed))
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
                 **evaluate(field, x0_eval, x_ref)})
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
                 "pairs": args.pairs, "pairs_s": pairs_s, **evaluate(field_rf, x0_eval, x_ref)})
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
                 "train_s": train_s, "pairs": args.pairs, "pairs_s": pairs_s,
                 **evaluate(field_ds, x0_eval, x_ref)})
    print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--base-steps", type=int, default=10_000)
    ap.add_argument("--reflow-steps", type=int, default=10_000)
    ap.add_argument("--distill-steps", type=int, default=5_000)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)
    args = ap.parse_args()
    if args.quick:
        args.base_steps, args.reflow_steps, args.distill_steps = 2000, 2000, 1000
        args.pairs, args.eval = 4000, 1000
    env = environment()
    floor = float(fm.metrics.wasserstein(
        np.asarray(fm.data.sample_toy("moons", jax.random.key(123), args.eval)),
        np.asarray(fm.data.sample_toy("moons", jax.random.key(456), args.eval)),
    ))
    rows, table = [], []
    for seed in args.seeds:
        for r in run(seed, args):
            rows.append({"suite": "reflow", "task": "8gaussians->moons", "seed": seed,
                         "quick": args.quick, "eval_points": args.eval, "w2_floor": floor,
                         **r, **env})
            table.append([r["stage"], seed, r["train_steps"]]
                         + [f"{r[f'w2_euler{k}']:.3f}" for k in EULER]
                         + [f"{r['w2_dopri5']:.3f}", r["nfe_dopri5"], f"{r['straightness']:.3f}",
                            f"{r['curvature']:.2f}", f"{r['path_energy']:.2f}",
                            f"{r['train_s']:.0f}"])
    write_jsonl("reflow", rows)
    cmd = "`.venv/bin/python benchmarks/bench_reflow.py" + (" --quick" if args.quick else (
        f" --seeds {' '.join(map(str, args.seeds))} --base-steps {args.base_steps} "
        f"--reflow-steps {args.reflow_steps} --distill-steps {args.distill_steps} "
        f"--pairs {args.pairs}")) + "`"
    write_table(
        "reflow", "Reflow and distillation, 8gaussians -> moons",
        f"{env['time']}, {env['device_kind']}, load {env['load_avg_1m']:.1f}. Exact W2 between "
        f"{args.eval} generated and {args.eval} fresh moons points (the same source points for "
        f"every stage); two independent moons samples are W2 = {floor:.3f} apart (the floor). "
        f"Euler k: k equal steps; dopri5 at rtol = atol = 1e-4. Straightness "
        "E int ||x1 - x0 - v||^2 dt, curvature E int ||dv/dt||^2 dt, path energy E int ||v||^2 dt "
        f"(fm.metrics.evaluate). Base: I-CFM (GaussianPath 0.1, independent coupling); reflow: "
        f"{args.pairs} dopri5 pairs, CondOTPath(0), identity pairing, warm start; distill: pairs "
        f"of the reflowed flow, t on the 1-step grid. Command: {cmd}.",
        ["stage", "seed", "train steps"] + [f"W2 Euler {k}" for k in EULER]
        + ["W2 dopri5", "NFE dopri5", "straightness", "curvature", "path energy", "train s"],
        table,
    )


if __name__ == "__main__":
    main()
