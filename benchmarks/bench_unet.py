"""UNet training throughput (images/s) at two image sizes; compile time apart.

One jitted class-conditional train step (``make_conditional_train_step``: label-aware coupling,
label dropout 0.1, CondOT path, Adam, EMA) on a fixed batch; the median over ``--repeats`` calls
of ``--inner`` steps each, every call ending in ``block_until_ready``. Runs unchanged on
CPU / GPU / TPU and records the device kind.

    .venv/bin/python -m benchmarks.bench_unet [--quick] [--coupling independent exact-ot]

Achieved FLOP/s: XLA's FLOP count of one step (``compiled_flops``) over the median step time,
against a 2048x2048 float32 matrix product timed in the same run (``matmul_peak_flops``).
``--quick`` runs the small size only (unless ``--sizes`` says otherwise).

Writes ``RESULTS/unet.jsonl`` (appended), ``unet.md`` and ``unet.png`` (``unet_quick.*``
with ``--quick``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import flowjax_fm as fm
from benchmarks import _harness as h

SIZES = {
    # name: (image shape, UNet kwargs, batch)
    "8x8x1-small": ((8, 8, 1), dict(channels=16, channel_mult=(1, 2), num_res_blocks=1), 128),
    "32x32x3-wide": ((32, 32, 3), dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2), 64),
}


def flags(ap) -> None:
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--coupling", nargs="+", default=["independent"])
    ap.add_argument("--inner", type=int, default=5, help="steps per timed call")


def cases(ctx):
    return [{"size": s, "coupling": c} for s in ctx.args.sizes for c in ctx.args.coupling]


def run_case(ctx, case) -> dict:
    name, inner = case["size"], ctx.args.inner
    shape, kwargs, batch = SIZES[name]
    model = fm.models.UNet(shape[-1], num_classes=10, rngs=nnx.Rngs(0), **kwargs)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    opt = optax.adam(1e-3)
    raw_step = fm.training.make_conditional_train_step(
        model, optimizer=opt, path=fm.paths.CondOTPath(), coupling=fm.couplings.get_coupling(case["coupling"]),
        ema_decay=0.999, dropout=0.1,
    )

    def unet_step(state, key, x0, x1, labels):
        return raw_step(state, key, x0, x1, cond=labels)

    step = jax.jit(unet_step)  # the same function object as the FLOP count's: one compile
    k0, k1 = jax.random.split(jax.random.key(0))
    x1 = jax.random.normal(k1, (batch, *shape))
    x0 = jax.random.normal(k0, (batch, *shape))
    y = jnp.arange(batch, dtype=jnp.int32) % 10
    state = fm.training.init_state(model, opt)
    t = time.perf_counter()
    flops = h.compiled_flops(unet_step, state, jax.random.key(1), x0, x1, y)  # compiles the step
    lower_compile = time.perf_counter() - t
    holder = [state]

    def many():
        s = holder[0]
        for i in range(inner):
            s, _ = step(s, jax.random.key(i), x0, x1, y)
        holder[0] = s
        return s

    t = h.time_fn(many, ctx.repeats)
    per_step = t.median_s / inner
    return {
        "bench": "unet_train", "size": name, "image_shape": list(shape), "unet": kwargs,
        "params": int(n_params), "batch": batch, "coupling": case["coupling"],
        "step_s_median": per_step, "images_per_s": batch / per_step,
        "compile_s": lower_compile + t.compile_s, "times": t.times, "inner": inner,
        "flops_per_step": flops, "matmul_peak_flops": ctx.peak, **h.limit_fields(flops, per_step, ctx.peak),
    }


COLUMNS = [
    ("size", lambda r: r["size"]), ("params", lambda r: r["params"]), ("batch", lambda r: r["batch"]),
    ("coupling", lambda r: r["coupling"]), ("step ms", lambda r: f"{r['step_s_median'] * 1e3:.1f}"),
    ("images/s", lambda r: f"{r['images_per_s']:.0f}"), ("compile s", lambda r: f"{r['compile_s']:.1f}"),
    ("GFLOP/s (of matmul)", h.fmt_limit), ("device", lambda r: r["device_kind"]),
]


def preamble(ctx, rows) -> str:
    return (
        f"{h.env_line(ctx.env)} at the start ({ctx.env['platform']}, {ctx.env['cpu_count']} CPU cores shared "
        f"with other jobs), jax {ctx.env['versions']['jax']}. One jitted conditional train step (label dropout, Adam, "
        f"EMA); median of {ctx.repeats} x {ctx.args.inner} steps, block_until_ready; compile = "
        "lower + compile, plus the first call's excess over a steady one. GFLOP/s: XLA's FLOP count of one "
        "step over the median step time, and its share of a 2048x2048 float32 matmul measured in the same run "
        f"({ctx.peak / 1e9:.1f} GFLOP/s). Plot: `{ctx.name}.png`. Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    h.write_plot(ctx.file("png"), rows, "params", "images_per_s", ["coupling"],
                 title=f"UNet train step, {ctx.env['device_kind']}", xlabel="parameters", ylabel="images / s")


SUITE = h.Suite(
    name="unet", title="UNet training throughput", doc=__doc__, cases=cases, run_case=run_case,
    columns=COLUMNS, preamble=preamble, flags=flags, quick={"inner": 2, "sizes": [next(iter(SIZES))]},
    repeats=(5, 3), quick_file=True, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
