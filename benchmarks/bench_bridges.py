"""[SF]2M on 2D tasks: the bridge SDE against the ODE of the same trained model, beside torchcfm.

Run (one pinned core; the full run takes about 20 minutes there):

    .venv/bin/python -m benchmarks.bench_bridges --core 1 [--quick] [--steps 4000] [--seeds 0 1 2]
        [--tasks "8gaussians->moons" "N(0,I)->moons"] [--couplings exact sinkhorn] [--init same]

``--quick``: a smoke test (8gaussians -> moons, exact OT, seed 0, 60 steps, 200 evaluation
points, one timed repeat).

Setting: torchcfm's [SF]2M notebook (``examples/2D_tutorials/SF2M_tutorial.ipynb``): sigma = 1
(``--sigma``), a flow network and a score network, each torchcfm's ``MLP(dim=2,
time_varying=True, w=64)`` (3 x 64 SELU, input ``[x, t]``; ours ``fm.models.MLP(2, (64, 64,
64), activation="selu")`` twice, in one module returning ``(v, s)``), one Adam over both at lr
1e-2, batch 256, loss = flow + score with [SF]2M's lambda(t) weighting. The notebook runs 10,000
steps; the default budget here is ``--steps`` 4,000 per run. Pairs: exact OT (the notebook's
default ``ot_method="exact"``) and entropic OT at regularisation 2 sigma^2 (``sinkhorn``).

Same initial networks (``--init same``, the default): per task and seed, torchcfm's two MLPs
are built first (torch seeded with the seed, as its notebook would), and their initial weights
are copied into ours (the two architectures are the same function: input ``[x, t]`` with ``t``
as one raw feature, three ``Linear`` + SELU layers of ``--width`` and a ``Linear`` output;
ours with ``time_frequencies=0``); the two flows and the two scores are checked to agree on a
random batch to 1e-5 before training. Both libraries therefore start from torch's
``nn.Linear`` initialisation (uniform +- 1/sqrt(fan_in), weights and biases). ``--init
native``: each library its own initialisation (ours Flax nnx's defaults, seeded by the seed):
the comparison then also measures the two initialisations. Rows record ``init``; rows written
before the flag existed are ``native``.

Same arrays: per task and seed, every training batch is drawn up front (``fm.data`` samplers,
one 256-point draw per step, as torchcfm's notebook draws per step) and both libraries train on
batch ``i`` at step ``i``. Ours: ``fm.training.make_train_step`` with
``BrownianBridgePath(sigma)``, ``SF2MObjective()`` (score convention ``"lambda"``: the network
learns the score) and ``ExactOTCoupling()`` / ``SinkhornCoupling(epsilon=2 sigma^2)``, run as
a compiled ``lax.scan`` over the batches in chunks of 500 (compilation timed apart). torchcfm:
``SchrodingerBridgeConditionalFlowMatcher(sigma, ot_method)`` with ``compute_lambda`` (its score
network learns sigma^2/2 x the score), the notebook's loop, one thread.

Sampling, from the same ``--eval`` source points for every sampler, library and seed. Ours (the
same trained pair ``v``, ``s``):

* ``SDE EM 100``: ``fm.sampling.sample_sde(v, s, x0, sigma=sigma, solver="euler",
  num_steps=100)``, the bridge SDE dx = [v + sigma^2/2 s] dt + sigma dW (Euler-Maruyama);
* ``SDE ShARK 50``: ``solver="shark"``, 50 steps (2 evaluations each: 100 NFE);
* ``SDE Heun adaptive``: ``solver="heun", adaptive=True``, rtol = atol = ``--sde-tol``;
* ``ODE v dopri5``: the flow alone, ``fm.sampling.sample(v, x0, solver="dopri5")`` at
  rtol = atol = ``--rtol``;
* ``ODE prob.-flow dopri5``: ``fm.sampling.probability_flow(v + sigma^2/2 s, s, sigma)``, the
  probability-flow ODE of the SDE's full drift (mathematically the field v again: a check).

torchcfm (the notebook's sampling): ``torchsde.sdeint`` on drift ``v + s`` and diffusion sigma,
``method="euler"`` with dt = 0.01 (``SDE EM 100``) and torchsde's default for diagonal Ito
noise, ``srk`` at its default dt = 1e-3 (``SDE SRK dt=1e-3``: what the notebook actually runs,
since ``sdeint`` ignores its ``solver="euler"`` argument; seed 0 only, ``--torch-srk-seeds``,
about 10 drift evaluations a step); ``torchdiffeq.odeint`` dopri5 on v at
rtol = atol = ``--rtol`` (``ODE v dopri5``). NFE: drift evaluations (each one flow and one
score network call), counted by wrapping the function.

Scoring: exact W2 (``fm.metrics.wasserstein``, the same function for both sides) between the
``--eval`` samples and ``--eval`` fixed target points never used in training; the floor is
W2 between two independent target samples. Cost: wall time per 1,000 samples, the median of
``--repeats`` calls (every call blocked until ready; ours: the first call, with compilation,
reported apart as ``compile s``), on one core for both libraries.

Writes ``bridges.jsonl`` (one line per task, coupling, seed, library and sampler; appended),
``bridges.md`` (mean +- sd over seeds, and ours against torchcfm cell by cell) and
``bridges.png`` (W2 against cost) under ``RESULTS`` (``bridges_quick.*`` with ``--quick``).
The table keeps the newest row of every run with this run's settings (``--init`` included);
``--render`` rewrites it.
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np

from benchmarks import _harness as h
from benchmarks import _peers as peers

NAME = "bridges"
TASKS = {"8gaussians->moons": ("8gaussians", "moons"), "N(0,I)->moons": ("gaussian", "moons")}
COUPLINGS = ("exact", "sinkhorn")
OURS = ("SDE EM 100", "SDE ShARK 50", "SDE Heun adaptive", "ODE v dopri5", "ODE prob.-flow dopri5")
PEER = ("SDE EM 100", "SDE SRK dt=1e-3", "ODE v dopri5")
LIBS = ("flowjax_fm", "torchcfm")
CHUNK = 500
DATA_KEY, EVAL_KEYS = 20_000, (30_001, 30_002, 30_003)  # training batches; source, target, floor
SDE_KEY = 40_000
INITS = ("same", "native")
LEGACY = {"init": "native", "eval_draws": 1}  # the value of a setting in rows written before it existed
INIT_TOL = 1e-5


# -- one initialisation for both libraries -------------------------------------------------------


def torch_mlps(seed: int, width: int, count: int):
    """``count`` torchcfm MLPs (2D, ``[x, t]`` input) built after seeding with ``seed``, and the
    torch and numpy RNG states right after building (restore them before the torch training, so
    its draws do not depend on what ran in between)."""
    t = peers.torch()
    peers.seed(seed)
    nets = [peers.mlp(2, width) for _ in range(count)]
    return nets, (t.get_rng_state(), np.random.get_state())  # noqa: NPY002 - torchcfm's global RNG


def restore_rng(state) -> None:
    t = peers.torch()
    t.set_rng_state(state[0])
    np.random.set_state(state[1])  # noqa: NPY002


def copy_torch_init(model, net, seed: int) -> float:
    """Load the weights of torchcfm's ``MLP`` ``net`` into our ``fm.models.MLP`` ``model``.

    Checks first that the two are the same function of their parameters (``[x, t]`` in, ``t`` as
    one raw feature, the same widths, SELU, a linear output), then that the two networks agree
    on a random batch to ``INIT_TOL``. Returns that largest absolute difference.
    """
    import jax
    import jax.numpy as jnp

    t = peers.torch()
    linears = [m for m in net.net if isinstance(m, t.nn.Linear)]
    acts = [m for m in net.net if not isinstance(m, t.nn.Linear)]
    ours = [*model.layers, model.out]
    if (model.time_frequencies, model.periodic, model.two_time, model.num_classes, model.cond_dim) != (
            0, False, False, None, None) or model.activation is not jax.nn.selu:
        raise ValueError("our MLP must take [x, t] (time_frequencies=0, unconditional, one time) with SELU")
    if len(linears) != len(ours) or not all(isinstance(m, t.nn.SELU) for m in acts):
        raise ValueError(f"layer structures differ: torch {net.net}, ours {len(ours)} Linear layers")
    for theirs, mine in zip(linears, ours, strict=True):
        w, b = theirs.weight.detach().numpy(), theirs.bias.detach().numpy()  # (out, in), (out,)
        if mine.kernel[...].shape != w.T.shape or mine.bias[...].shape != b.shape:
            raise ValueError(f"layer shapes differ: torch {w.shape}, ours {mine.kernel[...].shape}")
        mine.kernel[...] = jnp.asarray(w.T.copy())
        mine.bias[...] = jnp.asarray(b.copy())
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 2)).astype(np.float32) * 2
    tt = rng.uniform(size=256).astype(np.float32)
    with t.no_grad():
        want = net(t.from_numpy(np.concatenate([x, tt[:, None]], axis=1))).numpy()
    got = np.asarray(model(jnp.asarray(x), jnp.asarray(tt)))
    diff = float(np.abs(got - want).max())
    if not diff <= INIT_TOL:
        raise AssertionError(f"initial networks differ by {diff:.2e} > {INIT_TOL:g} on a random batch")
    return diff


def wanted(rows, suite: str, quick: bool, want: dict) -> list[dict]:
    """The rows of ``suite`` run with settings ``want`` (a setting a row lacks: ``LEGACY``'s)."""
    return [r for r in rows if r.get("suite") == suite and r.get("quick") == quick
            and all(r.get(k, LEGACY.get(k)) == v for k, v in want.items())]


def init_of(rows) -> str:
    return rows[0].get("init", LEGACY["init"]) if rows else LEGACY["init"]


def init_words(init: str) -> str:
    if init == "same":
        return ("Init: **same**: both libraries start from identical networks (torchcfm's MLPs built "
                "first, seeded, their nn.Linear initial weights copied into ours; checked equal on a "
                "random batch to 1e-5 before training)")
    return ("Init: **native**: each library its own initialisation (ours Flax nnx defaults, torchcfm "
            "torch nn.Linear's uniform +- 1/sqrt(fan_in))")


# -- data ---------------------------------------------------------------------------------------


def batches(task: str, seed: int, steps: int, batch: int):
    """``(x0, x1)``, each ``(steps, batch, 2)`` float32 numpy: batch ``i`` is step ``i``'s draw."""
    import jax

    import flowjax_fm as fm

    src, tgt = TASKS[task]
    k0, k1 = jax.random.split(jax.random.fold_in(jax.random.key(DATA_KEY), seed))
    draw = lambda name, k: jax.vmap(lambda kk: fm.data.sample_toy(name, kk, batch))(  # noqa: E731
        jax.random.split(k, steps))
    return np.asarray(draw(src, k0)), np.asarray(draw(tgt, k1))


def eval_sets(ctx, task: str):
    """The task's fixed evaluation source and target points and its W2 floor (cached)."""
    import jax

    import flowjax_fm as fm

    if task not in ctx.data["eval"]:
        n, (src, tgt) = ctx.args.eval, TASKS[task]
        # several source draws (W2 averaged): on N(0, I) -> moons one draw's split of its points
        # between the two moons moves W2 by ~0.1 (see bench_fewstep's docstring)
        x0 = [np.asarray(fm.data.sample_toy(src, jax.random.key(EVAL_KEYS[0] + 1000 * j), n))
              for j in range(ctx.args.eval_draws)]
        ref = np.asarray(fm.data.sample_toy(tgt, jax.random.key(EVAL_KEYS[1]), n))
        other = np.asarray(fm.data.sample_toy(tgt, jax.random.key(EVAL_KEYS[2]), n))
        ctx.data["eval"][task] = (x0, ref, float(fm.metrics.wasserstein(ref, other)))
    return ctx.data["eval"][task]


def w2(x, ref) -> float | None:
    import flowjax_fm as fm

    x = np.asarray(x)
    return float(fm.metrics.wasserstein(x, ref)) if np.isfinite(x).all() else None


# -- ours -----------------------------------------------------------------------------------------


@functools.cache
def _module_class():
    from flax import nnx

    import flowjax_fm as fm

    class FlowAndScore(nnx.Module):
        """Two torchcfm-sized MLPs (3 x width SELU, input [x, t]): ``(v, s)``."""

        def __init__(self, width: int, rngs: nnx.Rngs):
            hidden = (width, width, width)
            self.flow = fm.models.MLP(2, hidden, activation="selu", rngs=rngs)
            self.score = fm.models.MLP(2, hidden, activation="selu", rngs=rngs)

        def __call__(self, x, t, cond=None):
            return self.flow(x, t), self.score(x, t)

    return FlowAndScore


def coupling(name: str, sigma: float):
    import flowjax_fm as fm

    if name == "exact":
        return fm.couplings.ExactOTCoupling()
    return fm.couplings.SinkhornCoupling(epsilon=2.0 * sigma**2)


def train_ours(xs0, xs1, seed: int, coupling_name: str, args, init_from=None):
    """Train on the given batches: ``(model, params, row)``; ``init_from``: torch ``(flow,
    score)`` networks whose initial weights ours copies."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import flowjax_fm as fm

    model = _module_class()(args.width, nnx.Rngs(seed))
    init_diff = None
    if init_from is not None:
        init_diff = max(copy_torch_init(model.flow, init_from[0], seed),
                        copy_torch_init(model.score, init_from[1], seed + 1))
    opt = optax.adam(args.lr)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.BrownianBridgePath(args.sigma),
        coupling=coupling(coupling_name, args.sigma), objective=fm.losses.SF2MObjective())
    state = fm.training.init_state(model, opt)
    key = jax.random.key(seed)

    @jax.jit
    def chunk(state, xs0, xs1, offset):
        def body(s, inp):
            i, a, b = inp
            s, m = step(s, jax.random.fold_in(key, i), a, b)
            return s, m["loss"]

        return jax.lax.scan(body, state, (offset + jnp.arange(xs0.shape[0]), xs0, xs1))

    stamps, losses = [time.perf_counter()], []
    n = min(CHUNK, args.steps)
    for start in range(0, args.steps, n):
        state, loss = chunk(state, xs0[start:start + n], xs1[start:start + n], start)
        losses.append(np.asarray(jax.block_until_ready(loss)))
        stamps.append(time.perf_counter())
    per = np.diff(stamps)
    full = per[1:] if args.steps % n == 0 else per[1:-1]
    steady = float(np.median(full)) if len(full) else None
    loss = np.concatenate(losses)
    row = {"train_s": float(per.sum()), "compile_s": None if steady is None else float(per[0] - steady),
           "steps_per_s": (n / steady) if steady else args.steps / float(per.sum()),
           "final_loss": float(loss[-min(200, len(loss)):].mean()), "init_max_diff": init_diff}
    return model, state.params, row


def samplers_ours(model, params, args):
    """``{label: call(x0, key) -> SampleResult}`` over one trained pair (function objects reused)."""
    import flowjax_fm as fm

    v = fm.training.make_vector_field(model.flow, params["flow"])
    s = fm.training.make_vector_field(model.score, params["score"])
    sig = args.sigma
    full_drift = lambda x, t: v(x, t) + 0.5 * sig**2 * s(x, t)  # noqa: E731
    pf = fm.sampling.probability_flow(full_drift, s, sig)
    sde = fm.sampling.sample_sde
    return {
        "SDE EM 100": lambda x0, k: sde(v, s, x0, sigma=sig, key=k, num_steps=args.sde_steps),
        "SDE ShARK 50": lambda x0, k: sde(v, s, x0, sigma=sig, key=k, num_steps=args.sde_steps // 2,
                                          solver="shark"),
        "SDE Heun adaptive": lambda x0, k: sde(v, s, x0, sigma=sig, key=k, num_steps=args.sde_steps // 4,
                                               solver="heun", adaptive=True, rtol=args.sde_tol,
                                               atol=args.sde_tol),
        "ODE v dopri5": lambda x0, k: fm.sampling.sample(v, x0, solver="dopri5", rtol=args.rtol, atol=args.rtol),
        "ODE prob.-flow dopri5": lambda x0, k: fm.sampling.sample(pf, x0, solver="dopri5", rtol=args.rtol,
                                                                  atol=args.rtol),
    }


def _over_draws(scores: list) -> dict:
    """``w2``: the mean over the source draws (None if any failed); ``w2_draws``: each."""
    mean = None if any(v is None for v in scores) else float(np.mean(scores))
    return {"w2": mean, **({"w2_draws": scores} if len(scores) > 1 else {})}


def sample_ours(model, params, x0, ref, seed: int, args) -> list[dict]:
    import jax
    import jax.numpy as jnp

    out = []
    x0j = [jnp.asarray(x) for x in x0]
    for label, call in samplers_ours(model, params, args).items():
        key = jax.random.fold_in(jax.random.key(SDE_KEY), seed)
        t = h.time_fn(lambda call=call, key=key: call(x0j[0], key), args.repeats)
        res = t.out
        scores = [w2(res.x, ref)] + [w2(call(x, key).x, ref) for x in x0j[1:]]
        out.append({"sampler": label, **_over_draws(scores), "nfe": int(res.nfe),
                    "per_1k_s": t.median_s * 1000 / len(x0[0]), "iqr_per_1k_s": t.iqr_s * 1000 / len(x0[0]),
                    "sample_compile_s": t.compile_s, "sample_first_s": t.first_s})
    return out


# -- torchcfm ------------------------------------------------------------------------------------


def train_torch(xs0, xs1, seed: int, coupling_name: str, args, nets=None):
    """torchcfm's SF2M notebook loop on the given batches: ``(flow, score, row)``; ``nets``: a
    :func:`torch_mlps` result (built here when None: the same networks and RNG draws)."""
    from torchcfm.conditional_flow_matching import SchrodingerBridgeConditionalFlowMatcher

    t = peers.torch()
    (flow, score), rng = nets or torch_mlps(seed, args.width, 2)
    restore_rng(rng)
    matcher = SchrodingerBridgeConditionalFlowMatcher(sigma=args.sigma, ot_method=coupling_name)
    opt = t.optim.Adam(list(flow.parameters()) + list(score.parameters()), args.lr)
    a, b = t.from_numpy(xs0), t.from_numpy(xs1)
    losses = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(args.steps):
            opt.zero_grad()
            s_, xt, ut, eps = matcher.sample_location_and_conditional_flow(a[i], b[i], return_noise=True)
            lam = matcher.compute_lambda(s_)
            inp = t.cat([xt, s_[:, None]], dim=-1)
            loss = t.mean((flow(inp) - ut) ** 2) + t.mean((lam[:, None] * score(inp) + eps) ** 2)
            loss.backward()
            opt.step()
            losses.append(float(loss))
    train_s = time.perf_counter() - start
    row = {"train_s": train_s, "compile_s": None, "steps_per_s": args.steps / train_s,
           "final_loss": float(np.mean(losses[-min(200, len(losses)):]))}
    return flow, score, row


class _TorchSDE:
    """torchsde's SDE: drift ``v + s`` (torchcfm's score network is sigma^2/2 x the score),
    diagonal diffusion sigma; counts drift evaluations."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, flow, score, sigma: float):
        self.flow, self.score, self.sigma, self.nfe = flow, score, sigma, 0

    def f(self, s, y):
        t = peers.torch()
        self.nfe += 1
        inp = t.cat([y, s.reshape(1, 1).expand(y.shape[0], 1).to(y.dtype)], dim=-1)
        return self.flow(inp) + self.score(inp)

    def g(self, s, y):
        return peers.torch().ones_like(y) * self.sigma


def sample_torch(flow, score, x0, ref, seed: int, args) -> list[dict]:
    import torchsde

    t = peers.torch()
    x0s = [t.from_numpy(np.asarray(x, np.float32)) for x in x0]
    span = t.tensor([0.0, 1.0])

    def sde(method, dt):
        def call(x0t):
            peers.seed(SDE_KEY + seed)
            sde_ = _TorchSDE(flow, score, args.sigma)
            with t.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x = torchsde.sdeint(sde_, x0t, span, method=method, dt=dt)[-1]
            return x.numpy(), sde_.nfe
        return call

    calls = {"SDE EM 100": sde("euler", 1.0 / args.sde_steps),
             "SDE SRK dt=1e-3": sde("srk", 1e-3),
             "ODE v dopri5": lambda x0t: peers.dopri5(flow, x0t, args.rtol)}
    if seed not in args.torch_srk_seeds:
        del calls["SDE SRK dt=1e-3"]
    out = []
    for label, call in calls.items():
        reps = 1 if label.startswith("SDE SRK") else args.repeats  # seconds per call: one is enough
        tm = h.time_fn(lambda call=call: call(x0s[0]), reps, first_apart=False)
        x, nfe = tm.out
        scores = [w2(x, ref)] + [w2(call(x0t)[0], ref) for x0t in x0s[1:]]
        out.append({"sampler": label, **_over_draws(scores), "nfe": int(nfe),
                    "per_1k_s": tm.median_s * 1000 / len(x0[0]), "iqr_per_1k_s": tm.iqr_s * 1000 / len(x0[0]),
                    "sample_compile_s": None, "sample_first_s": tm.first_s})
    return out


# -- the suite ------------------------------------------------------------------------------------


def settings(args) -> dict:
    """What makes runs comparable (the table only mixes rows with equal settings)."""
    return {"steps": args.steps, "batch": args.batch, "lr": args.lr, "width": args.width, "sigma": args.sigma,
            "eval": args.eval, "sde_steps": args.sde_steps, "sde_tol": args.sde_tol, "rtol": args.rtol,
            "init": args.init, "eval_draws": args.eval_draws}


def flags(ap) -> None:
    ap.add_argument("--steps", type=int, default=4000, help="optimiser steps per run (notebook: 10,000)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--couplings", nargs="+", default=list(COUPLINGS), choices=list(COUPLINGS))
    ap.add_argument("--sigma", type=float, default=1.0, help="bridge noise (torchcfm's SF2M notebook: 1)")
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam step over both networks (notebook: 1e-2)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=64, help="MLP width, 3 hidden layers, SELU")
    ap.add_argument("--eval", type=int, default=2000, help="generated and target points per W2")
    ap.add_argument("--eval-draws", type=h.positive_int, default=5,
                    help="source draws per score: W2 is their mean (timings use the first)")
    ap.add_argument("--sde-steps", type=int, default=100, help="Euler-Maruyama steps (ShARK: half)")
    ap.add_argument("--sde-tol", type=float, default=1e-2, help="adaptive Heun rtol = atol")
    ap.add_argument("--rtol", type=float, default=1e-4, help="dopri5 rtol = atol (both libraries)")
    ap.add_argument("--torch-srk-seeds", type=int, nargs="*", default=[0],
                    help="seeds on which torchsde's default srk at dt = 1e-3 runs (about 20 s per 1,000 "
                         "samples: the slowest sampler)")
    ap.add_argument("--no-torch", action="store_true", help="ours only")
    init_flag(ap)


def init_flag(ap) -> None:
    ap.add_argument("--init", choices=INITS, default="same",
                    help="same: both libraries start from torchcfm's seeded initial networks (copied into "
                         "ours); native: each its own initialisation")


def need_torch_init(ctx) -> None:
    """``--init same`` builds the torch networks even without the torchcfm side: torch needed."""
    if ctx.args.init == "same":
        reason = peers.missing("torch", "torchcfm")
        if reason:
            raise SystemExit(f"--init same needs torch and torchcfm ({reason}); use --init native")
        peers.torch()


def setup(ctx) -> None:
    from importlib import metadata

    try:  # the harness's version record leaves torchsde out
        ctx.data["torchsde"] = metadata.version("torchsde")
    except metadata.PackageNotFoundError:
        ctx.data["torchsde"] = None
    ctx.args.repeats = ctx.repeats  # the harness's default / --quick value, for the samplers
    ctx.data["eval"] = {}
    ctx.data["torch_off"] = peers.start("torchcfm side", "torch", "torchcfm", "torchsde", "torchdiffeq",
                                        off="--no-torch" if ctx.args.no_torch else None)
    need_torch_init(ctx)


def cases(ctx):
    for task in ctx.args.tasks:
        for coup in ctx.args.couplings:
            for seed in ctx.args.seeds:
                yield {"task": task, "coupling": coup, "seed": seed}


def run_case(ctx, case) -> list[dict]:
    a = ctx.args
    x0, ref, floor = eval_sets(ctx, case["task"])
    xs0, xs1 = batches(case["task"], case["seed"], a.steps, a.batch)
    base = {"suite": NAME, **case, "w2_floor": floor, "command": ctx.command, "threads": ctx.threads,
            "repeats": a.repeats, "torchsde": ctx.data["torchsde"], **settings(a)}
    rows = []
    nets = torch_mlps(case["seed"], a.width, 2) if a.init == "same" else None
    model, params, train = train_ours(xs0, xs1, case["seed"], case["coupling"], a,
                                      init_from=nets and nets[0])
    train["load_after"] = h.load_avg()
    rows += [{**base, "library": "flowjax_fm", **train, **r}
             for r in sample_ours(model, params, x0, ref, case["seed"], a)]
    if not ctx.data["torch_off"]:
        flow, score, train = train_torch(xs0, xs1, case["seed"], case["coupling"], a, nets=nets)
        train["load_after"] = h.load_avg()
        rows += [{**base, "library": "torchcfm", **train, **r}
                 for r in sample_torch(flow, score, x0, ref, case["seed"], a)]
    return rows


def history(ctx, rows):
    keep = wanted(rows, NAME, ctx.quick, settings(ctx.args))
    return h.latest(keep, lambda r: (r["task"], r["coupling"], r["seed"], r["library"], r["sampler"]))


def table_rows(ctx, rows):
    out = []
    for task in TASKS:
        for coup in COUPLINGS:
            for lib, samplers in (("flowjax_fm", OURS), ("torchcfm", PEER)):
                for sampler in samplers:
                    rs = [r for r in rows if (r["task"], r["coupling"], r["library"], r["sampler"])
                          == (task, coup, lib, sampler)]
                    if rs:
                        out.append({"task": task, "coupling": coup, "library": lib, "sampler": sampler,
                                    "rows": sorted(rs, key=lambda r: r["seed"])})
    return out


def _failed(t):
    bad = sum(r["w2"] is None for r in t["rows"])
    return f" ({bad} non-finite)" if bad else ""


COLUMNS = [
    ("task", lambda t: t["task"]), ("pairs", lambda t: t["coupling"]), ("library", lambda t: t["library"]),
    ("sampler", lambda t: t["sampler"]), ("seeds", lambda t: len(t["rows"])),
    ("W2", lambda t: h.mean_sd(r["w2"] for r in t["rows"]) + _failed(t)),
    ("NFE", lambda t: f"{h.mean_of(t['rows'], 'nfe'):.0f}"),
    ("ms / 1k samples", lambda t: f"{1e3 * h.mean_of(t['rows'], 'per_1k_s'):.1f}"),
    ("compile s", lambda t: h.fmt(h.mean_of(t["rows"], "sample_compile_s"), ".2f")),
    ("train s", lambda t: f"{h.mean_of(t['rows'], 'train_s'):.1f}"),
    ("steps/s", lambda t: f"{h.mean_of(t['rows'], 'steps_per_s'):.0f}"),
    ("final loss", lambda t: f"{h.mean_of(t['rows'], 'final_loss'):.3g}"),
]

MATCHED = (("SDE EM 100", "SDE EM 100"), ("SDE ShARK 50", "SDE EM 100"), ("SDE EM 100", "SDE SRK dt=1e-3"),
           ("ODE v dopri5", "ODE v dopri5"))


def extra_md(ctx, rows) -> str:
    lines = []
    for task in TASKS:
        for coup in COUPLINGS:
            for ours, peer in MATCHED:
                a = {r["seed"]: r for r in rows if (r["task"], r["coupling"], r["library"], r["sampler"])
                     == (task, coup, "flowjax_fm", ours)}
                b = {r["seed"]: r for r in rows if (r["task"], r["coupling"], r["library"], r["sampler"])
                     == (task, coup, "torchcfm", peer)}
                both = [s for s in a if s in b and a[s]["w2"] is not None and b[s]["w2"] is not None]
                if not both:
                    continue
                wa = float(np.mean([a[s]["w2"] for s in both]))
                wb = float(np.mean([b[s]["w2"] for s in both]))
                wins = sum(a[s]["w2"] <= b[s]["w2"] for s in both)
                ca = float(np.mean([a[s]["per_1k_s"] for s in both]))
                cb = float(np.mean([b[s]["per_1k_s"] for s in both]))
                lines.append([task, coup, f"{ours} vs {peer}", f"{wa:.3f}", f"{wb:.3f}",
                              "yes" if wa <= wb else "**no**", f"{wins}/{len(both)}", f"{cb / ca:.1f}x"])
    if not lines:
        return ""
    return (f"\n## Ours against torchcfm, cell by cell (init: {init_of(rows)})\n\n"
            "Mean W2 over the seeds both sides ran (lower is better); 'at least as good': our mean W2 <= "
            "torchcfm's; per seed: seeds where ours <= torchcfm's. Speed-up: torchcfm's wall time per "
            "1,000 samples / ours (steady state, compilation apart).\n\n"
            + h.markdown_table(["task", "pairs", "ours vs torchcfm", "W2 ours", "W2 torchcfm",
                                "at least as good", "per seed", "speed-up"], lines))


def preamble(ctx, rows) -> str:
    r0 = rows[0]
    floors = "; ".join(f"{t} {next(r['w2_floor'] for r in rows if r['task'] == t):.3f}"
                       for t in TASKS if any(r["task"] == t for r in rows))
    loads = [r["load_after"] for r in rows if r.get("load_after") is not None]
    return (
        f"{h.env_line(ctx.env, r0.get('threads') or ctx.threads)}; 1-minute load after each training "
        f"{min(loads):.1f}-{max(loads):.1f} (2 cores; the other core ran other work). [SF]2M as torchcfm's "
        f"SF2M notebook: sigma {r0['sigma']}, flow and score MLPs 3x{r0['width']} SELU, one Adam at "
        f"{r0['lr']}, batch {r0['batch']}, {r0['steps']} steps (the notebook: 10,000), on the same "
        f"pre-drawn batches for both libraries; pairs exact OT or Sinkhorn at 2 sigma^2. Exact W2 between "
        f"{r0['eval']} samples and {r0['eval']} fixed target points, averaged over "
        f"{r0.get('eval_draws', 1)} fixed source draws (the same everywhere), "
        f"mean +- sd over seeds; floor (two target samples): {floors}. SDE: dx = [v + sigma^2/2 score] dt + "
        f"sigma dW (ours: fm.sampling.sample_sde, diffrax, VirtualBrownianTree; torchcfm: torchsde); "
        f"adaptive Heun at rtol = atol = {r0['sde_tol']}; dopri5 at rtol = atol = {r0['rtol']} (ours diffrax, "
        f"torchcfm torchdiffeq). NFE: drift evaluations (flow + score). ms / 1k samples: median of "
        f"{r0['repeats']} timed calls (torchsde srk: one), compilation apart (compile s: our first "
        f"call's excess). Train s: wall time (ours: compilation included; steps/s: steady state). "
        f"Command: {'; '.join(sorted({r.get('command') or ctx.command for r in rows}))}.\n\n"
        f"{init_words(init_of(rows))}. Adam lr {r0['lr']} as the notebook (its late loss spikes make the "
        f"last-step networks, and so the W2, noisy from seed to seed)."
    )


def plot(ctx, rows) -> None:
    points = [{"panel": f"{t['task']}, {t['coupling']}", "series": f"{t['library']}: {t['sampler']}",
               "ms": 1e3 * h.mean_of(t["rows"], "per_1k_s"), "w2": h.mean_of(t["rows"], "w2")}
              for t in table_rows(ctx, rows) if h.mean_of(t["rows"], "w2") is not None]
    h.write_plot(ctx.file("png"), points, "ms", "w2", ["series"], panels="panel", title="W2 vs cost",
                 xlabel="ms per 1,000 samples (one core)", ylabel="W2 to target", logy=False)


SUITE = h.Suite(
    name=NAME, title="[SF]2M bridges: SDE against ODE sampling, 2D, beside torchcfm", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"steps": 60, "seeds": [0], "tasks": ["8gaussians->moons"], "couplings": ["exact"], "eval": 200, "eval_draws": 2,
           "sde_steps": 20, "torch_srk_seeds": []},
    repeats=(3, 1), quick_file=True, pin=True, peak=False, setup=setup, history=history,
    table_rows=table_rows, extra_md=extra_md, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
