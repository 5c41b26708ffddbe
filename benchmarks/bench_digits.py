"""Class-conditional digits: accuracy and Frechet distance against guidance scale and steps.

Trains the small UNet (channels 16, mult (1, 2), one block per level) on scikit-learn's 8x8
digits (1500 train / 297 held out, fixed split) with the main job (``fm.experiments.train_and_evaluate``
on ``configs/digits_guidance.json``), I-CFM (independent coupling) and OT-CFM
(label-aware exact OT), label dropout 0.1, Adam 2e-3, batch 128, EMA 0.995, CondOT path. Each
evaluation draws ``eval_per_class`` samples per class (midpoint, 10 steps, 20 guided NFE, the
same noise at every scale), classifies them with a small CNN trained on the training split,
and computes the Frechet distance in its 64-d penultimate features against the held-out
images (``frechet_real``: the same distance between real training and held-out images).

    .venv/bin/python -m benchmarks.bench_digits [--quick] [--steps 800] [--eval-every 400] [--workdir DIR]

``--workdir`` keeps each method's run directory (``DIR/METHOD``, which must be new).

Achieved FLOP/s: XLA's FLOP count of one train step on a batch of 128 (``compiled_flops`` of the
step ``fm.experiments.build`` makes of the run's config) times the training steps/s, against a 2048x2048 float32 matrix
product timed in the same run (``matmul_peak_flops``).

Writes ``RESULTS/digits.jsonl`` (appended), ``digits.md``, ``digits.png`` (Frechet
distance against guidance) and ``digits_accuracy.png`` (``digits_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks import _harness as h

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}


def flags(ap) -> None:
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-per-class", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--workdir", default=None, help="keep the run directories here (default: scratch folders)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="training steps per compiled chunk (default min(eval_every, 250))")
    ap.add_argument("--classifier-steps", type=int, default=600)


def cases(ctx):
    a = ctx.args
    for method in a.methods:
        yield {"method": method, "config": h.experiment_config("digits_guidance", {
            "coupling": METHODS[method], "steps": a.steps, "eval.every": a.eval_every,
            "eval.per_class": a.eval_per_class, "chunk": a.chunk or min(a.eval_every, 250),
            "eval.classifier_steps": a.classifier_steps})}


def eval_rows(m: dict) -> list[dict]:
    """One row per (evaluated step, guidance scale): the evaluations during training, then the final."""
    nfe = {r["guidance"]: r["nfe"] for r in m["eval"]}  # fixed by the solver, the same at every step
    rows = [{"step": e["step"], "guidance": w, "accuracy": e[f"accuracy_w{w:g}"],
             "frechet": e[f"frechet_w{w:g}"], "nfe": nfe[w]} for e in m.get("history", []) for w in nfe]
    return rows + [dict(r, step=m["steps"]) for r in m["eval"]]


def run_case(ctx, case) -> list[dict]:
    method, cfg = case["method"], case["config"]
    workdir = Path(ctx.args.workdir) / method if ctx.args.workdir else None
    t0 = time.perf_counter()
    m, _ = h.run_experiment(cfg, workdir)
    wall = time.perf_counter() - t0
    flops = h.experiment_flops(cfg, "images", (8, 8, 1), 10)
    limit = h.limit_fields(flops, 1.0 / m["steps_per_s"], ctx.peak)
    return [{"bench": "digits", "method": method, **r, "frechet_real": m["frechet_real"],
             "classifier_accuracy": m["classifier_accuracy"], "train_steps": m["steps"], "batch": cfg.batch,
             "steps_per_s": m["steps_per_s"], "compile_s": m["compile_s"], "run_wall_s": wall,
             "config": cfg.to_dict(), "flops_per_step": flops, "matmul_peak_flops": ctx.peak, **limit}
            for r in eval_rows(m)]

COLUMNS = [
    ("method", lambda r: r["method"]), ("step", lambda r: r["step"]), ("w", lambda r: f"{r['guidance']:g}"),
    ("accuracy", lambda r: f"{r['accuracy']:.3f}"), ("Frechet", lambda r: f"{r['frechet']:.1f}"),
    ("Frechet real", lambda r: f"{r['frechet_real']:.1f}"), ("steps/s", lambda r: f"{r['steps_per_s']:.1f}"),
    ("run s", lambda r: f"{r['run_wall_s']:.0f}"), ("GFLOP/s (of matmul)", h.fmt_limit),
]


def preamble(ctx, rows) -> str:
    return (
        f"{h.env_line(ctx.env)} ({ctx.env['cpu_count']} cores shared with other jobs), jax "
        f"{ctx.env['versions']['jax']}. UNet 16x(1,2), batch 128, "
        f"label dropout 0.1, EMA 0.995, midpoint 10 steps; {ctx.args.eval_per_class} samples per "
        "class; accuracy = classifier agrees with the requested label; Frechet = FD in the "
        "classifier's penultimate features vs 297 held-out real digits (frechet_real: real "
        "train vs held-out, the floor at this sample size). Guidance v = v_u + w (v_c - v_u): "
        "w = 0 unconditional, w = 1 conditional. `run s` is the wall time of the whole run "
        "(classifier, compile, training, every evaluation). GFLOP/s: XLA's FLOP count of one "
        "train step x training steps/s, and its share of a 2048x2048 float32 matmul measured in the "
        f"same run ({ctx.peak / 1e9:.1f} GFLOP/s). Plots: `{ctx.name}.png` (Frechet), `{ctx.name}_accuracy.png`. "
        f"Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    for suffix, y, label in (("", "frechet", "Frechet distance"), ("_accuracy", "accuracy", "accuracy")):
        h.write_plot(ctx.file("png", suffix), rows, "guidance", y, ["method"], title="8x8 digits", panels="step",
                     xlabel="guidance scale w", ylabel=label, logx=False, logy=y == "frechet")


SUITE = h.Suite(
    name="digits", title="Class-conditional 8x8 digits: guidance and training steps", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    # the smoke version: the fewest steps that still evaluate twice; 2-step chunks keep the CPU
    # compile small (train_images runs chunks as unrolled blocks of up to 10 steps there)
    quick={"steps": 8, "eval_every": 4, "eval_per_class": 4, "chunk": 2, "classifier_steps": 100},
    quick_file=True, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
