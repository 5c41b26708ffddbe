"""Training throughput: flowjax_fm against torchcfm, same process, same thread budget.

Run (one core, one thread for every library):

    .venv/bin/python benchmarks/bench_train.py [--quick] [--batch 256 1024]

Settings: torchcfm's 2D tutorial (MLP 3x64 SELU, Adam 1e-3, sigma 0.1, 8gaussians -> moons).

- ``end_to_end``: as a user runs it, toy data sampled every step. Ours: ``fm.training.fit``
  (chunks of 500 steps in one ``lax.scan``), steady-state rate from the median chunk time, compile
  time reported apart (first chunk minus a steady chunk). torchcfm: its tutorial loop
  (``sample_8gaussians``, ``sample_moons``, ``sample_location_and_conditional_flow``, forward,
  backward, Adam step).
- ``network_step``: the same steps on batches drawn beforehand (one per step; the coupling still
  runs every step).

Writes ``benchmarks/results/train.jsonl`` (appended) and ``benchmarks/results/train.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compiled_flops,
    environment,
    matmul_peak_flops,
    median_time,
    pin_one_core,
    write_jsonl,
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


def ours(method: str, batch: int, chunk: int, chunks: int) -> dict:
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model,
        optimizer=opt,
        path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(COUPLINGS[method]),
    )
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    # end to end, exactly what users run
    stamps = [time.perf_counter()]
    fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(0), src, tgt,
        num_steps=chunk * (chunks + 1), batch_size=batch, progress=False, chunk_size=chunk,
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
            i, x0, x1 = inputs
            return step(s, jax.random.fold_in(jax.random.key(3), i), x0, x1)[0], None

        return jax.lax.scan(body, state, (jnp.arange(chunk), x0s, x1s))[0]

    state = fm.training.init_state(model, opt)
    t = time.perf_counter()
    jax.block_until_ready(run(state))
    first = time.perf_counter() - t
    med, _ = median_time(lambda: jax.block_until_ready(run(state)), repeats=chunks, warmup=0)
    net = {"steps_per_s": chunk / med, "compile_s": first - med}
    # FLOPs of one step (XLA's count), to compare achieved FLOP/s with the matmul limit
    flops = compiled_flops(lambda s, k: step(s, k, x0s[0], x1s[0]), state, jax.random.key(0))
    return {"end_to_end": e2e, "network_step": net, "flops_per_step": flops}


def torchcfm_rates(method: str, batch: int, steps: int) -> dict | None:
    try:
        import torch
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )
        from torchcfm.models.models import MLP
        from torchcfm.utils import sample_8gaussians, sample_moons
    except ImportError as exc:
        print(f"torchcfm side skipped ({exc}); install the peers extra: pip install -e '.[peers]'")
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    matcher = (ConditionalFlowMatcher if method == "I-CFM" else ExactOptimalTransportConditionalFlowMatcher)(
        sigma=0.1
    )
    model = MLP(dim=2, time_varying=True, w=64)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def train(n, batches=None):
        for i in range(n):
            opt.zero_grad()
            x0, x1 = batches[i] if batches is not None else (sample_8gaussians(batch), sample_moons(batch))
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            vt = model(torch.cat([xt, t[:, None]], dim=-1))
            loss = torch.mean((vt - ut) ** 2)
            loss.backward()
            opt.step()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(20)
        e2e, _ = median_time(lambda: train(steps), repeats=3, warmup=0)
        batches = [(sample_8gaussians(batch), sample_moons(batch)) for _ in range(steps)]
        net, _ = median_time(lambda: train(steps, batches), repeats=3, warmup=0)
    return {"end_to_end": {"steps_per_s": steps / e2e}, "network_step": {"steps_per_s": steps / net}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--batch", type=int, nargs="+", default=[256])
    args = ap.parse_args()
    chunk, chunks, torch_steps = (100, 2, 50) if args.quick else (500, 5, 500)
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows, table = [], []
    for batch in args.batch:
        for method in COUPLINGS:
            mine = ours(method, batch, chunk, chunks)
            peer = torchcfm_rates(method, batch, torch_steps)
            for mode in ("end_to_end", "network_step"):
                ratio = None if peer is None else mine[mode]["steps_per_s"] / peer[mode]["steps_per_s"]
                row = {
                    "suite": "train", "method": method, "mode": mode, "batch": batch, "dim": 2,
                    "model": "MLP 3x64 SELU", "threads": THREADS, "quick": args.quick,
                    "ours_steps_per_s": mine[mode]["steps_per_s"],
                    "ours_compile_s": mine[mode]["compile_s"],
                    "torchcfm_steps_per_s": None if peer is None else peer[mode]["steps_per_s"],
                    "ratio": ratio, "flops_per_step": mine["flops_per_step"],
                    "matmul_peak_flops": peak, **env,
                }
                achieved = (mine["flops_per_step"] or float("nan")) * row["ours_steps_per_s"]
                row["achieved_flops"] = achieved
                row["fraction_of_matmul_peak"] = achieved / peak
                rows.append(row)
                table.append([
                    method, mode, batch, f"{row['ours_steps_per_s']:.0f}",
                    "-" if peer is None else f"{row['torchcfm_steps_per_s']:.0f}",
                    "-" if ratio is None else f"{ratio:.1f}x", f"{row['ours_compile_s']:.2f}",
                    f"{achieved / 1e9:.2f} ({100 * achieved / peak:.1f}%)",
                ])
                print(table[-1], flush=True)
    write_jsonl("train", rows)
    write_table(
        "train",
        "Training throughput: flowjax_fm vs torchcfm",
        f"{env['time']}, {env['device_kind']} ({env['machine']}), {THREADS}, load {env['load_avg_1m']:.1f}; "
        f"versions {env['versions']}. Steps/s, steady state (medians); compile time apart. "
        f"Achieved GFLOP/s: XLA's FLOP count of one step times steps/s, against a 2048x2048 float32 "
        f"matmul measured in the same run ({peak / 1e9:.1f} GFLOP/s). "
        "Command: `.venv/bin/python benchmarks/bench_train.py`.",
        ["method", "mode", "batch", "flowjax_fm steps/s", "torchcfm steps/s", "ratio", "compile (s)",
         "GFLOP/s (of matmul)"],
        table,
    )


if __name__ == "__main__":
    main()
