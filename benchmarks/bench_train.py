"""Training throughput: flowjax_fm against torchcfm, same process, same thread budget.

Run (one core, one thread for every library):

    .venv/bin/python benchmarks/bench_train.py [--quick] [--batch 256 1024] [--models w64-d2]

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
timed in the same run (``matmul_peak_flops``). When torch / torchcfm are missing the suite says
so and times ours alone.

Writes ``benchmarks/results/train.jsonl`` (appended), ``train.md`` and ``train.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    median_time,
    pin_one_core,
    write_jsonl,
    write_plot,
    write_table,
)

THREADS = pin_one_core()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

COUPLINGS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}
# name: (dim, hidden width, default batches). Three hidden layers of the width, SELU.
MODELS = {
    "w64-d2": (2, 64, (256, 1024, 4096)),
    "w256-d2": (2, 256, (256, 1024)),
    "w1024-d64": (64, 1024, (256, 1024)),
}
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

    # XLA's FLOP count of one step, then a timed single step (same executable, cached) to size
    # the scanned chunks
    flops = compiled_flops(step, state, jax.random.key(0), x0, x1)
    one = jax.jit(step)
    jax.block_until_ready(one(state, jax.random.key(0), x0, x1))
    single, _ = median_time(lambda: jax.block_until_ready(one(state, jax.random.key(0), x0, x1)), 3)
    chunk = _steps_for(single, budget, 5)

    # end to end, exactly what users run
    stamps = [time.perf_counter()]
    fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(0), src, tgt,
        num_steps=chunk * (repeats + 1), batch_size=batch, progress=False, chunk_size=chunk,
        on_chunk=lambda s, m: (jax.block_until_ready(s), stamps.append(time.perf_counter())),
    )
    per_chunk = np.diff(stamps)
    steady = float(np.median(per_chunk[1:]))
    e2e = {"steps_per_s": chunk / steady, "compile_s": float(per_chunk[0] - steady)}

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
    t = time.perf_counter()
    jax.block_until_ready(run(state))
    first = time.perf_counter() - t
    med, _ = median_time(lambda: jax.block_until_ready(run(state)), repeats=repeats, warmup=0)
    net = {"steps_per_s": chunk / med, "compile_s": first - med}
    return {"end_to_end": e2e, "network_step": net, "flops_per_step": flops, "steps_per_repeat": chunk}


def torch_peer():
    """The torch / torchcfm modules, or the reason they are missing."""
    try:
        import torch
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )
        from torchcfm.models.models import MLP
        from torchcfm.utils import sample_8gaussians, sample_moons
    except ImportError as exc:
        return None, f"{exc}"
    return dict(torch=torch, cfm=ConditionalFlowMatcher, ot=ExactOptimalTransportConditionalFlowMatcher,
                MLP=MLP, s8=sample_8gaussians, moons=sample_moons), None


def torchcfm_rates(peer: dict, method: str, dim: int, width: int, batch: int, repeats: int,
                   budget: float) -> dict:
    torch = peer["torch"]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    matcher = (peer["cfm"] if method == "I-CFM" else peer["ot"])(sigma=0.1)
    model = peer["MLP"](dim=dim, time_varying=True, w=width)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    if dim == 2:
        draw = lambda: (peer["s8"](batch), peer["moons"](batch))  # noqa: E731
    else:
        draw = lambda: (torch.randn(batch, dim), 2.0 + 0.5 * torch.randn(batch, dim))  # noqa: E731

    def train(n, batches=None):
        for i in range(n):
            opt.zero_grad()
            x0, x1 = batches[i] if batches is not None else draw()
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            vt = model(torch.cat([xt, t[:, None]], dim=-1))
            loss = torch.mean((vt - ut) ** 2)
            loss.backward()
            opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(2)
        single, _ = median_time(lambda: train(1), 3, warmup=0)
        steps = _steps_for(single, budget, 1)
        e2e, _ = median_time(lambda: train(steps), repeats=repeats, warmup=0)
        batches = [draw() for _ in range(steps)]
        net, _ = median_time(lambda: train(steps, batches), repeats=repeats, warmup=0)
    return {"end_to_end": {"steps_per_s": steps / e2e}, "network_step": {"steps_per_s": steps / net},
            "steps_per_repeat": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (w64-d2, batch 256)")
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="batch sizes for every model (default: each model's own list)")
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    ap.add_argument("--methods", nargs="+", choices=list(COUPLINGS), default=list(COUPLINGS))
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per mode (default 5)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per timed repeat, sets the step counts (default 0.3)")
    args = ap.parse_args()
    models = args.models or (["w64-d2"] if args.quick else list(MODELS))
    repeats = args.repeats or (3 if args.quick else 5)
    budget = args.budget or (0.05 if args.quick else 0.3)
    peer, missing = torch_peer()
    if peer is None:
        print(f"torchcfm side skipped ({missing}); install the peers extra: pip install -e '.[peers]'",
              flush=True)
    env = environment()
    peak_start = matmul_peak_flops()
    print(f"matmul limit: {peak_start / 1e9:.1f} GFLOP/s", flush=True)
    results = []
    t_start = time.perf_counter()
    for name in models:
        dim, width, default_batches = MODELS[name]
        batches = args.batch or ([256] if args.quick else list(default_batches))
        for batch in batches:
            for method in args.methods:
                mine = ours(method, dim, width, batch, repeats, budget)
                theirs = None if peer is None else torchcfm_rates(
                    peer, method, dim, width, batch, repeats, budget)
                results.append((name, dim, width, batch, method, mine, theirs))
                for mode in ("end_to_end", "network_step"):
                    peer_rate = None if theirs is None else theirs[mode]["steps_per_s"]
                    print(name, method, mode, batch, f"ours {mine[mode]['steps_per_s']:.1f}",
                          f"torchcfm {peer_rate}", f"[{time.perf_counter() - t_start:.0f} s]", flush=True)
    # the matmul limit again at the end: the machine's load drifts, so take the better of the two
    # (skipped by --quick, which keeps the start's)
    peak_end = peak_start if args.quick else matmul_peak_flops()
    peak = max(peak_start, peak_end)
    print(f"matmul limit at the end: {peak_end / 1e9:.1f} GFLOP/s", flush=True)
    rows, table, plot_rows = [], [], []
    for name, dim, width, batch, method, mine, theirs in results:
        for mode in ("end_to_end", "network_step"):
            rate = mine[mode]["steps_per_s"]
            peer_rate = None if theirs is None else theirs[mode]["steps_per_s"]
            row = {
                "suite": "train", "method": method, "mode": mode, "batch": batch, "dim": dim,
                "model": name, "width": width, "net": f"MLP {dim}+1 -> 3x{width} SELU -> {dim}",
                "threads": THREADS, "quick": args.quick,
                "ours_steps_per_s": rate, "ours_examples_per_s": rate * batch,
                "ours_compile_s": mine[mode]["compile_s"],
                "ours_steps_per_repeat": mine["steps_per_repeat"],
                "torchcfm_steps_per_s": peer_rate,
                "torchcfm_examples_per_s": None if peer_rate is None else peer_rate * batch,
                "torchcfm_steps_per_repeat": None if theirs is None else theirs["steps_per_repeat"],
                "ratio": None if peer_rate is None else rate / peer_rate,
                "repeats": repeats, "budget_s": budget, "flops_per_step": mine["flops_per_step"],
                "matmul_peak_flops": peak, "matmul_peak_flops_start": peak_start,
                "matmul_peak_flops_end": peak_end,
                **limit_fields(mine["flops_per_step"], 1.0 / rate, peak), **env,
            }
            rows.append(row)
            common = {"model": name, "method": method, "mode": mode, "batch": batch}
            plot_rows.append({**common, "library": "flowjax_fm", "steps_per_s": rate})
            if peer_rate is not None:
                plot_rows.append({**common, "library": "torchcfm", "steps_per_s": peer_rate})
            fmt = lambda r: f"{r:.1f}" if r < 100 else f"{r:.0f}"  # noqa: E731
            table.append([
                name, method, mode, batch, fmt(rate), f"{rate * batch:.3g}",
                "-" if peer_rate is None else fmt(peer_rate),
                "-" if peer_rate is None else f"{peer_rate * batch:.3g}",
                "-" if peer_rate is None else f"{row['ratio']:.1f}x",
                f"{row['ours_compile_s']:.2f}", fmt_limit(row),
            ])
    write_jsonl("train", rows)
    peer_note = (
        "torchcfm ran beside ours in the same process (torch.set_num_threads(1))."
        if peer is not None else f"torchcfm NOT installed ({missing}): flowjax_fm alone."
    )
    quick = " --quick" if args.quick else ""
    write_table(
        "train",
        "Training throughput: flowjax_fm vs torchcfm",
        f"{env['time']}, {env['device_kind']} ({env['machine']}), {THREADS}, load "
        f"{env['load_avg_1m']:.1f} at start (other jobs shared the machine); versions {env['versions']}. "
        f"{peer_note} Same network both sides: [x, t] -> 3 hidden layers of width W, SELU -> x "
        "(torchcfm `MLP(dim, time_varying=True, w=W)`); models: w64-d2 / w256-d2 = 8gaussians -> moons, "
        "w1024-d64 = N(0, I) -> N(2, 0.25 I) in 64D. Adam 1e-3, sigma 0.1. Steps/s and examples/s "
        f"(= steps/s x batch) are steady-state medians of {repeats} timed repeats of about "
        f"{budget:g} s each; compile time apart (ours). Ratio = ours / torchcfm steps/s. Achieved "
        "GFLOP/s: XLA's FLOP count of one step x steps/s, and its share of a 2048x2048 float32 "
        f"matmul measured in the same run (the better of {peak_start / 1e9:.1f} at the start and "
        f"{peak_end / 1e9:.1f} GFLOP/s at the end; one core, so the share can pass 100% when the "
        "load drops mid-run). Plot: `train.png`. "
        f"Command: `.venv/bin/python benchmarks/bench_train.py{quick}`.",
        ["model", "method", "mode", "batch", "flowjax_fm steps/s", "flowjax_fm examples/s",
         "torchcfm steps/s", "torchcfm examples/s", "ratio", "compile (s)", "GFLOP/s (of matmul)"],
        table,
    )
    write_plot("train", plot_rows, "batch", "steps_per_s", ["library", "method", "mode"],
               title="train steps/s", ylabel="steps / s", panels="model")


if __name__ == "__main__":
    main()
