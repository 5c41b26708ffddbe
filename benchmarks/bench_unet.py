"""UNet training throughput (images/s) at two image sizes; compile time apart.

One jitted class-conditional train step (``make_conditional_train_step``: label-aware coupling,
label dropout 0.1, CondOT path, Adam, EMA) on a fixed batch; the median over ``--repeats`` calls
of ``--inner`` steps each, every call ending in ``block_until_ready``. Runs unchanged on
CPU / GPU / TPU and records the device kind.

    .venv/bin/python benchmarks/bench_unet.py [--quick] [--coupling independent exact-ot]

Achieved FLOP/s: XLA's FLOP count of one step (``compiled_flops``) over the median step time,
against a 2048x2048 float32 matrix product timed in the same run (``matmul_peak_flops``).
``--quick`` runs the small size only (unless ``--sizes`` says otherwise).

Writes ``benchmarks/results/unet.jsonl`` (appended), ``unet.md`` and ``unet.png`` (``unet_quick.*``
with ``--quick``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
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
from flowjax_fm.training._images import make_conditional_train_step  # noqa: E402

SIZES = {
    # name: (image shape, UNet kwargs, batch)
    "8x8x1-small": ((8, 8, 1), dict(channels=16, channel_mult=(1, 2), num_res_blocks=1), 128),
    "32x32x3-wide": ((32, 32, 3), dict(channels=64, channel_mult=(1, 2, 2), num_res_blocks=2), 64),
}


def run(name: str, coupling: str, repeats: int, inner: int, peak: float) -> dict:
    shape, kwargs, batch = SIZES[name]
    model = fm.models.UNet(shape[-1], num_classes=10, rngs=nnx.Rngs(0), **kwargs)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    opt = optax.adam(1e-3)
    raw_step = make_conditional_train_step(
        model, optimizer=opt, path=fm.paths.CondOTPath(),
        coupling=fm.couplings.get_coupling(coupling), ema_decay=0.999, dropout=0.1,
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
    flops = compiled_flops(unet_step, state, jax.random.key(1), x0, x1, y)  # compiles the step
    lower_compile = time.perf_counter() - t
    t = time.perf_counter()
    state, _ = step(state, jax.random.key(1), x0, x1, y)
    jax.block_until_ready(state)
    first = time.perf_counter() - t
    holder = [state]

    def many():
        s = holder[0]
        for i in range(inner):
            s, _ = step(s, jax.random.key(i), x0, x1, y)
        holder[0] = jax.block_until_ready(s)

    med, times = median_time(many, repeats, warmup=0)
    per_step = med / inner
    return {
        "bench": "unet_train", "size": name, "image_shape": list(shape), "unet": kwargs,
        "params": int(n_params), "batch": batch, "coupling": coupling,
        "step_s_median": per_step, "images_per_s": batch / per_step,
        "compile_s": lower_compile + max(first - per_step, 0.0), "times": times, "inner": inner,
        "flops_per_step": flops, "matmul_peak_flops": peak, **limit_fields(flops, per_step, peak),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--coupling", nargs="+", default=["independent"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.inner = 3, 2
        if args.sizes == list(SIZES):
            args.sizes = [next(iter(SIZES))]
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows, table = [], []
    for name in args.sizes:
        for coupling in args.coupling:
            r = dict(run(name, coupling, args.repeats, args.inner, peak), quick=args.quick, **env)
            rows.append(r)
            table.append([
                name, r["params"], r["batch"], coupling, f"{r['step_s_median'] * 1e3:.1f}",
                f"{r['images_per_s']:.0f}", f"{r['compile_s']:.1f}", fmt_limit(r), env["device_kind"],
            ])
            print(table[-1], flush=True)
    name = "unet_quick" if args.quick else "unet"
    write_jsonl(name, rows)
    pre = (
        f"Device {env['device_kind']} ({env['platform']}, {env['cpu_count']} CPU cores, load "
        f"{env['load_avg_1m']:.1f} when started: other jobs shared the machine), jax "
        f"{env['versions']['jax']}. One jitted conditional train step (label dropout, Adam, "
        f"EMA); median of {args.repeats} x {args.inner} steps, block_until_ready; compile = "
        "lower + compile, plus first call minus one steady step. GFLOP/s: XLA's FLOP count of one "
        "step over the median step time, and its share of a 2048x2048 float32 matmul measured in the same run "
        f"({peak / 1e9:.1f} GFLOP/s). Plot: `{name}.png`. Command: "
        f"`.venv/bin/python benchmarks/bench_unet.py{' --quick' if args.quick else ''}`."
    )
    write_table(
        name, "UNet training throughput", pre,
        ["size", "params", "batch", "coupling", "step ms", "images/s", "compile s",
         "GFLOP/s (of matmul)", "device"],
        table,
    )
    write_plot(name, rows, "params", "images_per_s", ["coupling"],
               title=f"UNet train step, {env['device_kind']}", xlabel="parameters",
               ylabel="images / s")


if __name__ == "__main__":
    main()
