"""Data-parallel scaling: steps/s against device count for both drivers, and the cost of a
global versus a per-shard OT coupling as the global batch grows.

Run (on this CPU: 8 fake devices sharing the cores, so only correctness and overheads mean
anything; on a GPU/TPU host the same command uses the real devices and records their kind):

    .venv/bin/python benchmarks/bench_scaling.py [--quick]

Writes ``benchmarks/results/scaling.jsonl`` (appended) and ``benchmarks/results/scaling.md``.
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
from _common import environment, median_time, write_jsonl, write_table  # noqa: E402
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


def _rate(run, state, batch: int, repeats: int) -> tuple[float, float]:
    x0 = fm.data.sample_toy("8gaussians", jax.random.key(1), batch)
    x1 = fm.data.sample_toy("moons", jax.random.key(2), batch)
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
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]
    repeats = 5 if args.quick else 20
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
                       "examples_per_s": batch / sec, "compile_s": compile_s, **env}
                rows.append(row)
                table.append(["devices", coupling, driver, n, batch, f"{1e3 * sec:.2f}",
                              f"{batch / sec:.0f}", f"{compile_s:.2f}"])
                print(table[-1], flush=True)
    # 2) global vs per-shard exact OT as the global batch grows (shard_map, all devices)
    n = counts[-1]
    batches = (256, 1024) if args.quick else (256, 1024, 4096, 8192)
    for batch in batches:
        for scope in ("global", "per_shard"):
            step, state = _setup("exact-ot", scope)
            mesh = fm.training.data_mesh(n)
            run, state = fm.training.shard_step(step, mesh), fm.training.replicate(state, mesh)
            sec, compile_s = _rate(run, state, batch, max(2, repeats // (batch // 256)))
            row = {"suite": "scaling", "part": "ot_scope", "coupling": "exact-ot", "driver": "shard_map",
                   "scope": scope, "devices": n, "global_batch": batch, "step_s": sec,
                   "steps_per_s": 1 / sec, "examples_per_s": batch / sec, "compile_s": compile_s, **env}
            rows.append(row)
            table.append([f"ot {scope}", "exact-ot", "shard_map", n, batch, f"{1e3 * sec:.2f}",
                          f"{batch / sec:.0f}", f"{compile_s:.2f}"])
            print(table[-1], flush=True)
    write_jsonl("scaling", rows)
    write_table(
        "scaling", "Data-parallel scaling (flowjax_fm)",
        f"{env['time']}, {env['device_kind']} x {jax.device_count()} ({env['platform']}), load "
        f"{env['load_avg_1m']:.1f}. On fake CPU devices all 'devices' share the same cores: read these "
        "as overheads of the drivers and of the global gather, not as speed-ups. Step time is the median "
        "of repeated calls on one global batch, compile apart. Command: "
        f"`.venv/bin/python benchmarks/bench_scaling.py{' --quick' if args.quick else ''}`.",
        ["part", "coupling", "driver", "devices", "global batch", "ms / step", "examples/s", "compile (s)"],
        table,
    )


if __name__ == "__main__":
    main()
