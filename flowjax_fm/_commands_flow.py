"""``flowjax-fm`` handlers for likelihoods, reflow and the flow outputs of ``sample``.

Wiring (in :mod:`flowjax_fm.cli`)::

    add_loglik_parser(sub)            # flowjax-fm loglik  -> run_loglik(args)
    add_reflow_parser(sub)            # flowjax-fm reflow  -> run_reflow(args)
    add_sample_flow_args(s)           # flowjax-fm sample --trajectories / --encode FILE.npy
    sample_flow_outputs(args, field, x0, out)   # call inside the sample handler

Handlers raise ``ValueError`` with a one-line message on bad input (the CLI prints it and
exits 2) and return 0 on success.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = [
    "add_loglik_parser",
    "run_loglik",
    "add_reflow_parser",
    "run_reflow",
    "add_sample_flow_args",
    "sample_flow_outputs",
]


def _positive(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes an int, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value

    return parse


def _load_points(path: str, event_shape, what: str):
    import numpy as np

    from flowjax_fm.data import load_points

    points = load_points(path)
    if tuple(points.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{path}: {what} must have shape (N, {', '.join(map(str, event_shape))}) to match the "
            f"run's event shape {tuple(event_shape)}, got {points.shape}"
        )
    return points.astype(np.float32)


def _batched(fn, x, batch: int):
    """Apply ``fn`` to fixed-size chunks of ``x`` (the last padded), so it compiles once."""
    import jax.numpy as jnp
    import numpy as np

    n = x.shape[0]
    size = min(batch, n)
    outs = []
    for start in range(0, n, size):
        chunk = x[start : start + size]
        pad = size - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(np.asarray(fn(jnp.asarray(chunk)))[: size - pad])
    return np.concatenate(outs)


# -- loglik ------------------------------------------------------------------------------


def add_loglik_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``flowjax-fm loglik`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("loglik", help="log-likelihood (nats) of points under a trained run")
    p.add_argument("--checkpoint", required=True, help="run directory written by train")
    p.add_argument("--data", required=True, help="FILE.npy of points (N, *event)")
    p.add_argument("--estimator", default="exact", choices=["exact", "hutchinson"])
    p.add_argument("--num-probes", type=_positive("--num-probes"), default=1)
    p.add_argument("--solver", default="tsit5")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--batch", type=_positive("--batch"), default=1000, help="points per solve")
    p.add_argument("--seed", type=int, default=0, help="Hutchinson probes")
    p.add_argument("--ema", action="store_true", help="use the EMA parameters")
    p.add_argument("--out", default=None, help="output directory (default: the checkpoint dir)")
    return p


def run_loglik(args) -> int:
    """Write ``loglik.npy`` (nats per point) into ``--out`` and print the mean."""
    import jax
    import numpy as np

    from flowjax_fm import likelihood
    from flowjax_fm.training._experiment import load_run

    _, _, field, _, event_shape = load_run(args.checkpoint, use_ema=args.ema)
    points = _load_points(args.data, event_shape, "--data")
    key = jax.random.key(args.seed)
    calls = [0]

    def one(x):
        calls[0] += 1
        return likelihood.log_prob(
            field, x, key=jax.random.fold_in(key, calls[0]), estimator=args.estimator,
            num_probes=args.num_probes, solver=args.solver, rtol=args.rtol, atol=args.atol,
        )

    logp = _batched(one, points, args.batch)
    out = Path(args.out or args.checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "loglik.npy", logp)
    size = int(np.prod(event_shape))
    bpd = float(likelihood.bits_per_dim(logp.mean(), size))
    print(f"mean log-likelihood {logp.mean():.6f} nats ({bpd:.4f} bits/dim) over {len(logp)} points"
          f" ({args.estimator}); wrote {out / 'loglik.npy'}")
    return 0


# -- reflow ------------------------------------------------------------------------------


def add_reflow_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``flowjax-fm reflow`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "reflow", help="rectify a trained run (retrain on its own ODE pairs), optionally distill"
    )
    p.add_argument("--checkpoint", required=True, help="run directory written by train")
    p.add_argument("--pairs", type=_positive("--pairs"), default=20_000, help="number of (x0, x1) pairs")
    p.add_argument("--steps", type=_positive("--steps"), default=5000, help="reflow training steps")
    p.add_argument("--batch", type=_positive("--batch"), default=256)
    p.add_argument("--distill-steps", type=int, default=0, metavar="K",
                   help="also distill the reflowed flow to K Euler steps (0: no distillation)")
    p.add_argument("--distill-train-steps", type=_positive("--distill-train-steps"), default=None,
                   help="training steps of the distillation (default: --steps)")
    p.add_argument("--solver", default="dopri5", help="solver generating the pairs")
    p.add_argument("--eval-samples", type=_positive("--eval-samples"), default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ema", action="store_true", help="start from the EMA parameters")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=None, help="output run directory (default: CHECKPOINT/reflow)")
    return p


def _euler_report(field, x0, x_ref) -> dict:
    import numpy as np

    from flowjax_fm import metrics, sampling

    report = {}
    for k in (1, 2, 4):
        x = np.asarray(sampling.sample(field, x0, solver="euler", num_steps=k).x)
        report[f"w2_euler{k}"] = None if x_ref is None else float(metrics.wasserstein(x, x_ref))
    # without a reference set, evaluate() compares with x0 itself: only its flow statistics are kept
    r = metrics.evaluate(field, x0, np.asarray(x0) if x_ref is None else x_ref, rtol=1e-4, atol=1e-4)
    report.update(w2=None if x_ref is None else r["w2"], nfe=r["nfe"],
                  straightness=r["straightness"], path_energy=r["path_energy"])
    return report


def _write_run(out: Path, config, event_shape, state) -> None:
    from flowjax_fm import training

    out.mkdir(parents=True, exist_ok=True)
    training.write_json_atomic(out / "config.json", config.to_json())
    training.write_json_atomic(out / "event_shape.json", list(event_shape))
    ckpt = training.Checkpointer(out / "checkpoint")
    ckpt.save(state)
    ckpt.close()


def run_reflow(args) -> int:
    """Rectify a run: pairs from its flow, retrain (warm start), write a loadable run directory.

    ``--out`` becomes a run directory (``config.json``, ``event_shape.json``, ``checkpoint/``,
    ``metrics.json``) that ``flowjax-fm sample --checkpoint`` reads like any trained run; with
    ``--distill-steps K`` a second one is written to ``OUT/distill-K``.
    """
    import dataclasses

    import jax
    import numpy as np
    import optax

    from flowjax_fm import reflow, training
    from flowjax_fm.training._experiment import _draw, build_source, load_run

    if args.distill_steps < 0:
        raise ValueError(f"--distill-steps must be >= 0, got {args.distill_steps}")
    config, model, field, source, event_shape = load_run(args.checkpoint, use_ema=args.ema)
    if not callable(source) and len(source) < args.pairs:
        raise ValueError(
            f"--pairs {args.pairs} exceeds the {len(source)} source points of {config.source}"
        )
    optimizer = optax.adam(config.lr)
    saved = training.Checkpointer(Path(args.checkpoint) / "checkpoint")
    like = training.init_state(model, optimizer)
    base = saved.restore(like)
    saved.close()
    start = base.ema if args.ema else base.params

    k_pairs, k_train, k_pairs2, k_distill, k_e0, k_e1 = jax.random.split(jax.random.key(args.seed), 6)
    try:
        target = build_source(config.target, "target")
        x_ref = _draw(target, k_e1, args.eval_samples).reshape(-1, int(np.prod(event_shape)))
    except ValueError:  # the run's target file is gone: report no W2
        x_ref = None
    x0_eval = jax.numpy.asarray(_draw(source, k_e0, args.eval_samples))
    if x_ref is not None and len(x_ref) != len(x0_eval):
        n = min(len(x_ref), len(x0_eval))
        x_ref, x0_eval = x_ref[:n], x0_eval[:n]

    progress = not args.no_progress
    x0, x1 = reflow.generate_pairs(field, k_pairs, source, args.pairs, solver=args.solver)
    state, history = reflow.reflow(model, k_train, x0, x1, num_steps=args.steps,
                                   batch_size=args.batch, optimizer=optimizer, params=start,
                                   progress=progress)
    new_field = training.make_vector_field(model, state.params)
    report = {
        "before": _euler_report(field, x0_eval, x_ref),
        "after": _euler_report(new_field, x0_eval, x_ref),
        "pairs": args.pairs,
        "steps": args.steps,
        "loss": float(np.mean(history["loss"][-200:])),
    }
    out = Path(args.out or Path(args.checkpoint) / "reflow")
    new_config = dataclasses.replace(config, path="condot", sigma=None, coupling="independent",
                                     steps=args.steps, batch=args.batch, seed=args.seed)
    _write_run(out, new_config, event_shape, state)

    if args.distill_steps:
        k = args.distill_steps
        y0, y1 = reflow.generate_pairs(new_field, k_pairs2, source, args.pairs, solver=args.solver)
        train_steps = args.distill_train_steps or args.steps
        d_state, d_hist = reflow.distill(model, k_distill, y0, y1, euler_steps=k,
                                         num_steps=train_steps, batch_size=args.batch,
                                         optimizer=optimizer, params=state.params,
                                         progress=progress)
        d_field = training.make_vector_field(model, d_state.params)
        x = np.asarray(reflow_sample(d_field, x0_eval, k))
        from flowjax_fm import metrics

        report["distill"] = {
            "euler_steps": k,
            "steps": train_steps,
            f"w2_euler{k}": float(metrics.wasserstein(x, x_ref)) if x_ref is not None else None,
            "loss": float(np.mean(d_hist["loss"][-200:])),
        }
        d_config = dataclasses.replace(new_config, solver="euler", steps=train_steps)
        _write_run(out / f"distill-{k}", d_config, event_shape, d_state)
    training.write_json_atomic(out / "metrics.json", report)
    print(json.dumps(report, indent=2))
    print(f"reflowed run written to {out}")
    return 0


def reflow_sample(field, x0, euler_steps: int):
    """``euler_steps`` Euler steps of ``field`` from ``x0`` (how a distilled field is sampled)."""
    from flowjax_fm import sampling

    return sampling.sample(field, x0, solver="euler", num_steps=euler_steps).x


# -- sample --trajectories / --encode ----------------------------------------------------


def add_sample_flow_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--trajectories`` and ``--encode FILE.npy`` to the ``sample`` sub-parser."""
    parser.add_argument("--trajectories", action="store_true",
                        help="also write trajectories.npy (T, n, *event) and trajectories.png")
    parser.add_argument("--trajectory-points", type=_positive("--trajectory-points"), default=101,
                        help="saved times per trajectory (adaptive solves)")
    parser.add_argument("--max-trajectories", type=_positive("--max-trajectories"), default=300,
                        help="number of trajectories drawn in trajectories.png")
    parser.add_argument("--encode", default=None, metavar="FILE.npy",
                        help="also map these data points back to the source: encoded.npy")
    return parser


def sample_flow_outputs(args, field, x0, out: Path, event_shape=None) -> list[Path]:
    """Write the ``--trajectories`` / ``--encode`` outputs of ``flowjax-fm sample``.

    Args:
      args: parsed arguments (``solver``, ``num_steps``, ``rtol``, ``atol`` and the flags of
        :func:`add_sample_flow_args`).
      field: the run's vector field; x0: the source points of this sample call.
      out: output directory; event_shape: the run's event shape (default ``x0.shape[1:]``).

    Returns:
      The paths written.
    """
    import jax.numpy as jnp
    import numpy as np

    from flowjax_fm import sampling

    event_shape = tuple(x0.shape[1:]) if event_shape is None else tuple(event_shape)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opts = dict(solver=args.solver, num_steps=args.num_steps, rtol=args.rtol, atol=args.atol)
    written = []
    if getattr(args, "trajectories", False):
        res = sampling.sample(field, jnp.asarray(x0), save_trajectory=True,
                              trajectory_points=getattr(args, "trajectory_points", 101), **opts)
        traj = np.asarray(res.trajectory)
        np.save(out / "trajectories.npy", traj)
        _plot_trajectories(out / "trajectories.png", traj[:, : getattr(args, "max_trajectories", 300)])
        written += [out / "trajectories.npy", out / "trajectories.png"]
        print(f"wrote {out / 'trajectories.npy'} {traj.shape}")
    if getattr(args, "encode", None):
        points = _load_points(args.encode, event_shape, "--encode")
        z = np.asarray(sampling.encode(field, jnp.asarray(points), **opts).x)
        np.save(out / "encoded.npy", z)
        written.append(out / "encoded.npy")
        print(f"wrote {out / 'encoded.npy'} {z.shape}")
    return written


def _plot_trajectories(path: Path, traj) -> None:
    """Trajectories (first two coordinates) from black start points to blue end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    traj = np.asarray(traj).reshape(traj.shape[0], traj.shape[1], -1)
    j = 1 if traj.shape[2] > 1 else 0
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(traj[:, :, 0], traj[:, :, j], c="olive", alpha=0.15, lw=0.6)
    ax.scatter(traj[0, :, 0], traj[0, :, j], s=3, c="black", label="x0 (t=0)")
    ax.scatter(traj[-1, :, 0], traj[-1, :, j], s=3, c="tab:blue", label="x1 (t=1)")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
