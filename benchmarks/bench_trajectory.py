"""Leave-one-out time-course interpolation: a flow through the other snapshots, W2 at the held-out time.

Run (one pinned core; the full run takes about 8 minutes there):

    .venv/bin/python -m benchmarks.bench_trajectory --core 1 [--quick] [--steps 3000] [--seeds 0 1 2]
        [--held 1 2 3] [--init same]

``--quick``: a smoke test (held-out time index 2, seed 0, 40 steps, 200 points per time).

Data: ``fm.trajectories.branching_snapshots`` (a 2D population drifting right and splitting into
two branches along quadratic paths), ``--n`` points at each of the times 0, 0.25, 0.5, 0.75, 1
(data key per seed). For each held-out index k in ``--held`` (the middle times) the other four
snapshots are the training data; the held-out snapshot is only used to score.

Methods (the same snapshot arrays; one network for both libraries: 3 x 64 SELU, input ``[x, t]``,
torchcfm's ``MLP(dim=2, time_varying=True, w=64)`` and ours ``fm.models.MLP(2, (64, 64, 64),
activation="selu")``; Adam ``--lr``; ``--steps`` steps of about ``--batch`` examples each):

* ``flowjax_fm``: ``fm.trajectories.TrajectoryObjective(times)`` through
  ``fm.training.make_train_step`` / ``fit`` on ``make_trajectory_sampler`` (each step chains exact
  OT plans of ``--batch`` points per time into trajectories through the 4 training marginals; each
  example draws one segment and a time in it; time rescaled to the snapshot clock),
  ``GaussianPath(--sigma)`` per segment (OT-CFM's constant-width path).
* ``torchcfm``: its single-cell notebook's recipe: every step builds one batch of all consecutive
  training pairs (``--batch`` // 3 points of each pair, drawn with ``np.random``), paired by
  ``ExactOptimalTransportConditionalFlowMatcher(sigma=--sigma)`` (``OTPlanSampler``, exact), with the
  time rescaled: the network sees ``t_k + s (t_{k+1} - t_k)`` and regresses ``u / (t_{k+1} - t_k)``.
Initialisation (``--init same``, the default): per held-out time and seed torchcfm's MLP is
built first (torch seeded with the seed) and its initial weights are copied into ours (the same
architecture: ``[x, t]`` in, ``t`` one raw feature; checked equal on a random batch to 1e-5),
so both flows start from the same function (torch ``nn.Linear``'s uniform +- 1/sqrt(fan_in)).
``--init native``: each library its own initialisation (ours Flax nnx's defaults). Rows record
``init``; rows written before the flag existed are ``native``.

* ``McCann``: no training: the exact OT plan (``fm.couplings.ExactOTCoupling``) between the two
  snapshots around the held-out time, each pair interpolated linearly at the held-out time (the
  displacement interpolation of the neighbours).
* ``copy previous``: the snapshot before the held-out time, unchanged.

Scoring: the learnt ODE integrated (dopri5, rtol = atol = ``--rtol``; ours diffrax through
``fm.sampling.sample`` with ``t0`` / ``t1``, torchcfm torchdiffeq) from the previous snapshot's
points at ``t_{k-1}`` to ``t_k`` (``W2 from t_{k-1}``: the leave-one-out score of TrajectoryNet and
[SF]2M) and from the first snapshot at ``t_0`` (``W2 from t_0``); exact W2
(``fm.metrics.wasserstein``) against the held-out snapshot. ``resample W2``: W2 between the
held-out snapshot and a fresh sample of the same time, for scale; not a floor, since the two
samples split their points between the branches differently (binomial counts) and late in the
course the branches are far apart. Train time: wall time (ours: compilation included;
steps/s steady state), one core each.

Writes ``trajectory.jsonl`` (one line per held-out time, seed and method; appended),
``trajectory.md`` (mean +- sd over seeds, and ours against torchcfm per held-out time) and
``trajectory.png`` under ``RESULTS`` (``trajectory_quick.*`` with ``--quick``). The table keeps
the newest row of every run with this run's settings (``--init`` included); ``--render``
rewrites it.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks import _harness as h
from benchmarks import _peers as peers
from benchmarks import bench_bridges as bb

NAME = "trajectory"
METHODS = ("flowjax_fm", "torchcfm", "McCann", "copy previous")
LABELS = {"flowjax_fm": "flowjax_fm TrajectoryObjective (chained exact OT)",
          "torchcfm": "torchcfm OT-CFM on consecutive pairs", "McCann": "McCann interpolation of neighbours",
          "copy previous": "copy previous snapshot"}
DATA_KEY, FLOOR_KEY = 50_000, 60_000


def snapshots(seed: int, n: int):
    import jax

    import flowjax_fm as fm

    return fm.trajectories.branching_snapshots(jax.random.key(DATA_KEY + seed), n)


def w2(x, ref) -> float | None:
    import flowjax_fm as fm

    x = np.asarray(x)
    return float(fm.metrics.wasserstein(x, np.asarray(ref))) if np.isfinite(x).all() else None


def floor(seed: int, held: int, n: int, held_points) -> float:
    """W2 between the held-out snapshot and a fresh sample at its time."""
    import jax

    import flowjax_fm as fm

    other = fm.trajectories.branching_snapshots(jax.random.key(FLOOR_KEY + seed), n).points[held]
    return w2(other, held_points)


# -- ours -----------------------------------------------------------------------------------------


def ours(train, t_held, seed: int, args, init_from=None) -> dict:
    import jax
    import optax
    from flax import nnx

    import flowjax_fm as fm

    model = fm.models.MLP(2, (args.width,) * 3, activation="selu", rngs=nnx.Rngs(seed))
    init_diff = None if init_from is None else bb.copy_torch_init(model, init_from, seed)
    opt = optax.adam(args.lr)
    step = fm.training.make_train_step(model, optimizer=opt, path=fm.paths.GaussianPath(args.sigma),
                                       objective=fm.trajectories.TrajectoryObjective(train.times))
    state, hist, timing = h.fit_timed(step, fm.training.init_state(model, opt), jax.random.key(seed), None,
                                      fm.trajectories.make_trajectory_sampler(train), steps=args.steps,
                                      batch=args.batch, chunk=min(args.chunk, args.steps))
    field = fm.training.make_vector_field(model, state.params)
    times = np.asarray(train.times)
    k = int(np.searchsorted(times, float(t_held)))  # train index of the time after the held-out one

    def push(x, t0):
        return fm.sampling.sample(field, x, t0=t0, t1=float(t_held), solver="dopri5", rtol=args.rtol,
                                  atol=args.rtol)

    prev = push(train.points[k - 1], float(times[k - 1]))
    first = push(train.points[0], float(times[0]))
    tail = np.asarray(hist["loss"][-min(200, len(hist["loss"])):])
    return {"x_prev": prev.x, "x_t0": first.x, "nfe": int(prev.nfe), "train_s": timing.train_s,
            "compile_s": timing.compile_s, "steps_per_s": timing.steps_per_s, "final_loss": float(tail.mean()),
            "init_max_diff": init_diff}


def mccann(train, t_held) -> np.ndarray:
    """Exact OT between the neighbours of the held-out time, interpolated at it."""
    import jax

    import flowjax_fm as fm

    times = np.asarray(train.times)
    k = int(np.searchsorted(times, float(t_held)))
    a, b = train.points[k - 1], train.points[k]
    if a.shape[0] != b.shape[0]:
        raise ValueError("McCann interpolation here needs equal snapshot sizes")
    pairing = fm.couplings.ExactOTCoupling()(jax.random.key(0), a, b)
    alpha = (float(t_held) - times[k - 1]) / (times[k] - times[k - 1])
    return np.asarray((1 - alpha) * a[pairing.source] + alpha * b[pairing.target])


# -- torchcfm ------------------------------------------------------------------------------------


def torchcfm(train, t_held, seed: int, args, nets=None) -> dict:
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

    t = peers.torch()
    (net,), rng = nets or bb.torch_mlps(seed, args.width, 1)  # seeded, then the network: as before
    bb.restore_rng(rng)
    times = np.asarray(train.times, np.float64)
    xs = [t.from_numpy(np.array(x, np.float32)) for x in train.points]
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=args.sigma)
    opt = t.optim.Adam(net.parameters(), args.lr)
    per_pair = max(args.batch // (len(xs) - 1), 1)
    rng = np.random  # torchcfm's plan sampler draws from numpy's global RNG too (seeded above)
    losses = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.steps):
            opt.zero_grad()
            ts, xts, uts = [], [], []
            for k in range(len(xs) - 1):
                x0 = xs[k][rng.randint(xs[k].shape[0], size=per_pair)]
                x1 = xs[k + 1][rng.randint(xs[k + 1].shape[0], size=per_pair)]
                s, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
                dt = float(times[k + 1] - times[k])
                ts.append(float(times[k]) + s * dt)
                xts.append(xt)
                uts.append(ut / dt)
            tt, xt, ut = t.cat(ts), t.cat(xts), t.cat(uts)
            loss = t.mean((net(t.cat([xt, tt[:, None]], dim=-1)) - ut) ** 2)
            loss.backward()
            opt.step()
            losses.append(float(loss))
    train_s = time.perf_counter() - start
    k = int(np.searchsorted(times, float(t_held)))

    def push(x, t0):
        field = peers.CountedField(net)
        with t.no_grad():
            out = peers.torchdiffeq().odeint(field, t.from_numpy(np.array(x, np.float32)),
                                             t.tensor([t0, float(t_held)]), method="dopri5",
                                             rtol=args.rtol, atol=args.rtol)[-1]
        return out.numpy(), field.nfe

    x_prev, nfe = push(train.points[k - 1], float(times[k - 1]))
    x_t0, _ = push(train.points[0], float(times[0]))
    return {"x_prev": x_prev, "x_t0": x_t0, "nfe": nfe, "train_s": train_s, "compile_s": None,
            "steps_per_s": args.steps / train_s, "final_loss": float(np.mean(losses[-min(200, len(losses)):]))}


# -- the suite ------------------------------------------------------------------------------------


def settings(args) -> dict:
    return {"steps": args.steps, "batch": args.batch, "lr": args.lr, "width": args.width, "sigma": args.sigma,
            "n": args.n, "rtol": args.rtol, "init": args.init}


def flags(ap) -> None:
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--held", type=int, nargs="+", default=[1, 2, 3], help="held-out time indices (of 0..4)")
    ap.add_argument("--n", type=int, default=1000, help="points per snapshot")
    ap.add_argument("--batch", type=int, default=256, help="ours: trajectories per step; torchcfm: // 3 per pair")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.1, help="OT-CFM path width (both libraries)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="dopri5 rtol = atol (both libraries)")
    ap.add_argument("--chunk", type=int, default=500, help="ours: steps per compiled chunk")
    ap.add_argument("--no-torch", action="store_true", help="skip the torchcfm side")
    bb.init_flag(ap)


def setup(ctx) -> None:
    ctx.data["torch_off"] = peers.start("torchcfm side", "torch", "torchcfm", "torchdiffeq",
                                        off="--no-torch" if ctx.args.no_torch else None)
    bb.need_torch_init(ctx)


def cases(ctx):
    for held in ctx.args.held:
        for seed in ctx.args.seeds:
            yield {"held": held, "seed": seed}


def run_case(ctx, case) -> list[dict]:
    a = ctx.args
    snaps = snapshots(case["seed"], a.n)
    train, t_held, held_points = snaps.leave_out(case["held"])
    base = {"suite": NAME, **case, "t_held": float(t_held), "command": ctx.command, "threads": ctx.threads,
            "w2_floor": floor(case["seed"], case["held"], a.n, held_points), **settings(a)}
    rows = []
    nets = bb.torch_mlps(case["seed"], a.width, 1) if a.init == "same" else None
    for method in METHODS:
        if method == "torchcfm" and ctx.data["torch_off"]:
            continue
        if method in ("flowjax_fm", "torchcfm"):
            if method == "flowjax_fm":
                r = ours(train, t_held, case["seed"], a, init_from=nets and nets[0][0])
            else:
                r = torchcfm(train, t_held, case["seed"], a, nets=nets)
            row = {k: v for k, v in r.items() if not k.startswith("x_")}
            row.update(w2_prev=w2(r["x_prev"], held_points), w2_t0=w2(r["x_t0"], held_points),
                       load_after=h.load_avg())
        elif method == "McCann":
            row = {"w2_prev": w2(mccann(train, t_held), held_points)}
        else:
            k = int(np.searchsorted(np.asarray(train.times), float(t_held)))
            row = {"w2_prev": w2(train.points[k - 1], held_points)}
        rows.append({**base, "method": method, **row})
    return rows


def history(ctx, rows):
    keep = bb.wanted(rows, NAME, ctx.quick, settings(ctx.args))
    return h.latest(keep, lambda r: (r["held"], r["seed"], r["method"]))


def table_rows(ctx, rows):
    out = []
    for held in sorted({r["held"] for r in rows}):
        for method in METHODS:
            rs = sorted((r for r in rows if (r["held"], r["method"]) == (held, method)), key=lambda r: r["seed"])
            if rs:
                out.append({"held": held, "t": rs[0]["t_held"], "method": method, "rows": rs})
    return out


def _mean(t, key, spec=".1f"):
    return h.fmt(h.mean_of(t["rows"], key), spec)


COLUMNS = [
    ("held-out t", lambda t: f"{t['t']:g}"), ("method", lambda t: LABELS[t["method"]]),
    ("seeds", lambda t: len(t["rows"])),
    ("W2 from t_{k-1}", lambda t: h.mean_sd(r.get("w2_prev") for r in t["rows"])),
    ("W2 from t_0", lambda t: h.mean_sd(r.get("w2_t0") for r in t["rows"])),
    ("resample W2", lambda t: f"{h.mean_of(t['rows'], 'w2_floor'):.3f}"),
    ("NFE", lambda t: _mean(t, "nfe", ".0f")), ("train s", lambda t: _mean(t, "train_s")),
    ("steps/s", lambda t: _mean(t, "steps_per_s", ".0f")), ("final loss", lambda t: _mean(t, "final_loss", ".3g")),
]


def extra_md(ctx, rows) -> str:
    lines = []
    for held in sorted({r["held"] for r in rows}):
        by = {m: {r["seed"]: r for r in rows if (r["held"], r["method"]) == (held, m)} for m in METHODS}
        for key, what in (("w2_prev", "from t_{k-1}"), ("w2_t0", "from t_0")):
            a, b = by["flowjax_fm"], by["torchcfm"]
            both = [s for s in a if s in b and a[s].get(key) is not None and b[s].get(key) is not None]
            if not both:
                continue
            wa = float(np.mean([a[s][key] for s in both]))
            wb = float(np.mean([b[s][key] for s in both]))
            wins = sum(a[s][key] <= b[s][key] for s in both)
            mc = h.mean_of(by["McCann"].values(), "w2_prev")
            lines.append([f"{next(iter(a.values()))['t_held']:g}", what, f"{wa:.3f}", f"{wb:.3f}",
                          "yes" if wa <= wb else "**no**", f"{wins}/{len(both)}", h.fmt(mc, ".3f")])
    if not lines:
        return ""
    return (f"\n## Ours against torchcfm, per held-out time (init: {bb.init_of(rows)})\n\n"
            "Mean W2 over the seeds both ran; 'at least as good': our mean <= torchcfm's; per seed: seeds where "
            "ours <= torchcfm's; McCann: the no-training baseline.\n\n"
            + h.markdown_table(["held-out t", "integrated", "W2 ours", "W2 torchcfm", "at least as good",
                                "per seed", "McCann"], lines))


def preamble(ctx, rows) -> str:
    r0 = rows[0]
    loads = [r["load_after"] for r in rows if r.get("load_after") is not None]
    load = f"; 1-minute load after each training {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    return (
        f"{h.env_line(ctx.env, r0.get('threads') or ctx.threads)}{load} (2 cores; the other core ran other "
        f"work). fm.trajectories.branching_snapshots, {r0['n']} points at t = 0, 0.25, 0.5, 0.75, 1 (data key "
        f"per seed); one time held out, the flow trained on the other four. Both flows: MLP 3x{r0['width']} "
        f"SELU, Adam {r0['lr']}, {r0['steps']} steps, OT-CFM path width sigma {r0['sigma']}; ours "
        f"{r0['batch']} chained exact-OT trajectories per step (one segment each), torchcfm "
        f"{r0['batch'] // 3} OT pairs of each of the 3 consecutive training pairs per step. W2: exact, "
        f"against the held-out snapshot, after integrating the learnt ODE (dopri5, rtol = atol = "
        f"{r0['rtol']}) from the previous snapshot (t_(k-1)) or the first (t_0); mean +- sd over seeds. "
        f"Resample W2: the held-out snapshot against a fresh sample of its time (not a floor: a fresh "
        f"sample splits its points between the branches differently, and each point off by a branch costs "
        f"the branches' distance, 6 t^2; a flow pushing the previous snapshot keeps that one's split). Train s: wall time (ours: "
        f"compilation included; steps/s steady). Command: "
        f"{'; '.join(sorted({r.get('command') or ctx.command for r in rows}))}.\n\n"
        f"{bb.init_words(bb.init_of([r for r in rows if r['method'] == 'flowjax_fm'] or rows))}."
    )


def plot(ctx, rows) -> None:
    points = [{"method": t["method"], "t": t["t"], "w2": h.mean_of(t["rows"], "w2_prev")}
              for t in table_rows(ctx, rows) if h.mean_of(t["rows"], "w2_prev") is not None]
    h.write_plot(ctx.file("png"), points, "t", "w2", ["method"], title="leave-one-out W2 (from t_(k-1))",
                 xlabel="held-out time", ylabel="W2 to held-out snapshot", logx=False, logy=False)


SUITE = h.Suite(
    name=NAME, title="Leave-one-out time-course interpolation, 2D branching (beside torchcfm)", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"steps": 40, "seeds": [0], "held": [2], "n": 200, "batch": 64, "chunk": 20},
    quick_file=True, pin=True, peak=False, setup=setup, history=history, table_rows=table_rows,
    extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
