"""Class-conditional digits: accuracy and Frechet distance against guidance scale and steps.

Trains the small UNet (channels 16, mult (1, 2), one block per level) on scikit-learn's 8x8
digits (1500 train / 297 held out, fixed split), I-CFM (independent coupling) and OT-CFM
(label-aware exact OT), label dropout 0.1, Adam 2e-3, batch 128, EMA 0.995, CondOT path. Each
evaluation draws ``eval_per_class`` samples per class (midpoint, 10 steps, 20 guided NFE, the
same noise at every scale), classifies them with a small CNN trained on the training split,
and computes the Frechet distance in its 64-d penultimate features against the held-out
images (``frechet_real``: the same distance between real training and held-out images).

    .venv/bin/python benchmarks/bench_digits.py [--quick] [--steps 800] [--eval-every 400]

Writes ``benchmarks/results/digits.jsonl`` (appended) and ``benchmarks/results/digits.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_jsonl, write_table  # noqa: E402

from flowjax_fm.training._images import ImageTrainConfig, train_images  # noqa: E402

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-per-class", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", default=None, help="keep the run directories here")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.eval_per_class = 100, 50, 10
    env = environment()
    rows, table = [], []
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_digits_"))
    for method in args.methods:
        config = ImageTrainConfig(
            coupling=METHODS[method], steps=args.steps, eval_every=args.eval_every,
            eval_per_class=args.eval_per_class, chunk=min(args.eval_every, 250),
        )
        t0 = time.perf_counter()
        m = train_images(config, base / method, progress=False)
        wall = time.perf_counter() - t0
        evals = m.get("history") or [dict(r, step=m["steps"]) for r in m["eval"]]
        for r in evals:
            row = {
                "bench": "digits", "method": method, "quick": args.quick, **r,
                "frechet_real": m["frechet_real"], "classifier_accuracy": m["classifier_accuracy"],
                "train_steps": m["steps"], "batch": config.batch, "steps_per_s": m["steps_per_s"],
                "compile_s": m["compile_s"], "run_wall_s": wall, "config": config.to_json(),
                **env,
            }
            rows.append(row)
            table.append([
                method, r["step"], f"{r['guidance']:g}", f"{r['accuracy']:.3f}",
                f"{r['frechet']:.1f}", f"{m['frechet_real']:.1f}", f"{m['steps_per_s']:.1f}",
                f"{wall:.0f}",
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
        "(classifier, compile, training, every evaluation)."
    )
    write_table(
        name, "Class-conditional 8x8 digits: guidance and training steps", pre,
        ["method", "step", "w", "accuracy", "Frechet", "Frechet real", "steps/s", "run s"], table,
    )


if __name__ == "__main__":
    main()
