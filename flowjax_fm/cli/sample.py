"""``flowjax-fm sample``: generate from a trained run into a new directory."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("sample", help="generate from a trained run", argument_default=argparse.SUPPRESS)
    s.add_argument("--checkpoint", required=True, help="run directory written by train (or reflow)")
    s.add_argument("--n", type=int, help="number of samples (default 2000)")
    s.add_argument("--solver", help="ODE solver, or few-step for jumps of a few-step model "
                   "(default: the run's evaluation solver)")
    s.add_argument("--num-steps", type=int, help="fixed steps, or jumps with few-step (default: "
                   "the run's, else adaptive)")
    s.add_argument("--rtol", type=float, help="adaptive tolerances (default: the run's)")
    s.add_argument("--atol", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--ema", action="store_true", help="use the EMA parameters")
    s.add_argument("--label", type=int, help="images: class to generate (default: unconditional)")
    s.add_argument("--guidance", type=float, help="images: guidance scale w (default 1)")
    s.add_argument("--trajectories", action="store_true", help="points: also trajectories.npy/.png")
    s.add_argument("--trajectory-points", type=int, help="saved times per trajectory (default 101)")
    s.add_argument("--max-trajectories", type=int, help="trajectories drawn in the figure (default 300)")
    s.add_argument("--encode", metavar="FILE.npy", help="points: map these back to the source: encoded.npy")
    s.add_argument("--out", help="a new output directory (default: RUN/sample-NNN)")
    s.set_defaults(handler=run)
    return s


def run(args) -> int:
    from flowjax_fm import experiments

    kwargs = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "checkpoint", "out")}
    res = experiments.sample(args.checkpoint, getattr(args, "out", None), **kwargs)
    which = "EMA" if res["ema"] else "params"
    print(f"loaded step {res['step']} ({which}) of {args.checkpoint}")
    print(f"wrote {res['out']}: samples {tuple(res['shape'])}, nfe={res['nfe']}")
    return 0
