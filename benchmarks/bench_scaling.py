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
# the divergence part: 1 against n devices, same run, samples compared at these step counts
DIVERGENCE_BATCH, DIVERGENCE_STEPS, DIVERGENCE_SAMPLES = 256, (20, 100, 300), 512


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


PARTS = ("devices", "ot_scope", "divergence")


def flags(ap) -> None:
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="which parts to run (default: all)")


def cases(ctx):
    for case in _all_cases(ctx):
        if case["part"] in ctx.args.parts:
            yield case


def _all_cases(ctx):
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]
    if ctx.quick:  # the smoke version: one device and all of them
        counts = sorted({counts[0], counts[-1]})
    for coupling in ("independent", "exact-ot"):
        for driver in ("shard_map", "pmap"):
            for n in counts:
                yield {"part": "devices", "coupling": coupling, "driver": driver, "devices": n, "global_batch": BATCH}
    n = counts[-1]
    for batch in (1024,) if ctx.quick else (256, 1024, 4096, 8192):
        for scope in ("global", "per_shard"):
            yield {"part": "ot_scope", "coupling": "exact-ot", "driver": "shard_map", "scope": scope,
                   "devices": n, "global_batch": batch}
    if n > 1:
        for coupling in ("independent", "exact-ot"):
            yield {"part": "divergence", "coupling": coupling, "driver": "shard_map", "devices": n,
                   "global_batch": DIVERGENCE_BATCH}


def _divergence(ctx, case) -> dict:
    """Train the same run on 1 and on n devices (fit, same key and global batch) and compare
    their samples from the same noise at DIVERGENCE_STEPS; W2 of each to fresh data as well."""
    n, batch = case["devices"], case["global_batch"]
    step, state = _setup(case["coupling"])
    mesh = fm.training.data_mesh(n)
    runs = {1: (step, state), n: (fm.training.shard_step(step, mesh), fm.training.replicate(state, mesh))}
    src = lambda k, m: fm.data.sample_toy("8gaussians", k, m)  # noqa: E731
    tgt = lambda k, m: fm.data.sample_toy("moons", k, m)  # noqa: E731
    noise = src(jax.random.key(11), DIVERGENCE_SAMPLES)
    data = tgt(jax.random.key(12), DIVERGENCE_SAMPLES)
    curve, done = {}, 0
    horizons = (5, 20) if ctx.quick else DIVERGENCE_STEPS
    for horizon in horizons:
        samples = {}
        for devices, (run, st) in runs.items():
            st, _ = fm.training.fit(run, st, jax.random.key(5), src, tgt, num_steps=horizon - done,
                                    batch_size=batch, progress=False, chunk_size=50)
            runs[devices] = (run, st)
            params = jax.tree.map(lambda a: jax.numpy.asarray(jax.device_get(a)), st.params)
            field = fm.training.make_vector_field(step.model, params)
            samples[devices] = fm.sampling.sample(field, noise, solver="dopri5", rtol=1e-5, atol=1e-5).x
        done = horizon
        diff = float(jax.numpy.abs(samples[1] - samples[n]).max())
        w1, wn = (float(fm.metrics.wasserstein(samples[d], data)) for d in (1, n))
        curve[horizon] = {"max_abs_diff": diff, "w2_1": w1, f"w2_{n}": wn}
    return {"suite": "scaling", **case, "curve": {str(k): v for k, v in curve.items()},
            "steps": list(horizons), "samples": DIVERGENCE_SAMPLES}


def run_case(ctx, case) -> dict:
    if case["part"] == "divergence":
        return _divergence(ctx, case)
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


def _divergence_table(ctx, rows) -> str:
    rows = [r for r in rows if r["part"] == "divergence"]
    if not rows:
        return ""
    n = rows[0]["devices"]
    lines = [f"\n\nDevice-count divergence (`fit` on 1 and on {n} devices, same key and global batch "
             f"{rows[0]['global_batch']}; {rows[0]['samples']} samples from the same noise, dopri5 at 1e-5; "
             "W2 to 512 fresh moons points):\n",
             f"| coupling | steps | max abs(samples 1 - samples {n}) | W2 (1 device) | W2 ({n} devices) |",
             "|---|---|---|---|---|"]
    for r in rows:
        for k, v in r["curve"].items():
            lines.append(f"| {r['coupling']} | {k} | {v['max_abs_diff']:.1e} | {v['w2_1']:.3f} | {v[f'w2_{n}']:.3f} |")
    return "\n".join(lines)


def preamble(ctx, rows) -> str:
    return (
        f"{ctx.env['time']}, {ctx.env['device_kind']} x {jax.device_count()} ({ctx.env['platform']}), load "
        f"{ctx.env['load_avg_1m']:.1f}. On fake CPU devices all 'devices' share the same cores: read these "
        "as overheads of the drivers and of the global gather, not as speed-ups. Step time is the median "
        "of repeated calls on one global batch, compile apart. GFLOP/s: XLA's FLOP count of the unsharded "
        "step on the global batch over the step time, and its share of a 2048x2048 float32 matmul on "
        f"device 0 measured in the same run ({ctx.peak / 1e9:.1f} GFLOP/s); the OT-scope rows use the global "
        "coupling's count (per-shard OT does less work). "
        + "Both drivers pair in their own program before the sharded step (the host solver never "
        "shares a program with the collectives), so per-shard exact OT runs at every batch. "
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
    columns=COLUMNS, preamble=preamble, repeats=(20, 3), extra_md=_divergence_table, flags=flags,
    table_rows=lambda ctx, rows: [r for r in rows if r["part"] != "divergence"],
    # eight fake devices when JAX ends up on the CPU; no effect on a GPU/TPU backend
    xla_flags="--xla_force_host_platform_device_count=8", plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
