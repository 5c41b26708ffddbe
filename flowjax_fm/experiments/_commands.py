"""Jobs on a trained run: sample, log-likelihood, reflow (and distillation).

Each reads the run with :func:`load_run`, checks every option against the run before it
writes anything, and writes into its own output directory: ``out`` (absent or empty) or the
next free ``RUN/sample-NNN``, ``RUN/loglik-NNN``, ``RUN/reflow-NNN``. The defaults of their
options are the keyword defaults here (``None``: the run's own evaluation setting).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_int, check_positive_int, check_real, first_line

__all__ = ["loglik", "reflow_run", "sample"]


def _tolerance(name: str, value) -> None:
    check_real(name, value, 0.0, low_open=True, none_ok=True)


def _solve_options(run, solver, num_steps, rtol, atol, *, few_step: bool = False) -> dict:
    from flowjax_fm import sampling
    from flowjax_fm.experiments._config import FEW_STEP, FIXED_STEP_SOLVERS

    e = run.config.eval
    solver = e.solver if solver is None else solver
    names = sorted([*sampling.SOLVER_NAMES, FEW_STEP]) if few_step else sorted(sampling.SOLVER_NAMES)
    if solver not in names:
        raise ValueError(f"unknown solver {solver!r}; choose one of {names}")
    if num_steps is None and solver == e.solver:
        num_steps = e.num_steps
    if num_steps is not None:
        check_positive_int("--num-steps", num_steps)
    if solver in (*FIXED_STEP_SOLVERS, FEW_STEP) and num_steps is None:
        raise ValueError(f"--solver {solver} takes a fixed number of steps: give --num-steps")
    _tolerance("--rtol", rtol)
    _tolerance("--atol", atol)
    return dict(
        solver=solver,
        num_steps=num_steps,
        rtol=e.rtol if rtol is None else rtol,
        atol=e.atol if atol is None else atol,
    )


def _label_cond(run, label, n: int):
    """The condition array of ``n`` examples of ``label`` (``None``: the null class)."""
    if run.num_classes is None:
        if label is not None:
            raise ValueError(f"{run.directory} holds an unconditional model: drop --label")
        return None
    if label is not None and (
        isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < run.num_classes
    ):
        raise ValueError(f"--label must lie in [0, {run.num_classes - 1}], got {label!r}")
    return np.full((n,), run.num_classes if label is None else label, np.int32)


def _load_points_for(run, path: str, what: str) -> np.ndarray:
    from flowjax_fm import data

    x = data.load_points(path)
    if tuple(x.shape[1:]) != tuple(run.event_shape):
        raise ValueError(
            f"{path}: {what} must have shape (N, {', '.join(map(str, run.event_shape))}) to match the "
            f"run's event shape {tuple(run.event_shape)}, got {x.shape}"
        )
    return x.astype(np.float32)


def _solver_failed(err: Exception, opts: dict) -> ValueError:
    return ValueError(
        f"the ODE solve failed ({first_line(err)}) with solver {opts['solver']}"
        + (
            f", {opts['num_steps']} steps"
            if opts["num_steps"]
            else f", rtol {opts['rtol']}, atol {opts['atol']}"
        )
        + ": try a looser --rtol/--atol, --num-steps with a fixed-step solver, or another --solver"
    )


# -- sample ------------------------------------------------------------------------------------


def sample(
    run_dir,
    out=None,
    *,
    n: int = 2000,
    seed: int = 0,
    solver: str | None = None,
    num_steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    ema: bool = False,
    label: int | None = None,
    guidance: float = 1.0,
    trajectories: bool = False,
    trajectory_points: int = 101,
    max_trajectories: int = 300,
    encode: str | None = None,
) -> dict:
    """Generate ``n`` samples from a run into a new directory; return a summary.

    Writes ``samples.npy`` and ``samples.png``; with ``trajectories`` also
    ``trajectories.npy`` / ``.png``; with ``encode=FILE.npy`` the file's points mapped back to
    the source as ``encoded.npy``. Image runs take ``label`` (default: the unconditional,
    null-class model) and the guidance scale ``guidance``.
    """
    from flowjax_fm import sampling
    from flowjax_fm.experiments import _plots
    from flowjax_fm.experiments._config import FEW_STEP
    from flowjax_fm.experiments._generate import generate
    from flowjax_fm.experiments._rundir import fresh_directory, load_run, make_directory

    check_positive_int("--n", n)
    check_positive_int("--trajectory-points", trajectory_points)
    check_positive_int("--max-trajectories", max_trajectories)
    check_real("--guidance", guidance)
    run = load_run(run_dir)
    from flowjax_fm.experiments._families import FAMILY_KINDS

    if run.kind in FAMILY_KINDS:
        if trajectories or encode or label is not None or guidance != 1.0:
            raise ValueError(
                f"--trajectories, --encode, --label and --guidance apply to point and image runs; "
                f"{run.directory} is a {run.kind} run"
            )
        return _sample_family(run, out, n=n, seed=seed, solver=solver, num_steps=num_steps, ema=ema)
    opts = _solve_options(run, solver, num_steps, rtol, atol, few_step=True)
    params = run.params(ema)
    cond = _label_cond(run, label, n)
    if run.kind == "images" and (trajectories or encode):
        raise ValueError("--trajectories and --encode draw 2D points: they apply to point runs only")
    if run.num_classes is None and guidance != 1.0:
        raise ValueError(f"{run.directory} holds an unconditional model: --guidance needs labels")
    points = _load_points_for(run, encode, "--encode") if encode else None
    out = fresh_directory(run.directory, out, "sample")
    key = jax.random.key(seed)
    if points is not None and opts["solver"] == FEW_STEP:
        raise ValueError(
            f"--encode integrates the velocity backwards: choose an ODE --solver, not {FEW_STEP}"
        )
    x0 = jnp.asarray(run.draw_source(key, n))
    cond = None if cond is None else jnp.asarray(cond)
    gen = functools.partial(generate, run.model, params, run.config.objective, cond=cond,
                            guidance=None if cond is None else float(guidance),
                            num_classes=run.num_classes, **opts)
    try:
        res = gen(x0)
        x = np.asarray(res.x)
        traj = None
        if trajectories:
            traj = np.asarray(gen(x0, save_trajectory=True, trajectory_points=trajectory_points).trajectory)
        z = None
        if points is not None:
            z = np.asarray(sampling.encode(run.field(ema), jnp.asarray(points), **opts).x)
    except RuntimeError as err:
        raise _solver_failed(err, opts) from None
    make_directory(out)
    written = [out / "samples.npy", out / "samples.png"]
    np.save(written[0], x)
    if run.kind == "points":
        _plots.plot_points(written[1], x)
    else:
        title = "unconditional" if label is None else f"label {label}, w={guidance:g}"
        _plots.save_grid(written[1], {title: x}, rows=max(1, int(np.sqrt(n))))
    if traj is not None:
        np.save(out / "trajectories.npy", traj)
        _plots.plot_trajectories(out / "trajectories.png", traj[:, :max_trajectories])
        written += [out / "trajectories.npy", out / "trajectories.png"]
    if z is not None:
        np.save(out / "encoded.npy", z)
        written.append(out / "encoded.npy")
    del params
    return {
        "out": str(out),
        "step": run.checkpoint_step,
        "ema": ema,
        "shape": list(x.shape),
        "nfe": int(res.nfe),
        "written": [str(p) for p in written],
    }


def _sample_family(run, out, *, n, seed, solver, num_steps, ema) -> dict:
    """``sample`` for a manifold or tokens run: projected ODE steps, or CTMC steps."""
    from flowjax_fm import sampling
    from flowjax_fm.experiments._families import generate_family, plot_family
    from flowjax_fm.experiments._rundir import fresh_directory, make_directory

    e = run.config.eval
    solver = e.solver if solver is None else solver
    if run.kind == "tokens" and solver != "ctmc":
        raise ValueError(f"a tokens run samples with CTMC steps: --solver ctmc, got {solver!r}")
    if run.kind != "tokens" and solver not in sampling.SOLVER_NAMES:
        raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(sampling.SOLVER_NAMES)}")
    num_steps = e.num_steps if num_steps is None else num_steps
    check_positive_int("--num-steps", num_steps)
    out = fresh_directory(run.directory, out, "sample")
    key = jax.random.key(seed)
    k0, k1 = jax.random.split(key)
    x0 = jnp.asarray(run.draw_source(k0, n))
    res = generate_family(run.kind, run.model, run.params(ema), x0, num_steps=num_steps,
                          solver=solver, key=k1, extra=run.extra)
    x = np.asarray(res if run.kind == "tokens" else res.x)
    make_directory(out)
    np.save(out / "samples.npy", x)
    plot_family(run.kind, out / "samples.png", x, None, run.extra)
    return {
        "out": str(out),
        "step": run.checkpoint_step,
        "ema": ema,
        "shape": list(x.shape),
        "nfe": int(num_steps if run.kind == "tokens" else res.nfe),
        "written": [str(out / "samples.npy"), str(out / "samples.png")],
    }


# -- loglik ------------------------------------------------------------------------------------


def _batched(fn, x, batch: int):
    """``fn`` over fixed-size chunks of ``x`` (the last padded), so it compiles once."""
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


def loglik(
    run_dir,
    data: str,
    out=None,
    *,
    estimator: str = "exact",
    num_probes: int = 1,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    num_steps: int | None = None,
    batch: int = 1000,
    seed: int = 0,
    ema: bool = False,
    label: int | None = None,
) -> dict:
    """Log-likelihood (nats) of the points of ``data`` under a run: ``loglik.npy`` in a new directory.

    The source density is the run's own (N(0, I), ``gaussian`` or ``8gaussians``); a run
    whose source is a set of points has none, and is refused. Image runs of a conditional
    model are evaluated under the null class, or ``label``.
    """
    from flowjax_fm import likelihood
    from flowjax_fm.experiments._data import source_log_prob
    from flowjax_fm.experiments._rundir import fresh_directory, load_run, make_directory

    if estimator not in ("exact", "hutchinson"):
        raise ValueError(f"unknown estimator {estimator!r}; choose exact or hutchinson")
    check_positive_int("--num-probes", num_probes)
    check_positive_int("--batch", batch)
    run = load_run(run_dir)
    prior = source_log_prob(run.config.source, run.event_shape)
    opts = _solve_options(run, solver, num_steps, rtol, atol)
    points = _load_points_for(run, data, "--data")
    cond = _label_cond(run, label, min(batch, len(points)))
    out = fresh_directory(run.directory, out, "loglik")
    field = run.field(ema)
    key = jax.random.key(seed)
    calls = [0]

    def one(x):
        calls[0] += 1
        return likelihood.log_prob(
            field,
            x,
            key=jax.random.fold_in(key, calls[0]),
            estimator=estimator,
            num_probes=num_probes,
            source_log_prob=prior,
            cond=None if cond is None else jnp.asarray(cond),
            **opts,
        )

    try:
        logp = _batched(one, points, batch)
    except RuntimeError as err:
        raise _solver_failed(err, opts) from None
    make_directory(out)
    np.save(out / "loglik.npy", logp)
    size = int(np.prod(run.event_shape))
    mean = float(np.mean(logp))
    return {
        "out": str(out),
        "step": run.checkpoint_step,
        "mean": mean,
        "points": int(len(logp)),
        "bits_per_dim": float(likelihood.bits_per_dim(mean, size)),
        "estimator": estimator,
    }


# -- reflow ------------------------------------------------------------------------------------


def _euler_report(field, x0, x_ref) -> dict:
    from flowjax_fm import metrics, sampling

    report = {}
    for k in (1, 2, 4):
        x = np.asarray(sampling.sample(field, x0, solver="euler", num_steps=k).x)
        report[f"w2_euler{k}"] = None if x_ref is None else float(metrics.wasserstein(x, x_ref))
    r = metrics.evaluate(field, x0, np.asarray(x0) if x_ref is None else x_ref, rtol=1e-4, atol=1e-4)
    report.update(
        w2=None if x_ref is None else r["w2"],
        nfe=r["nfe"],
        straightness=r["straightness"],
        path_energy=r["path_energy"],
    )
    return report


def _write_derived(out: Path, run, config, state, origin: dict, metrics: dict | None = None) -> None:
    from flowjax_fm import training
    from flowjax_fm.experiments._rundir import make_directory, write_run_files

    record = dict(run.record, config=config.to_dict(), origin=origin)
    make_directory(out)
    write_run_files(out, record)
    ckpt = training.Checkpointer(out / "checkpoint")
    ckpt.save(state)
    ckpt.close()
    if metrics is not None:
        training.write_json_atomic(out / "metrics.json", metrics)


def reflow_run(
    run_dir,
    out=None,
    *,
    pairs: int = 20_000,
    steps: int = 5000,
    batch: int = 256,
    distill_steps: int = 0,
    distill_train_steps: int | None = None,
    solver: str = "dopri5",
    eval_samples: int = 1000,
    seed: int = 0,
    ema: bool = False,
    progress: bool = True,
) -> dict:
    """Rectify a point run (retrain on its own ODE pairs, warm start) into a new run directory.

    The new directory is a run like any other (``sample`` and ``loglik`` read it); its config
    is the parent's with the straight path, independent coupling, ``steps`` and ``batch``, and
    the parent's optimiser settings. With ``distill_steps = K`` a second run, distilled to K
    Euler steps, is written to ``OUT/distill-K``.
    """
    from flowjax_fm import metrics, reflow, sampling, training
    from flowjax_fm.experiments._build import build
    from flowjax_fm.experiments._data import draw, is_file_spec
    from flowjax_fm.experiments._rundir import fresh_directory, load_run

    for name, value in (
        ("--pairs", pairs),
        ("--steps", steps),
        ("--batch", batch),
        ("--eval-samples", eval_samples),
    ):
        check_positive_int(name, value)
    check_int("--distill-steps", distill_steps, 0)
    if distill_train_steps is not None:
        check_positive_int("--distill-train-steps", distill_train_steps)
    if solver not in sampling.SOLVER_NAMES or solver == "euler":
        raise ValueError(
            f"--solver generates the pairs adaptively: choose one of "
            f"{sorted(set(sampling.SOLVER_NAMES) - {'euler'})}, got {solver!r}"
        )
    run = load_run(run_dir)
    if run.kind != "points":
        raise ValueError(f"reflow takes point runs; {run.directory} is an image run")
    start = run.params(ema)
    source = run.source
    if source is not None and not callable(source) and len(source) < pairs:
        raise ValueError(f"--pairs {pairs} exceeds the {len(source)} source points of {run.config.source}")
    new_config = dataclasses.replace(
        run.config,
        path="condot",
        sigma=None,
        coupling="independent",
        epsilon=None,
        steps=steps,
        batch=batch,
        seed=seed,
    )
    k_steps = distill_train_steps or steps
    d_config = None
    if distill_steps:
        d_config = dataclasses.replace(
            new_config,
            steps=k_steps,
            eval=dataclasses.replace(new_config.eval, solver="euler", num_steps=distill_steps),
        )
    out = fresh_directory(run.directory, out, "reflow")
    built = build(new_config, run.event_shape, None)

    k_pairs, k_train, k_pairs2, k_distill, k_e0, k_e1 = jax.random.split(jax.random.key(seed), 6)
    target_ok = not is_file_spec(run.config.target) or Path(run.config.target).is_file()
    x_ref = None
    if target_ok:
        from flowjax_fm.experiments._data import load_task

        target = load_task(run.config, "points").target
        x_ref = draw(target, k_e1, eval_samples, run.event_shape).reshape(-1, int(np.prod(run.event_shape)))
    x0_eval = jnp.asarray(run.draw_source(k_e0, eval_samples))
    if x_ref is not None and len(x_ref) != len(x0_eval):
        m = min(len(x_ref), len(x0_eval))
        x_ref, x0_eval = x_ref[:m], x0_eval[:m]
    field = run.field(ema)
    draw_source = (
        source
        if source is not None
        else (lambda key, n: jax.random.normal(key, (n, *run.event_shape), jnp.float32))
    )
    x0, x1 = reflow.generate_pairs(field, k_pairs, draw_source, pairs, solver=solver)
    common = dict(batch_size=batch, ema_decay=new_config.ema_decay, progress=progress)
    state, history = reflow.reflow(
        built.model, k_train, x0, x1, num_steps=steps, optimizer=built.optimizer, params=start, **common
    )
    new_field = training.make_vector_field(built.model, state.params)
    report = {
        "before": _euler_report(field, x0_eval, x_ref),
        "after": _euler_report(new_field, x0_eval, x_ref),
        "pairs": pairs,
        "steps": steps,
        "loss": float(np.mean(history["loss"][-200:])),
        "parent_step": run.checkpoint_step,
    }
    origin = {
        "command": "reflow",
        "parent": str(run.directory),
        "parent_step": run.checkpoint_step,
        "pairs": pairs,
        "solver": solver,
        "ema": ema,
    }
    d_result = None
    if distill_steps:
        d_built = build(d_config, run.event_shape, None)
        y0, y1 = reflow.generate_pairs(new_field, k_pairs2, draw_source, pairs, solver=solver)
        d_state, d_hist = reflow.distill(
            d_built.model,
            k_distill,
            y0,
            y1,
            euler_steps=distill_steps,
            num_steps=k_steps,
            optimizer=d_built.optimizer,
            params=state.params,
            **common,
        )
        d_field = training.make_vector_field(d_built.model, d_state.params)
        x = np.asarray(sampling.sample(d_field, x0_eval, solver="euler", num_steps=distill_steps).x)
        d_result = {
            "euler_steps": distill_steps,
            "steps": k_steps,
            f"w2_euler{distill_steps}": None if x_ref is None else float(metrics.wasserstein(x, x_ref)),
            "loss": float(np.mean(d_hist["loss"][-200:])),
        }
        report["distill"] = d_result
    _write_derived(out, run, new_config, state, origin, report)
    if distill_steps:
        _write_derived(
            out / f"distill-{distill_steps}",
            run,
            d_config,
            d_state,
            dict(origin, command="distill", euler_steps=distill_steps),
            d_result,
        )
    report["out"] = str(out)
    return report
