"""Log-likelihood throughput: fm.likelihood.log_prob (exact and Hutchinson) against a torch reference.

Run:

    .venv/bin/python benchmarks/bench_likelihood.py [--quick] [--repeats 5]

Both sides integrate the augmented state (x, delta log p) from t = 1 to t = 0 with 8 fixed RK4
steps (32 field evaluations; diffrax's classic RK4 here, torchdiffeq's ``rk4`` (3/8 rule) there,
so the two agree to O(h^4), not bitwise), through the *same* MLP weights (hidden 128 x 128,
SiLU, input [x, t]). The exact divergence is, in JAX, D forward-mode JVPs vmapped over the
basis vectors on the whole batch; in torch, a loop over the D dimensions of
``torch.autograd.grad`` as torchcfm's CNF tutorial does. Hutchinson: one Rademacher probe
(JAX: one JVP; torch: one vector-Jacobian product). One core each: every thread of the
process pinned to one core (:func:`pin_every_thread`), one torch thread, single-threaded XLA.
Compile / first-call time is reported apart; times are medians, the two sides' calls taking turns
(so that a busy neighbour slows both alike).

How close it runs to the machine's limit (ours): FLOPs per call = NFE (32) x XLA's FLOP count of
one evaluation of the augmented dynamics on the batch (the field and its divergence,
``fm.likelihood.divergence``; XLA's cost analysis counts the solver's while-loop body once, so
the whole call's count is not usable), over the median time, against a 2048^2 float32 matmul
measured in the same run. Not given for torch, whose exact divergence is a different
computation (D reverse-mode passes).

Writes ``likelihood.jsonl`` (appended), ``likelihood.md`` and ``likelihood.png`` (points/s
against D) under ``benchmarks/results`` (``likelihood_quick.*`` with ``--quick``;
``FLOWJAX_FM_BENCH_RESULTS`` redirects). Without torch / torchdiffeq it says so and times ours
alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    pin_every_thread,
    pin_one_core,
    write_jsonl,
    write_plot,
    write_table,
)

PINNED = pin_one_core()  # before jax / torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

HIDDEN = (128, 128)
STEPS = 8


def time_interleaved(calls: dict, repeats: int) -> dict:
    """Median seconds of each call after one warm-up call; the calls take turns, so that all
    see the same load."""
    for call in calls.values():
        call()
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, call in calls.items():
            start = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(ts)) for k, ts in times.items()}


def jax_side(model, d, batch, estimator):
    """``(call, log p, first-call seconds, FLOPs of one dynamics evaluation)``."""
    field = fm.training.make_vector_field(model)
    fn = jax.jit(lambda x, key: fm.likelihood.log_prob(
        field, x, key=key, estimator=estimator, solver="rk4", num_steps=STEPS))
    x = jax.random.normal(jax.random.key(1), (batch, d))
    key = jax.random.key(2)
    call = lambda: fn(x, key).block_until_ready()
    t = time.perf_counter()
    out = call()
    first = time.perf_counter() - t
    # one evaluation of the augmented dynamics (v and div v on the batch)
    flops_eval = compiled_flops(
        lambda x, t, key: (field(x, t),
                           fm.likelihood.divergence(field, x, t, key=key, estimator=estimator)),
        x, jnp.full((batch,), 0.5, x.dtype), key,
    )
    return call, np.asarray(out), first, flops_eval


def torch_net(model, d):
    import torch

    layers = []
    for lin in [*model.layers, model.out]:
        layer = torch.nn.Linear(*lin.kernel.get_value().shape)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.array(lin.kernel.get_value()).T.copy()))
            layer.bias.copy_(torch.from_numpy(np.array(lin.bias.get_value())))
        layers.append(layer)
    mods = []
    for layer in layers[:-1]:
        mods += [layer, torch.nn.SiLU()]
    return torch.nn.Sequential(*mods, layers[-1])


def torch_side(net, d, batch, estimator):
    """``(call, log p, first-call seconds)``."""
    import torch
    import torchdiffeq

    x1 = torch.from_numpy(np.array(jax.random.normal(jax.random.key(1), (batch, d))))
    eps = torch.randint(0, 2, (batch, d)).float() * 2 - 1

    def dynamics(t, state):
        x, _ = state
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = net(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))
            if estimator == "exact":
                div = torch.zeros(x.shape[0])
                for k in range(d):
                    div = div + torch.autograd.grad(v[:, k].sum(), x, retain_graph=True)[0][:, k]
            else:
                div = (torch.autograd.grad((v * eps).sum(), x)[0] * eps).sum(1)
        return v.detach(), div.detach()

    def run():
        xs, deltas = torchdiffeq.odeint(
            dynamics, (x1, torch.zeros(batch)), torch.tensor([1.0, 0.0]), method="rk4",
            options=dict(step_size=1.0 / STEPS),
        )
        x0, delta = xs[-1], deltas[-1]
        return -0.5 * (x0**2).sum(1) - 0.5 * d * np.log(2 * np.pi) + delta

    t = time.perf_counter()
    out = run()
    first = time.perf_counter() - t
    return run, out.numpy(), first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="dims 2, 64; batch 32")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256, 784])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-exact-work", type=int, default=784 * 32,
                    help="skip exact runs with D * batch above this (minutes each on one core)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.dims, args.batches, args.repeats = [2, 64], [32], 3
    missing = None
    try:
        import torch
        import torchdiffeq  # noqa: F401

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        have_torch = not args.no_torch
        if not have_torch:
            missing = "torch side off (--no-torch)"
    except ImportError as exc:
        have_torch = False
        missing = f"torch / torchdiffeq not installed ({exc})"
    if missing:
        print(f"{missing}: timing ours only", file=sys.stderr)
    global PINNED
    PINNED = pin_every_thread() or PINNED
    env = environment()
    peak = matmul_peak_flops()
    # A 512^2 product fits in cache and runs ~2-3x faster here than the 2048^2 reference: recorded
    # for context, since a small-matrix workload can exceed "100%" of the 2048^2 limit.
    peak_small = matmul_peak_flops(512, repeats=15)
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s (512^2: {peak_small / 1e9:.1f}); {PINNED}",
          flush=True)
    rows, table = [], []
    for d in args.dims:
        pin_every_thread()  # threads started since (compilation) too
        model = fm.models.MLP(d, HIDDEN, activation="silu", rngs=nnx.Rngs(0))
        net = torch_net(model, d) if have_torch else None
        for batch in args.batches:
            for estimator in ("exact", "hutchinson"):
                if estimator == "exact" and d * batch > args.max_exact_work:
                    continue
                call_j, out_j, first_j, f_eval = jax_side(model, d, batch, estimator)
                calls = {"jax": call_j}
                if net is not None:
                    call_t, out_t, first_t = torch_side(net, d, batch, estimator)
                    calls["torch"] = call_t
                med = time_interleaved(calls, args.repeats)
                t_j, c_j = med["jax"], max(first_j - med["jax"], 0.0)
                flops = None if f_eval is None else 4 * STEPS * f_eval
                row = {"suite": "likelihood", "dim": d, "batch": batch, "estimator": estimator,
                       "hidden": list(HIDDEN), "solver": f"rk4 x {STEPS}", "nfe": 4 * STEPS,
                       "jax_s": t_j, "jax_compile_s": c_j, "jax_points_per_s": batch / t_j,
                       "flops_per_eval": f_eval, "flops_per_call": flops, "quick": args.quick,
                       "matmul_peak_flops": peak, "matmul512_flops": peak_small,
                       **limit_fields(flops, t_j, peak),
                       "pinned": PINNED, **env}
                if net is not None:
                    t_t, c_t = med["torch"], max(first_t - med["torch"], 0.0)
                    row.update(torch_s=t_t, torch_first_call_extra_s=c_t,
                               torch_points_per_s=batch / t_t, speedup=t_t / t_j)
                    if estimator == "exact":
                        row["max_abs_diff_nats"] = float(np.abs(out_t - out_j).max())
                rows.append(row)
                print({k: row[k] for k in row if k not in env}, flush=True)
                table.append([
                    d, batch, estimator, f"{t_j * 1e3:.1f}", f"{c_j:.1f}",
                    f"{row['jax_points_per_s']:.0f}",
                    f"{row['torch_s'] * 1e3:.1f}" if "torch_s" in row else "-",
                    f"{row['torch_points_per_s']:.0f}" if "torch_s" in row else "-",
                    f"{row['speedup']:.1f}x" if "speedup" in row else "-",
                    f"{row['max_abs_diff_nats']:.1e}" if "max_abs_diff_nats" in row else "-",
                    fmt_limit(row),
                ])
    name = "likelihood_quick" if args.quick else "likelihood"
    write_jsonl(name, rows)
    v = env["versions"]
    write_table(
        name, "Log-likelihood throughput: exact vs Hutchinson, flowjax_fm vs torch",
        (f"**{missing}: ours only.** " if missing else "")
        + f"{env['time']}, {env['device_kind']} ({PINNED}), load {env['load_avg_1m']:.1f}; jax "
        f"{v['jax']}, diffrax {v['diffrax']}, torch {v['torch']}, torchdiffeq {v['torchdiffeq']}. "
        f"MLP {HIDDEN} SiLU, same weights both sides; {STEPS} fixed RK4 steps (32 evaluations) "
        "from t = 1 to 0. Exact: JAX vmaps D JVPs over the batch; torch loops over D "
        "`autograd.grad` calls (torchcfm CNF tutorial). Hutchinson: one Rademacher probe. "
        f"Median of {args.repeats} calls, the two sides taking turns; compile (JAX) / first-call "
        "overhead apart. Speedup = "
        "torch time / JAX time. Diff: max |log p_torch - log p_jax| (nats; RK4 variants differ "
        f"at O(h^4)). Exact runs with D x batch > {args.max_exact_work} skipped. JAX GFLOP/s: 32 x "
        "XLA's FLOP count of one evaluation of (v, div v) on the batch, over the median time (XLA "
        "counts the solver's while-loop body once), and its share of a 2048^2 float32 matmul in "
        f"the same run ({peak / 1e9:.1f} GFLOP/s; a cache-resident 512^2 product reached "
        f"{peak_small / 1e9:.1f}, so shares above 100% are possible for these small matrices; "
        f"other benchmarks shared the core). Plot: `{name}.png` (points/s against D). "
        f"Command: `.venv/bin/python benchmarks/bench_likelihood.py{' --quick' if args.quick else ''}`.",
        ["D", "batch", "estimator", "JAX ms", "JAX compile s", "JAX points/s", "torch ms",
         "torch points/s", "speedup", "diff (exact)", "JAX GFLOP/s (of matmul)"],
        table,
    )
    long = []
    for r in rows:
        long.append(dict(dim=r["dim"], batch=r["batch"], library="flowjax_fm", estimator=r["estimator"],
                         points_per_s=r["jax_points_per_s"]))
        if "torch_points_per_s" in r:
            long.append(dict(dim=r["dim"], batch=r["batch"], library="torch", estimator=r["estimator"],
                             points_per_s=r["torch_points_per_s"]))
    write_plot(name, long, "dim", "points_per_s", ["library", "estimator"], panels="batch",
               title="log-likelihood throughput", xlabel="D", ylabel="points / s")
    print(f"wrote {RESULTS}/{name}.jsonl, .md and .png", flush=True)


if __name__ == "__main__":
    main()
