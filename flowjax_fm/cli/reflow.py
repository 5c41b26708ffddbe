"""``flowjax-fm reflow``: rectify a point run (and optionally distill it) into a new run directory."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reflow",
        help="rectify a trained run (retrain on its own ODE pairs), optionally distill",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--checkpoint", required=True, help="run directory written by train")
    p.add_argument("--pairs", type=int, help="number of (x0, x1) pairs (default 20,000)")
    p.add_argument("--steps", type=int, help="reflow training steps (default 5000)")
    p.add_argument("--batch", type=int, help="default 256")
    p.add_argument(
        "--distill-steps",
        type=int,
        metavar="K",
        help="also distill the reflowed flow to K Euler steps (default 0: no)",
    )
    p.add_argument(
        "--distill-train-steps", type=int, help="training steps of the distillation (default --steps)"
    )
    p.add_argument("--solver", help="solver generating the pairs (default dopri5)")
    p.add_argument("--eval-samples", type=int, help="default 1000")
    p.add_argument("--seed", type=int)
    p.add_argument("--ema", action="store_true", help="start from the EMA parameters")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", help="a new run directory (default: RUN/reflow-NNN)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from flowjax_fm import experiments

    kwargs = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "handler", "checkpoint", "out", "no_progress")
    }
    report = experiments.reflow_run(
        args.checkpoint,
        getattr(args, "out", None),
        progress=not getattr(args, "no_progress", False),
        **kwargs,
    )
    print(json.dumps(report, indent=2))
    print(f"reflowed run written to {report['out']}")
    return 0
