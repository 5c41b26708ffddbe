"""Log-likelihood throughput: fm.likelihood.log_prob (exact and Hutchinson) against a torch reference.

Run:

    .venv/bin/python benchmarks/bench_likelihood.py [--quick] [--repeats 5]

Both sides integrate the augmented state (x, delta log p) from t = 1 to t = 0 with 8 fixed RK4
steps (32 field evaluations; diffrax's classic RK4 here, torchdiffeq's ``rk4`` (3/8 rule) there,
so the two agree to O(h^4), not bitwise), through the *same* MLP weights (hidden 128 x 128,
SiLU, input [x, t]). The exact divergence is, in JAX, D forward-mode JVPs vmapped over the
basis vectors on the whole batch; in torch, a loop over the D dimensions of
``torch.autograd.grad`` as torchcfm's CNF tutorial does. Hutchinson: one Rademacher probe
(JAX: one JVP; torch: one vector-Jacobian product). One core, one thread each (pinned).
Compile / first-call time is reported apart; times are medians. Writes
``benchmarks/results/likelihood.jsonl`` (appended) and ``benchmarks/results/likelihood.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median_time, pin_one_core, write_jsonl, write_table  # noqa: E402

PINNED = pin_one_core()  # before jax / torch start their thread pools

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

HIDDEN = (128, 128)
STEPS = 8


def jax_side(model, d, batch, estimator, repeats):
    field = fm.training.make_vector_field(model)
    fn = jax.jit(lambda x, key: fm.likelihood.log_prob(
        field, x, key=key, estimator=estimator, solver="rk4", num_steps=STEPS))
    x = jax.random.normal(jax.random.key(1), (batch, d))
    key = jax.random.key(2)
    t = time.perf_counter()
    out = fn(x, key).block_until_ready()
    first = time.perf_counter() - t
    med, _ = median_time(lambda: fn(x, key).block_until_ready(), repeats, warmup=0)
    return np.asarray(out), med, max(first - med, 0.0)


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


def torch_side(net, d, batch, estimator, repeats):
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
    med, _ = median_time(run, repeats, warmup=0)
    return out.numpy(), med, max(first - med, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="dims 2, 16, 64; batch 32")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256, 784])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-exact-work", type=int, default=784 * 32,
                    help="skip exact runs with D * batch above this (minutes each on one core)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.dims, args.batches, args.repeats = [2, 16, 64], [32], 3
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    env = environment()
    rows, table = [], []
    for d in args.dims:
        model = fm.models.MLP(d, HIDDEN, activation="silu", rngs=nnx.Rngs(0))
        net = torch_net(model, d) if have_torch else None
        for batch in args.batches:
            for estimator in ("exact", "hutchinson"):
                if estimator == "exact" and d * batch > args.max_exact_work:
                    continue
                out_j, t_j, c_j = jax_side(model, d, batch, estimator, args.repeats)
                row = {"suite": "likelihood", "dim": d, "batch": batch, "estimator": estimator,
                       "hidden": list(HIDDEN), "solver": f"rk4 x {STEPS}", "nfe": 4 * STEPS,
                       "jax_s": t_j, "jax_compile_s": c_j, "jax_points_per_s": batch / t_j,
                       "pinned": PINNED, **env}
                if net is not None:
                    out_t, t_t, c_t = torch_side(net, d, batch, estimator, args.repeats)
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
                ])
    write_jsonl("likelihood", rows)
    v = env["versions"]
    write_table(
        "likelihood", "Log-likelihood throughput: exact vs Hutchinson, flowjax_fm vs torch",
        f"{env['time']}, {env['device_kind']} ({PINNED}), load {env['load_avg_1m']:.1f}; jax "
        f"{v['jax']}, diffrax {v['diffrax']}, torch {v['torch']}, torchdiffeq {v['torchdiffeq']}. "
        f"MLP {HIDDEN} SiLU, same weights both sides; {STEPS} fixed RK4 steps (32 evaluations) "
        "from t = 1 to 0. Exact: JAX vmaps D JVPs over the batch; torch loops over D "
        "`autograd.grad` calls (torchcfm CNF tutorial). Hutchinson: one Rademacher probe. "
        f"Median of {args.repeats} calls; compile (JAX) / first-call overhead apart. Speedup = "
        "torch time / JAX time. Diff: max |log p_torch - log p_jax| (nats; RK4 variants differ "
        f"at O(h^4)). Exact runs with D x batch > {args.max_exact_work} skipped. Command: "
        f"`.venv/bin/python benchmarks/bench_likelihood.py{' --quick' if args.quick else ''}`.",
        ["D", "batch", "estimator", "JAX ms", "JAX compile s", "JAX points/s", "torch ms",
         "torch points/s", "speedup", "diff (exact)"],
        table,
    )


if __name__ == "__main__":
    main()
