"""Class-conditional digits: accuracy and Frechet distance against guidance scale and steps.

Trains the small UNet (channels 16, mult (1, 2), one block per level) on scikit-learn's 8x8
digits (1500 train / 297 held out, fixed split), I-CFM (independent coupling) and OT-CFM
(label-aware exact OT), label dropout 0.1, Adam 2e-3, batch 128, EMA 0.995, CondOT path. Each
evaluation draws ``eval_per_class`` samples per class (midpoint, 10 steps, 20 guided NFE, the
same noise at every scale), classifies them with a small CNN trained on the training split,
and computes the Frechet distance in its 64-d penultimate features against the held-out
images (``frechet_real``: the same distance between real training and held-out images).

    .venv/bin/python benchmarks/bench_digits.py [--quick] [--steps 800] [--eval-every 400]

Achieved FLOP/s: XLA's FLOP count of one train step on a batch of 128 (``compiled_flops`` of the
same step ``train_images`` builds) times the training steps/s, against a 2048x2048 float32 matrix
product timed in the same run (``matmul_peak_flops``).

Writes ``benchmarks/results/digits.jsonl`` (appended), ``digits.md``, ``digits.png`` (Frechet
distance against guidance) and ``digits_accuracy.png`` (``digits_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _common import (  # noqa: E402
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    write_jsonl,
    write_plot,
    write_table,
)

import flowjax_fm as fm  # noqa: E402
from flowjax_fm.training._images import ImageTrainConfig, _build, train_images  # noqa: E402

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}


def step_flops(config: ImageTrainConfig, image_shape=(8, 8, 1), num_classes: int = 10) -> float | None:
    """XLA's FLOP count of one conditional train step as ``train_images`` builds it."""
    model, optimizer, step = _build(config, image_shape, num_classes)
    state = fm.training.init_state(model, optimizer)
    x = jnp.zeros((config.batch, *image_shape))
    y = jnp.arange(config.batch, dtype=jnp.int32) % num_classes

    def labelled_step(state, key, x0, x1, labels):
        return step(state, key, x0, x1, cond=labels)

    return compiled_flops(labelled_step, state, jax.random.key(0), x, x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-per-class", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", default=None, help="keep the run directories here")
    ap.add_argument("--chunk", type=int, default=None,
                    help="training steps per compiled chunk (default min(eval_every, 250))")
    ap.add_argument("--classifier-steps", type=int, default=600)
    args = ap.parse_args()
    if args.quick:
        # the smoke version: the fewest steps that still evaluate twice; 2-step chunks keep the
        # CPU compile small (train_images runs chunks as unrolled blocks of up to 10 steps there)
        args.steps, args.eval_every, args.eval_per_class, args.chunk = 8, 4, 4, 2
        args.classifier_steps = 100
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows, table = [], []
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_digits_"))
    for method in args.methods:
        config = ImageTrainConfig(
            coupling=METHODS[method], steps=args.steps, eval_every=args.eval_every,
            eval_per_class=args.eval_per_class, chunk=args.chunk or min(args.eval_every, 250),
            classifier_steps=args.classifier_steps,
        )
        # the evaluation classifier depends only on the seed and the data: train it once
        done = [base / m / "classifier.npz" for m in args.methods if (base / m / "classifier.npz").exists()]
        if done and not (base / method / "classifier.npz").exists():
            (base / method).mkdir(parents=True, exist_ok=True)
            shutil.copy(done[0], base / method / "classifier.npz")
        t0 = time.perf_counter()
        m = train_images(config, base / method, progress=False)
        wall = time.perf_counter() - t0
        flops = step_flops(config)
        limit = limit_fields(flops, 1.0 / m["steps_per_s"], peak)
        evals = m.get("history") or [dict(r, step=m["steps"]) for r in m["eval"]]
        for r in evals:
            row = {
                "bench": "digits", "method": method, "quick": args.quick, **r,
                "frechet_real": m["frechet_real"], "classifier_accuracy": m["classifier_accuracy"],
                "train_steps": m["steps"], "batch": config.batch, "steps_per_s": m["steps_per_s"],
                "compile_s": m["compile_s"], "run_wall_s": wall, "config": config.to_json(),
                "flops_per_step": flops, "matmul_peak_flops": peak, **limit, **env,
            }
            rows.append(row)
            table.append([
                method, r["step"], f"{r['guidance']:g}", f"{r['accuracy']:.3f}",
                f"{r['frechet']:.1f}", f"{m['frechet_real']:.1f}", f"{m['steps_per_s']:.1f}",
                f"{wall:.0f}", fmt_limit(limit),
            ])
        print(f"{method}: {wall:.0f} s, final {m['eval']}", flush=True)
    name = "digits_quick" if args.quick else "digits"
    write_jsonl(name, rows)
    pre = (
        f"Device {env['device_kind']} ({env['cpu_count']} cores shared with other jobs, load "
        f"{env['load_avg_1m']:.1f}), jax {env['versions']['jax']}. UNet 16x(1,2), batch 128, "
        f"label dropout 0.1, EMA 0.995, midpoint 10 steps; {args.eval_per_class} samples per "
        "class; accuracy = classifier agrees with the requested label; Frechet = FD in the "
        "classifier's penultimate features vs 297 held-out real digits (frechet_real: real "
        "train vs held-out, the floor at this sample size). Guidance v = v_u + w (v_c - v_u): "
        "w = 0 unconditional, w = 1 conditional. `run s` is the wall time of the whole run "
        "(classifier, compile, training, every evaluation). GFLOP/s: XLA's FLOP count of one "
        "train step x training steps/s, and its share of a 2048x2048 float32 matmul measured in the "
        f"same run ({peak / 1e9:.1f} GFLOP/s). Plots: `{name}.png` (Frechet), `{name}_accuracy.png`. "
        f"Command: `.venv/bin/python benchmarks/bench_digits.py{' --quick' if args.quick else ''}`."
    )
    write_table(
        name, "Class-conditional 8x8 digits: guidance and training steps", pre,
        ["method", "step", "w", "accuracy", "Frechet", "Frechet real", "steps/s", "run s",
         "GFLOP/s (of matmul)"], table,
    )
    for suffix, y, label in (("", "frechet", "Frechet distance"), ("_accuracy", "accuracy", "accuracy")):
        write_plot(name + suffix, rows, "guidance", y, ["method"], title="8x8 digits", panels="step",
                   xlabel="guidance scale w", ylabel=label, logx=False, logy=y == "frechet")


if __name__ == "__main__":
    main()
