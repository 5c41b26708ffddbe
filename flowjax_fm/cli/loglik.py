"""``flowjax-fm loglik``: log-likelihood of points under a trained run, into a new directory."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "loglik",
        help="log-likelihood (nats) of points under a trained run",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--checkpoint", required=True, help="run directory written by train")
    p.add_argument("--data", required=True, help="FILE.npy of points (N, *event)")
    p.add_argument("--estimator", choices=["exact", "hutchinson"], help="divergence (default exact)")
    p.add_argument("--num-probes", type=int, help="Hutchinson probes (default 1)")
    p.add_argument("--solver", help="ODE solver (default tsit5)")
    p.add_argument("--num-steps", type=int, help="fixed steps (default adaptive)")
    p.add_argument("--rtol", type=float, help="default 1e-5")
    p.add_argument("--atol", type=float, help="default 1e-5")
    p.add_argument("--batch", type=int, help="points per solve (default 1000)")
    p.add_argument("--seed", type=int, help="Hutchinson probes")
    p.add_argument("--ema", action="store_true", help="use the EMA parameters")
    p.add_argument("--label", type=int, help="images: condition on this class (default: null class)")
    p.add_argument("--out", help="a new output directory (default: RUN/loglik-NNN)")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    from flowjax_fm import experiments

    kwargs = {
        k: v for k, v in vars(args).items() if k not in ("command", "handler", "checkpoint", "data", "out")
    }
    res = experiments.loglik(args.checkpoint, args.data, getattr(args, "out", None), **kwargs)
    print(f"loaded step {res['step']} of {args.checkpoint}")
    print(
        f"mean log-likelihood {res['mean']:.6f} nats ({res['bits_per_dim']:.4f} bits/dim) over "
        f"{res['points']} points ({res['estimator']}); wrote {res['out']}/loglik.npy"
    )
    return 0
