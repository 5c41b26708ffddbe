"""Data-parallel scaling: steps/s against device count for both drivers, and the cost of a
global versus a per-shard OT coupling as the global batch grows.

Run (on this CPU: 8 fake devices sharing the cores, so only correctness and overheads mean
anything; on a GPU/TPU host the same command uses the real devices and records their kind):

    .venv/bin/python benchmarks/bench_scaling.py [--quick]

Achieved FLOP/s: XLA's FLOP count of the same step on one device and the whole global batch
(``compiled_flops``; the sharded program does the same work, split) over the step time, against
a 2048x2048 float32 matrix product timed on device 0 in the same run (``matmul_peak_flops``; on
fake CPU devices every device shares the same cores, so the sum over devices cannot pass it).

Writes ``benchmarks/results/scaling.jsonl`` (appended), ``scaling.md``, ``scaling.png``
(examples/s against device count) and ``scaling_ot_scope.png`` (global against per-shard OT).
"""

from __future__ import annotations

import os

# Eight fake devices when JAX ends up on the CPU; no effect on a GPU/TPU backend.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import optax  # noqa: E402
from _common import (  # noqa: E402
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    median_time,
    write_jsonl,
    write_plot,
    write_table,
)
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402


def _setup(coupling: str, scope: str = "global"):
    model = fm.models.MLP(2, (64, 64, 64), rngs=nnx.Rngs(0))
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(coupling), coupling_scope=scope,
    )
    return step, fm.training.init_state(model, opt)


def _batch(batch: int):
    return (fm.data.sample_toy("8gaussians", jax.random.key(1), batch),
            fm.data.sample_toy("moons", jax.random.key(2), batch))


_FLOPS: dict[tuple, float | None] = {}
# largest per-device slice for per-shard exact OT on fake CPU devices (see main)
CPU_PER_SHARD_MAX = 128


def _step_flops(coupling: str, batch: int) -> float | None:
    """XLA's FLOP count of one unsharded step on the global batch (cached per setting)."""
    if (coupling, batch) not in _FLOPS:
        step, state = _setup(coupling)
        _FLOPS[coupling, batch] = compiled_flops(step, state, jax.random.key(3), *_batch(batch))
    return _FLOPS[coupling, batch]


def _rate(run, state, batch: int, repeats: int) -> tuple[float, float]:
    x0, x1 = _batch(batch)
    key = jax.random.key(3)
    t = time.perf_counter()
    jax.block_until_ready(run(state, key, x0, x1))
    first = time.perf_counter() - t
    med, _ = median_time(lambda: jax.block_until_ready(run(state, key, x0, x1)), repeats)
    return med, first - med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit (device 0): {peak / 1e9:.1f} GFLOP/s", flush=True)
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]
    if args.quick:  # the smoke version: one device and all of them
        counts = sorted({counts[0], counts[-1]})
    repeats = 3 if args.quick else 20
    rows, table = [], []
    # 1) steps/s and examples/s against device count, both drivers
    batch = 1024
    for coupling in ("independent", "exact-ot"):
        for driver in ("shard_map", "pmap"):
            for n in counts:
                step, state = _setup(coupling)
                if driver == "shard_map":
                    mesh = fm.training.data_mesh(n)
                    run, state = fm.training.shard_step(step, mesh), fm.training.replicate(state, mesh)
                else:
                    run = fm.training.pmap_step(step, devices=jax.devices()[:n])
                sec, compile_s = _rate(run, state, batch, repeats)
                row = {"suite": "scaling", "part": "devices", "coupling": coupling, "driver": driver,
                       "devices": n, "global_batch": batch, "step_s": sec, "steps_per_s": 1 / sec,
                       "examples_per_s": batch / sec, "compile_s": compile_s, "quick": args.quick,
                       "flops_per_step": _step_flops(coupling, batch), "matmul_peak_flops": peak,
                       **limit_fields(_step_flops(coupling, batch), sec, peak), **env}
                rows.append(row)
                table.append(["devices", coupling, driver, n, batch, f"{1e3 * sec:.2f}",
                              f"{batch / sec:.0f}", f"{compile_s:.2f}", fmt_limit(row)])
                print(table[-1], flush=True)
    # 2) global vs per-shard exact OT as the global batch grows (shard_map, all devices)
    n = counts[-1]
    batches = (1024,) if args.quick else (256, 1024, 4096, 8192)
    skipped = []
    for batch in batches:
        for scope in ("global", "per_shard"):
            if scope == "per_shard" and env["platform"] == "cpu" and batch // n > CPU_PER_SHARD_MAX:
                # XLA:CPU's in-process all-reduce waits 40 s for every fake device and then aborts
                # the process: per-shard exact OT (a host callback on each of 8 devices sharing
                # two cores) with 256-point shards never lets all of them arrive
                skipped.append(batch)
                continue
            step, state = _setup("exact-ot", scope)
            mesh = fm.training.data_mesh(n)
            run, state = fm.training.shard_step(step, mesh), fm.training.replicate(state, mesh)
            sec, compile_s = _rate(run, state, batch, max(2, repeats // (batch // 256)))
            row = {"suite": "scaling", "part": "ot_scope", "coupling": "exact-ot", "driver": "shard_map",
                   "scope": scope, "devices": n, "global_batch": batch, "step_s": sec,
                   "steps_per_s": 1 / sec, "examples_per_s": batch / sec, "compile_s": compile_s,
                   "quick": args.quick, "flops_per_step": _step_flops("exact-ot", batch),
                   "matmul_peak_flops": peak, **limit_fields(_step_flops("exact-ot", batch), sec, peak),
                   **env}
            rows.append(row)
            table.append([f"ot {scope}", "exact-ot", "shard_map", n, batch, f"{1e3 * sec:.2f}",
                          f"{batch / sec:.0f}", f"{compile_s:.2f}", fmt_limit(row)])
            print(table[-1], flush=True)
    write_jsonl("scaling", rows)
    write_table(
        "scaling", "Data-parallel scaling (flowjax_fm)",
        f"{env['time']}, {env['device_kind']} x {jax.device_count()} ({env['platform']}), load "
        f"{env['load_avg_1m']:.1f}. On fake CPU devices all 'devices' share the same cores: read these "
        "as overheads of the drivers and of the global gather, not as speed-ups. Step time is the median "
        "of repeated calls on one global batch, compile apart. GFLOP/s: XLA's FLOP count of the unsharded "
        "step on the global batch over the step time, and its share of a 2048x2048 float32 matmul on "
        f"device 0 measured in the same run ({peak / 1e9:.1f} GFLOP/s); the OT-scope rows use the global "
        "coupling's count (per-shard OT does less work). "
        + (f"Per-shard OT skipped at global batch {skipped} on this CPU: with more than "
           f"{CPU_PER_SHARD_MAX} points per fake device the host-callback solves on {n} fake devices "
           "sharing the cores deadlock XLA:CPU's in-process all-reduce (40 s rendezvous timeout, "
           "process abort). " if skipped else "")
        + "Plots: `scaling.png`, `scaling_ot_scope.png`. "
        "Command: "
        f"`.venv/bin/python benchmarks/bench_scaling.py{' --quick' if args.quick else ''}`.",
        ["part", "coupling", "driver", "devices", "global batch", "ms / step", "examples/s", "compile (s)",
         "GFLOP/s (of matmul)"],
        table,
    )
    write_plot("scaling", [r for r in rows if r["part"] == "devices"], "devices", "examples_per_s",
               ["coupling", "driver"], title=f"examples/s, global batch 1024, {env['device_kind']}",
               ylabel="examples / s")
    write_plot("scaling_ot_scope", [r for r in rows if r["part"] == "ot_scope"], "global_batch",
               "examples_per_s", ["scope"], title=f"exact OT on {n} devices: global vs per-shard",
               xlabel="global batch", ylabel="examples / s")


if __name__ == "__main__":
    main()
