"""The ``flowjax-fm`` command: flags only; the work is in the library.

Every sub-command exits with status 2 and a one-line ``flowjax-fm: error: ...`` message on bad
input (unknown names, unreadable or mis-shaped files, bad numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated ints, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden widths must be positive, got {text!r}")
    return widths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowjax-fm", description="Flow matching in JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a flow (default: 8gaussians -> moons, exact OT)")
    t.add_argument("--source", default="8gaussians", help="toy name or FILE.npy")
    t.add_argument("--target", default="moons", help="toy name or FILE.npy")
    t.add_argument("--coupling", default=None,
                   help="exact-ot | independent | sinkhorn (default exact-ot; images: independent)")
    t.add_argument("--path", default="gaussian", help="condot | gaussian | bridge | vp")
    t.add_argument("--sigma", type=float, default=None, help="path width (sigma_min for condot)")
    t.add_argument("--epsilon", type=float, default=None, help="Sinkhorn regularisation")
    t.add_argument("--steps", type=int, default=None, help="default 20,000 (2D), 2,000 (images)")
    t.add_argument("--batch", type=int, default=None, help="default 256 (2D), 128 (images)")
    t.add_argument("--lr", type=float, default=None, help="default 1e-3 (2D), 2e-3 (images)")
    t.add_argument("--model", default=None, help="mlp (points) | unet (images; default for digits)")
    t.add_argument("--guidance-dropout", type=float, default=0.1,
                   help="images: probability of dropping a label (classifier-free guidance)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--hidden", type=_hidden, default=(64, 64, 64))
    t.add_argument("--activation", default="selu")
    t.add_argument("--ema-decay", type=float, default=None)
    t.add_argument("--eval-samples", type=int, default=2000)
    t.add_argument("--solver", default="dopri5")
    t.add_argument("--checkpoint-every", type=int, default=5000)
    t.add_argument("--chunk", type=int, default=500, help="steps per compiled lax.scan chunk")
    t.add_argument("--out", default=None, help="run directory (default runs/<timestamp>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--no-progress", action="store_true")
    g = t.add_argument_group("optimisation")
    g.add_argument("--schedule", default="constant", help="constant | cosine")
    g.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    g.add_argument("--clip", type=float, default=None, help="clip the global gradient norm")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--accumulate", type=int, default=1, help="gradient-accumulation micro-batches")
    d = t.add_argument_group("devices and hosts")
    d.add_argument("--devices", type=int, default=None, help="devices to use (default: all)")
    d.add_argument("--coupling-scope", default="global", help="global | per_shard")
    d.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-host)")
    d.add_argument("--num-processes", type=int, default=None)
    d.add_argument("--process-id", type=int, default=None)

    s = sub.add_parser("sample", help="generate from a trained run")
    s.add_argument("--checkpoint", required=True, help="run directory written by train")
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--solver", default="tsit5")
    s.add_argument("--num-steps", type=int, default=None, help="fixed steps (default adaptive)")
    s.add_argument("--rtol", type=float, default=1e-5)
    s.add_argument("--atol", type=float, default=1e-5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ema", action="store_true", help="use the EMA parameters")
    s.add_argument("--out", default=None, help="output directory (default: the checkpoint dir)")
    s.add_argument("--label", type=int, default=None, help="images: class to generate")
    s.add_argument("--guidance", type=float, default=1.0, help="images: guidance scale w")
    from flowjax_fm import _commands_flow

    _commands_flow.add_sample_flow_args(s)
    _commands_flow.add_loglik_parser(sub)
    _commands_flow.add_reflow_parser(sub)
    sub.add_parser("bench", help="run a benchmark suite: bench --suite NAME [--quick] (source checkout)")
    return p


def _bench(rest: list[str]) -> int:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise ValueError("the benchmarks ship with the source checkout: run this from a clone")
    return subprocess.call([sys.executable, "-m", "benchmarks", *rest], cwd=root)


def _is_image_task(args) -> bool:
    if args.model not in (None, "mlp", "unet"):
        raise ValueError(f"unknown model {args.model!r}; choose mlp or unet")
    return args.model == "unet" or (args.model is None and args.target == "digits")


def _train_images(args) -> int:
    from flowjax_fm.training._images import ImageTrainConfig, train_images

    if args.model == "mlp":
        raise ValueError("image targets train a UNet: drop --model mlp")
    given = (("steps", args.steps), ("batch", args.batch), ("lr", args.lr), ("coupling", args.coupling))
    overrides = {k: v for k, v in given if v is not None}
    config = ImageTrainConfig(target=args.target, seed=args.seed,
                              guidance_dropout=args.guidance_dropout, **overrides)
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    result = train_images(config, out, progress=not args.no_progress)
    print(json.dumps(result, indent=2, default=str))
    print(f"run written to {out}")
    return 0


def _train(args) -> int:
    from flowjax_fm.training import initialize_distributed
    from flowjax_fm.training._experiment import TrainConfig, train_and_evaluate

    if _is_image_task(args):
        return _train_images(args)
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    config = TrainConfig(
        source=args.source,
        target=args.target,
        coupling="exact-ot" if args.coupling is None else args.coupling,
        path=args.path,
        sigma=args.sigma,
        epsilon=args.epsilon,
        steps=20_000 if args.steps is None else args.steps,
        batch=256 if args.batch is None else args.batch,
        lr=1e-3 if args.lr is None else args.lr,
        seed=args.seed,
        hidden=tuple(args.hidden),
        activation=args.activation,
        ema_decay=args.ema_decay,
        eval_samples=args.eval_samples,
        solver=args.solver,
        checkpoint_every=args.checkpoint_every,
        chunk=args.chunk,
        devices=args.devices,
        coupling_scope=args.coupling_scope,
        schedule=args.schedule,
        warmup=args.warmup,
        clip=args.clip,
        weight_decay=args.weight_decay,
        accumulate=args.accumulate,
    )
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out DIR (the run to continue)")
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    result = train_and_evaluate(config, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    print(f"run written to {out}")
    return 0


def _sample(args) -> int:
    import jax
    import numpy as np

    from flowjax_fm import sampling
    from flowjax_fm.training._experiment import _draw, _plot_samples, load_run

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    if (Path(args.checkpoint) / "meta.json").is_file():  # an image run
        from flowjax_fm.training._images import sample_images

        out = Path(args.out or args.checkpoint)
        x = sample_images(args.checkpoint, args.label, args.guidance, args.n, out, seed=args.seed,
                          solver=None if args.solver == "tsit5" else args.solver,
                          num_steps=args.num_steps)
        print(f"wrote {out / 'samples.npy'} {x.shape} and {out / 'samples.png'}")
        return 0
    from flowjax_fm._commands_flow import sample_flow_outputs

    _, _, field, source, event_shape = load_run(args.checkpoint, use_ema=args.ema)
    x0 = jax.numpy.asarray(_draw(source, jax.random.key(args.seed), args.n))
    res = sampling.sample(
        field, x0, solver=args.solver, num_steps=args.num_steps, rtol=args.rtol, atol=args.atol
    )
    out = Path(args.out or args.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    x = np.asarray(res.x)
    np.save(out / "samples.npy", x)
    _plot_samples(out / "samples.png", x)
    print(f"wrote {out / 'samples.npy'} {x.shape}, nfe={int(res.nfe)}")
    sample_flow_outputs(args, field, x0, out, event_shape)
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():  # equinox's runtime errors lead with a stack banner
        if "EquinoxRuntimeError:" in line:
            return line.split("EquinoxRuntimeError:", 1)[1].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv=None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # everything after "bench" belongs to the suite runner
        try:
            return _bench(argv[1:])
        except ValueError as exc:
            parser.exit(2, f"flowjax-fm: error: {_one_line(exc)}\n")
    args = parser.parse_args(argv)
    try:
        from flowjax_fm._commands_flow import run_loglik, run_reflow

        commands = {"train": _train, "sample": _sample, "loglik": run_loglik, "reflow": run_reflow}
        return commands[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"flowjax-fm: error: {_one_line(exc)}\n")
    except FloatingPointError as exc:  # non-finite loss: the last good checkpoint is kept
        parser.exit(3, f"flowjax-fm: error: {_one_line(exc)}\n")
    except RuntimeError as exc:  # a failed ODE solve (sample, loglik): reported, never NaN
        parser.exit(3, f"flowjax-fm: error: {_one_line(exc)}\n")
    except KeyboardInterrupt:
        parser.exit(130, "flowjax-fm: interrupted\n")


if __name__ == "__main__":
    sys.exit(main())
