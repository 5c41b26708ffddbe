"""Training throughput: flowjax_fm against torchcfm, same process, same thread budget.

Run (one core, one thread for every library):

    .venv/bin/python -m benchmarks.bench_train [--quick] [--batch 256 1024] [--models w64-d2]

Network on both sides: torchcfm's ``MLP(dim, time_varying=True, w=W)``, i.e. input ``[x, t]``,
three hidden layers of width ``W`` with SELU, a linear output (four linear layers); ours is
``fm.models.MLP(dim, (W, W, W), activation="selu")``, the same layers. Adam 1e-3, Gaussian path
sigma 0.1. Models (``--models``):

- ``w64-d2``: torchcfm's 2D tutorial, 8gaussians -> moons (each side its own toy samplers).
- ``w256-d2``: the same task, a wider network.
- ``w1024-d64``: 64 dimensions, N(0, I) -> N(2, 0.25 I) (``randn`` on each side).

Modes:

- ``end_to_end``: as a user runs it, data sampled every step. Ours: ``fm.training.fit`` (chunks
  of steps in one ``lax.scan``), steady-state rate from the median chunk time, compile time
  reported apart (first chunk minus a steady chunk). torchcfm: its tutorial loop (sample the
  two clouds, ``sample_location_and_conditional_flow``, forward, backward, Adam step).
- ``network_step``: the same steps on batches drawn beforehand (one per step; the coupling still
  runs every step).

Step counts are set per configuration from a timed single step so that each of the repeated
timings lasts about ``--budget`` seconds; rates are medians over the repeats. Achieved FLOP/s:
XLA's FLOP count of one step (``compiled_flops``) times steps/s, against a large matrix product
timed at the start and at the end of the run (the better of the two). When torch / torchcfm are
missing the suite says so and times ours alone.

Writes ``RESULTS/train.jsonl`` (appended), ``train.md`` and ``train.png``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers

COUPLINGS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}
# name: (dim, hidden width, default batches). Three hidden layers of the width, SELU.
MODELS = {
    "w64-d2": (2, 64, (256, 1024, 4096)),
    "w256-d2": (2, 256, (256, 1024)),
    "w1024-d64": (64, 1024, (256, 1024)),
}
MODES = ("end_to_end", "network_step")
MAX_STEPS = 500


def _steps_for(seconds_per_step: float, budget: float, lo: int) -> int:
    return int(np.clip(round(budget / max(seconds_per_step, 1e-6)), lo, MAX_STEPS))


def _samplers(dim: int):
    """Ours: source and target samplers ``(key, n) -> (n, dim)``."""
    if dim == 2:
        return fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    return (
        lambda key, n: jax.random.normal(key, (n, dim)),
        lambda key, n: 2.0 + 0.5 * jax.random.normal(key, (n, dim)),
    )


def ours(method: str, dim: int, width: int, batch: int, repeats: int, budget: float) -> dict:
    model = fm.models.MLP(dim, (width,) * 3, activation="selu", rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(COUPLINGS[method]),
    )
    src, tgt = _samplers(dim)
    state = fm.training.init_state(model, opt)
    x0, x1 = src(jax.random.key(1), batch), tgt(jax.random.key(2), batch)

    # XLA's FLOP count of one step, then a timed single step to size the scanned chunks
    flops = h.compiled_flops(step, state, jax.random.key(0), x0, x1)
    one = jax.jit(step)
    chunk = _steps_for(h.time_fn(lambda: one(state, jax.random.key(0), x0, x1), 3).median_s, budget, 5)

    # end to end, exactly what users run
    _, _, fit = h.fit_timed(step, fm.training.init_state(model, opt), jax.random.key(0), src, tgt,
                            steps=chunk * (repeats + 1), batch=batch, chunk=chunk)
    e2e = {"steps_per_s": fit.steps_per_s, "compile_s": fit.compile_s}

    # network step alone: batches drawn beforehand (distinct per step, so XLA cannot hoist the
    # coupling out of the loop as loop-invariant), same step body, scanned
    x0s = jax.vmap(lambda k: src(k, batch))(jax.random.split(jax.random.key(1), chunk))
    x1s = jax.vmap(lambda k: tgt(k, batch))(jax.random.split(jax.random.key(2), chunk))

    @jax.jit
    def run(state):
        def body(s, inputs):
            i, a, b = inputs
            return step(s, jax.random.fold_in(jax.random.key(3), i), a, b)[0], None

        return jax.lax.scan(body, state, (jnp.arange(chunk), x0s, x1s))[0]

    state = fm.training.init_state(model, opt)
    net = h.time_fn(lambda: run(state), repeats)
    return {"end_to_end": e2e, "network_step": {"steps_per_s": chunk / net.median_s, "compile_s": net.compile_s},
            "flops_per_step": flops, "steps_per_repeat": chunk}


def torchcfm_rates(method: str, dim: int, width: int, batch: int, repeats: int, budget: float) -> dict:
    torch = peers.torch()
    torch.manual_seed(0)
    matcher = peers.matcher(method, 0.1)
    model = peers.mlp(dim, width)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    if dim == 2:
        draw = lambda: (peers.toy("8gaussians", batch), peers.toy("moons", batch))
    else:
        draw = lambda: (torch.randn(batch, dim), 2.0 + 0.5 * torch.randn(batch, dim))

    def train(n, batches=None):
        return peers.train(model, opt, matcher, draw, n, batches)

    train(2)
    steps = _steps_for(h.time_fn(lambda: train(1), 3, first_apart=False).median_s, budget, 1)
    e2e = h.time_fn(lambda: train(steps), repeats, first_apart=False).median_s
    batches = [draw() for _ in range(steps)]
    net = h.time_fn(lambda: train(steps, batches), repeats, first_apart=False).median_s
    return {"end_to_end": {"steps_per_s": steps / e2e}, "network_step": {"steps_per_s": steps / net},
            "steps_per_repeat": steps}


def flags(ap) -> None:
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="batch sizes for every model (default: each model's own list)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--methods", nargs="+", choices=list(COUPLINGS), default=list(COUPLINGS))
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per timed repeat, sets the step counts")


def setup(ctx) -> None:
    ctx.data["missing"] = peers.start("torchcfm side", "torch", "torchcfm")


def cases(ctx):
    for name in ctx.args.models:
        dim, width, default_batches = MODELS[name]
        for batch in ctx.args.batch or ([256] if ctx.quick else list(default_batches)):
            for method in ctx.args.methods:
                yield {"model": name, "dim": dim, "width": width, "batch": batch, "method": method}


def run_case(ctx, case: dict) -> list[dict]:
    args = (case["method"], case["dim"], case["width"], case["batch"], ctx.repeats, ctx.args.budget)
    mine = ours(*args)
    theirs = None if ctx.data["missing"] else torchcfm_rates(*args)
    rows = []
    for mode in MODES:
        rate, batch = mine[mode]["steps_per_s"], case["batch"]
        peer = None if theirs is None else theirs[mode]["steps_per_s"]
        rows.append({
            "suite": "train", **case, "mode": mode, "threads": ctx.threads,
            "net": f"MLP {case['dim']}+1 -> 3x{case['width']} SELU -> {case['dim']}",
            "ours_steps_per_s": rate, "ours_examples_per_s": rate * batch,
            "ours_compile_s": mine[mode]["compile_s"], "ours_steps_per_repeat": mine["steps_per_repeat"],
            "torchcfm_steps_per_s": peer, "torchcfm_examples_per_s": None if peer is None else peer * batch,
            "torchcfm_steps_per_repeat": None if theirs is None else theirs["steps_per_repeat"],
            "ratio": None if peer is None else rate / peer, "repeats": ctx.repeats,
            "budget_s": ctx.args.budget, "flops_per_step": mine["flops_per_step"],
        })
    return rows


def finish(ctx, rows: list[dict]) -> None:
    """The matmul limit again at the end (the load drifts): the better of the two (--quick keeps the start's)."""
    end = ctx.peak if ctx.quick else h.matmul_peak_flops()
    ctx.data["peak_end"], peak = end, max(ctx.peak, end)
    print(f"matmul limit at the end: {end / 1e9:.1f} GFLOP/s", flush=True)
    for r in rows:
        r.update(matmul_peak_flops=peak, matmul_peak_flops_start=ctx.peak, matmul_peak_flops_end=end,
                 **h.limit_fields(r["flops_per_step"], 1.0 / r["ours_steps_per_s"], peak))


def _rate(r):
    return "-" if r is None else (f"{r:.1f}" if r < 100 else f"{r:.0f}")


COLUMNS = [
    ("model", lambda r: r["model"]), ("method", lambda r: r["method"]), ("mode", lambda r: r["mode"]),
    ("batch", lambda r: r["batch"]),
    ("flowjax_fm steps/s", lambda r: _rate(r["ours_steps_per_s"])),
    ("flowjax_fm examples/s", lambda r: f"{r['ours_examples_per_s']:.3g}"),
    ("torchcfm steps/s", lambda r: _rate(r["torchcfm_steps_per_s"])),
    ("torchcfm examples/s", lambda r: h.fmt(r["torchcfm_examples_per_s"], ".3g")),
    ("ratio", lambda r: h.fmt(r["ratio"], ".1f") + ("x" if r["ratio"] else "")),
    ("compile (s)", lambda r: f"{r['ours_compile_s']:.2f}"),
    ("GFLOP/s (of matmul)", h.fmt_limit),
]


def preamble(ctx, rows) -> str:
    missing = ctx.data.get("missing")
    peer = (f"torchcfm NOT installed ({missing}): flowjax_fm alone." if missing
            else "torchcfm ran beside ours in the same process (torch.set_num_threads(1)).")
    r0 = rows[0]
    return (
        f"{h.env_line(ctx.env, ctx.threads)} (other jobs shared the machine); versions {ctx.env['versions']}. "
        f"{peer} Same network both sides: [x, t] -> 3 hidden layers of width W, SELU -> x "
        "(torchcfm `MLP(dim, time_varying=True, w=W)`); models: w64-d2 / w256-d2 = 8gaussians -> moons, "
        "w1024-d64 = N(0, I) -> N(2, 0.25 I) in 64D. Adam 1e-3, sigma 0.1. Steps/s and examples/s "
        f"(= steps/s x batch) are steady-state medians of {ctx.repeats} timed repeats of about "
        f"{ctx.args.budget:g} s each; compile time apart (ours). Ratio = ours / torchcfm steps/s. Achieved "
        "GFLOP/s: XLA's FLOP count of one step x steps/s, and its share of a 2048x2048 float32 "
        f"matmul measured in the same run (the better of {r0['matmul_peak_flops_start'] / 1e9:.1f} at the "
        f"start and {r0['matmul_peak_flops_end'] / 1e9:.1f} GFLOP/s at the end; one core, so the share can "
        f"pass 100% when the load drops mid-run). Plot: `train.png`. Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    long = h.long_rows(rows, ("model", "method", "mode", "batch"), "steps_per_s",
                       {"flowjax_fm": "ours_steps_per_s", "torchcfm": "torchcfm_steps_per_s"})
    h.write_plot(ctx.file("png"), long, "batch", "steps_per_s", ["library", "method", "mode"],
                 title="train steps/s", ylabel="steps / s", panels="model")


SUITE = h.Suite(
    name="train", title="Training throughput: flowjax_fm vs torchcfm", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"models": ["w64-d2"], "budget": 0.05}, repeats=(5, 3), pin=True, write_each=False,
    setup=setup, finish=finish, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
