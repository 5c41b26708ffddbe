"""Data-parallel scaling: steps/s against device count for both drivers, and the cost of a
global versus a per-shard OT coupling as the global batch grows.

Run (on this CPU: 8 fake devices sharing the cores, so only correctness and overheads mean
anything; on a GPU/TPU host the same command uses the real devices and records their kind):

    .venv/bin/python -m benchmarks.bench_scaling [--quick]

Achieved FLOP/s: XLA's FLOP count of the same step on one device and the whole global batch
(``compiled_flops``; the sharded program does the same work, split) over the step time, against
a 2048x2048 float32 matrix product timed on device 0 in the same run (``matmul_peak_flops``; on
fake CPU devices every device shares the same cores, so the sum over devices cannot pass it).

Writes ``RESULTS/scaling.jsonl`` (appended), ``scaling.md``, ``scaling.png``
(examples/s against device count) and ``scaling_ot_scope.png`` (global against per-shard OT).
"""

from __future__ import annotations

import jax
import optax
from flax import nnx

import flowjax_fm as fm
from benchmarks import _harness as h

BATCH = 1024  # global batch of the device-count part
# largest per-device slice for per-shard exact OT on fake CPU devices (see ``cases``)
CPU_PER_SHARD_MAX = 128


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


def _step_flops(ctx, coupling: str, batch: int) -> float | None:
    """XLA's FLOP count of one unsharded step on the global batch (cached per setting)."""
    cache = ctx.data.setdefault("flops", {})
    if (coupling, batch) not in cache:
        step, state = _setup(coupling)
        cache[coupling, batch] = h.compiled_flops(step, state, jax.random.key(3), *_batch(batch))
    return cache[coupling, batch]


def cases(ctx):
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]
    if ctx.quick:  # the smoke version: one device and all of them
        counts = sorted({counts[0], counts[-1]})
    for coupling in ("independent", "exact-ot"):
        for driver in ("shard_map", "pmap"):
            for n in counts:
                yield {"part": "devices", "coupling": coupling, "driver": driver, "devices": n, "global_batch": BATCH}
    n, skipped = counts[-1], ctx.data.setdefault("skipped", [])
    for batch in (1024,) if ctx.quick else (256, 1024, 4096, 8192):
        for scope in ("global", "per_shard"):
            if scope == "per_shard" and ctx.env["platform"] == "cpu" and batch // n > CPU_PER_SHARD_MAX:
                # XLA:CPU's in-process all-reduce waits 40 s for every fake device and then aborts
                # the process: per-shard exact OT (a host callback on each of 8 devices sharing
                # two cores) with 256-point shards never lets all of them arrive
                skipped.append(batch)
                continue
            yield {"part": "ot_scope", "coupling": "exact-ot", "driver": "shard_map", "scope": scope,
                   "devices": n, "global_batch": batch}


def run_case(ctx, case) -> dict:
    n, batch = case["devices"], case["global_batch"]
    step, state = _setup(case["coupling"], case.get("scope", "global"))
    if case["driver"] == "shard_map":
        mesh = fm.training.data_mesh(n)
        run, state = fm.training.shard_step(step, mesh), fm.training.replicate(state, mesh)
    else:
        run = fm.training.pmap_step(step, devices=jax.devices()[:n])
    repeats = ctx.repeats if case["part"] == "devices" else max(2, ctx.repeats // (batch // 256))
    x0, x1 = _batch(batch)
    t = h.time_fn(lambda: run(state, jax.random.key(3), x0, x1), repeats)
    flops = _step_flops(ctx, case["coupling"], batch)
    return {"suite": "scaling", **case, "step_s": t.median_s, "steps_per_s": 1 / t.median_s,
            "examples_per_s": batch / t.median_s, "compile_s": t.first_s - t.median_s,
            "flops_per_step": flops, "matmul_peak_flops": ctx.peak, **h.limit_fields(flops, t.median_s, ctx.peak)}


COLUMNS = [
    ("part", lambda r: "devices" if r["part"] == "devices" else f"ot {r['scope']}"),
    ("coupling", lambda r: r["coupling"]), ("driver", lambda r: r["driver"]), ("devices", lambda r: r["devices"]),
    ("global batch", lambda r: r["global_batch"]), ("ms / step", lambda r: f"{1e3 * r['step_s']:.2f}"),
    ("examples/s", lambda r: f"{r['examples_per_s']:.0f}"), ("compile (s)", lambda r: f"{r['compile_s']:.2f}"),
    ("GFLOP/s (of matmul)", h.fmt_limit),
]


def preamble(ctx, rows) -> str:
    skipped, n = ctx.data.get("skipped"), rows[-1]["devices"]
    return (
        f"{ctx.env['time']}, {ctx.env['device_kind']} x {jax.device_count()} ({ctx.env['platform']}), load "
        f"{ctx.env['load_avg_1m']:.1f}. On fake CPU devices all 'devices' share the same cores: read these "
        "as overheads of the drivers and of the global gather, not as speed-ups. Step time is the median "
        "of repeated calls on one global batch, compile apart. GFLOP/s: XLA's FLOP count of the unsharded "
        "step on the global batch over the step time, and its share of a 2048x2048 float32 matmul on "
        f"device 0 measured in the same run ({ctx.peak / 1e9:.1f} GFLOP/s); the OT-scope rows use the global "
        "coupling's count (per-shard OT does less work). "
        + (f"Per-shard OT skipped at global batch {skipped} on this CPU: with more than "
           f"{CPU_PER_SHARD_MAX} points per fake device the host-callback solves on {n} fake devices "
           "sharing the cores deadlock XLA:CPU's in-process all-reduce (40 s rendezvous timeout, "
           "process abort). " if skipped else "")
        + f"Plots: `scaling.png`, `scaling_ot_scope.png`. Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    n = rows[-1]["devices"]
    h.write_plot(ctx.file("png"), [r for r in rows if r["part"] == "devices"], "devices", "examples_per_s",
                 ["coupling", "driver"], title=f"examples/s, global batch {BATCH}, {ctx.env['device_kind']}",
                 ylabel="examples / s")
    h.write_plot(ctx.file("png", "_ot_scope"), [r for r in rows if r["part"] == "ot_scope"], "global_batch",
                 "examples_per_s", ["scope"], title=f"exact OT on {n} devices: global vs per-shard",
                 xlabel="global batch", ylabel="examples / s")


SUITE = h.Suite(
    name="scaling", title="Data-parallel scaling (flowjax_fm)", doc=__doc__, cases=cases, run_case=run_case,
    columns=COLUMNS, preamble=preamble, repeats=(20, 3),
    # eight fake devices when JAX ends up on the CPU; no effect on a GPU/TPU backend
    xla_flags="--xla_force_host_platform_device_count=8", plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
