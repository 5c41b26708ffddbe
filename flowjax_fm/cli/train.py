"""``flowjax-fm train``: a config file plus per-field overrides, then ``train_and_evaluate``.

Every flag maps onto one config field and has no default of its own: a flag that is not given
leaves the field as the config (``--config FILE``, else :class:`RunConfig`'s defaults) has it.
``--set KEY=VALUE`` sets any field (dotted keys, JSON values: ``--set model.hidden=[128,128]``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["add_parser", "run", "config_from_args"]


def _ints(text: str) -> list[int]:
    try:
        values = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated integers, got {text!r}") from None
    return values


def _floats(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated numbers, got {text!r}") from None


# flag -> (config key, type, help); the defaults are the config's
_FIELDS = [
    ("--source", "source", str, "toy name, 'normal' or FILE.npy (default 8gaussians; images: normal)"),
    ("--target", "target", str, "toy name, 'digits' or FILE.npy/.npz (default moons)"),
    ("--objective", "objective", str, "cfm | meanflow | shortcut | consistency (few-step "
     "objectives train a model of two times and evaluate with --solver few-step)"),
    ("--guidance-scale", "guidance_scale", float, "meanflow: classifier-free guidance folded "
     "into training (conditional runs; one evaluation at sampling)"),
    ("--model", "model.name", str, "mlp | unet | a registered model (default by the data)"),
    ("--hidden", "model.hidden", _ints, "MLP widths, comma-separated"),
    ("--activation", "model.activation", str, "MLP activation"),
    ("--channels", "model.channels", int, "UNet base channels"),
    ("--channel-mult", "model.channel_mult", _ints, "UNet channel multipliers, comma-separated"),
    ("--num-res-blocks", "model.num_res_blocks", int, "UNet residual blocks per level"),
    ("--coupling", "coupling", str, "exact-ot | independent | sinkhorn | large-sinkhorn"),
    ("--path", "path", str, "condot | gaussian | bridge | vp"),
    ("--sigma", "sigma", float, "path width (sigma_min for condot)"),
    ("--epsilon", "epsilon", float, "Sinkhorn regularisation"),
    ("--cond-dropout", "cond_dropout", float, "probability of dropping a label (guidance training)"),
    ("--guidance-dropout", "cond_dropout", float, argparse.SUPPRESS),
    ("--steps", "steps", int, "optimiser steps"),
    ("--batch", "batch", int, "batch size (over all devices)"),
    ("--lr", "lr", float, "learning rate"),
    ("--seed", "seed", int, "seed of the run"),
    ("--ema-decay", "ema_decay", float, "keep an EMA of the params with this decay"),
    ("--schedule", "schedule", str, "constant | cosine"),
    ("--warmup", "warmup", int, "linear warm-up steps"),
    ("--clip", "clip", float, "clip the global gradient norm"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--accumulate", "accumulate", int, "gradient-accumulation micro-batches"),
    ("--devices", "devices", int, "devices to use (default: all)"),
    ("--coupling-scope", "coupling_scope", str, "global | per_shard"),
    ("--pairing", "pairing", str, "auto | in_step | prefetch: where the coupling runs (prefetch: "
     "host threads, ahead of the step)"),
    ("--prefetch", "prefetch", int, "chunks of pairings computed ahead (--pairing prefetch)"),
    ("--pairing-workers", "pairing_workers", int, "pairing threads (default: the CPU count, at most 4)"),
    ("--chunk", "chunk", int, "steps per compiled lax.scan chunk"),
    ("--checkpoint-every", "checkpoint_every", int, "steps between checkpoints"),
    ("--log-every", "log_every", int, "steps between metric-log lines (metrics.jsonl, TensorBoard)"),
    ("--solver", "eval.solver", str, "evaluation solver (an ODE solver, or few-step)"),
    ("--eval-num-steps", "eval.num_steps", int, "evaluation steps of a fixed-step solver "
     "(few-step: jumps)"),
    ("--eval-samples", "eval.samples", int, "points generated for the evaluation"),
    ("--eval-every", "eval.every", int, "also evaluate every this many steps (0: at the end)"),
    ("--guidance-scales", "eval.guidance_scales", _floats, "images: guidance scales evaluated"),
    ("--eval-per-class", "eval.per_class", int, "images: samples per class evaluated"),
]


def add_parser(sub) -> argparse.ArgumentParser:
    t = sub.add_parser(
        "train",
        help="train a flow (default: 8gaussians -> moons, exact OT)",
        description=__doc__.splitlines()[0],
        argument_default=argparse.SUPPRESS,
    )
    t.add_argument("--config", help="a config file (configs/*.json, or a run's config.json / run.json)")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="overrides",
        help="set any config field (dotted key, JSON value); repeatable",
    )
    for flag, key, kind, text in _FIELDS:
        t.add_argument(flag, dest=f"field:{key}", type=kind, help=text)
    t.add_argument("--out", help="run directory (default runs/<timestamp>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--no-progress", action="store_true")
    d = t.add_argument_group("hosts")
    d.add_argument("--coordinator", help="host:port of process 0 (multi-host)")
    d.add_argument("--num-processes", type=int)
    d.add_argument("--process-id", type=int)
    d.add_argument(
        "--coordinator-timeout", type=float, help="seconds to wait for the coordinator (default 120)"
    )
    t.set_defaults(handler=run)
    return t


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args):
    """The :class:`RunConfig` of ``--config`` with the flags and ``--set`` applied."""
    from flowjax_fm import experiments

    config = experiments.load_config(args.config) if "config" in args else experiments.RunConfig()
    changes = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("field:")}
    for item in getattr(args, "overrides", None) or []:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        changes[key.strip()] = _value(text)
    return experiments.override(config, changes) if changes else config


def run(args) -> int:
    from flowjax_fm import experiments, training

    config = config_from_args(args)
    resume = getattr(args, "resume", False)
    if resume and "out" not in args:
        raise ValueError("--resume needs --out DIR (the run to continue)")
    out = Path(args.out if "out" in args else f"runs/{time.strftime('%Y%m%d-%H%M%S')}").absolute()
    training.initialize_distributed(
        getattr(args, "coordinator", None),
        getattr(args, "num_processes", None),
        getattr(args, "process_id", None),
        timeout=getattr(args, "coordinator_timeout", 120.0),
    )
    result = experiments.train_and_evaluate(
        config, out, resume=resume, progress=not getattr(args, "no_progress", False)
    )
    print(json.dumps(result, indent=2, default=str))
    print(f"run written to {out}")
    return 0
