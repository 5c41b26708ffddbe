"""Log-likelihood throughput: fm.likelihood.log_prob (exact and Hutchinson) against a torch reference.

Run:

    .venv/bin/python -m benchmarks.bench_likelihood [--quick] [--repeats 5] [--no-torch]

Both sides integrate the augmented state (x, delta log p) from t = 1 to t = 0 with 8 fixed RK4
steps (32 field evaluations; diffrax's classic RK4 here, torchdiffeq's ``rk4`` (3/8 rule) there,
so the two agree to O(h^4), not bitwise), through the *same* MLP weights (hidden 128 x 128,
SiLU, input [x, t]). The exact divergence is, in JAX, D forward-mode JVPs vmapped over the
basis vectors on the whole batch; in torch, a loop over the D dimensions of
``torch.autograd.grad`` as torchcfm's CNF tutorial does. Hutchinson: one Rademacher probe
(JAX: one JVP; torch: one vector-Jacobian product). One core each: every thread of the
process pinned to one core (:func:`_harness.pin_every_thread`), one torch thread, single-threaded XLA.
Compile / first-call time is reported apart; times are medians, the two sides' calls taking turns
(so that a busy neighbour slows both alike).

How close it runs to the machine's limit (ours): FLOPs per call = NFE (32) x XLA's FLOP count of
one evaluation of the augmented dynamics on the batch (the field and its divergence,
``fm.likelihood.divergence``; XLA's cost analysis counts the solver's while-loop body once, so
the whole call's count is not usable), over the median time, against a 2048^2 float32 matmul
measured in the same run. Not given for torch, whose exact divergence is a different
computation (D reverse-mode passes).

Writes ``likelihood.jsonl`` (appended), ``likelihood.md`` and ``likelihood.png`` (points/s
against D) under ``RESULTS`` (``likelihood_quick.*`` with ``--quick``;
``FLOWJAX_FM_BENCH_RESULTS`` redirects). Without torch / torchdiffeq it says so and times ours
alone.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flowjax_fm as fm
from benchmarks import _harness as h
from benchmarks import _peers as peers

HIDDEN = (128, 128)
STEPS = 8


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
    flops_eval = h.compiled_flops(
        lambda x, t, key: (field(x, t), fm.likelihood.divergence(field, x, t, key=key, estimator=estimator)),
        x, jnp.full((batch,), 0.5, x.dtype), key,
    )
    return call, np.asarray(out), first, flops_eval


def torch_net(model):
    """The same weights in torch: [x, t] -> 128 -> 128 -> d, SiLU."""
    layers = [*model.layers, model.out]
    return peers.torch_mlp([(np.array(lin.kernel.get_value()), np.array(lin.bias.get_value())) for lin in layers], "silu")


def torch_side(net, d, batch, estimator):
    """``(call, log p, first-call seconds)``: x and delta log p by torchdiffeq's rk4 (3/8), D
    ``autograd.grad`` calls for the exact divergence (torchcfm's CNF tutorial), one VJP for Hutchinson."""
    torch = peers.torch()
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
        xs, deltas = peers.torchdiffeq().odeint(
            dynamics, (x1, torch.zeros(batch)), torch.tensor([1.0, 0.0]), method="rk4",
            options=dict(step_size=1.0 / STEPS),
        )
        return -0.5 * (xs[-1] ** 2).sum(1) - 0.5 * d * np.log(2 * np.pi) + deltas[-1]

    t = time.perf_counter()
    out = run()
    return run, out.numpy(), time.perf_counter() - t


def flags(ap) -> None:
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256, 784])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--max-exact-work", type=int, default=784 * 32,
                    help="skip exact runs with D * batch above this (minutes each on one core)")
    ap.add_argument("--no-torch", action="store_true")


def setup(ctx) -> None:
    ctx.data["missing"] = peers.start("torch side", "torch", "torchdiffeq",
                                      off="torch side off (--no-torch)" if ctx.args.no_torch else None)
    ctx.threads = h.pin_every_thread()  # torch's threads too
    ctx.data["peak_small"] = h.cache_resident_peak()


def cases(ctx):
    a = ctx.args
    return [{"dim": d, "batch": b, "estimator": e} for d in a.dims for b in a.batches
            for e in ("exact", "hutchinson") if not (e == "exact" and d * b > a.max_exact_work)]


def run_case(ctx, case) -> dict:
    d, batch, estimator = case["dim"], case["batch"], case["estimator"]
    if ctx.data.get("dim") != d:  # one model (and its torch copy) per dimension
        h.pin_every_thread()  # threads started since (compilation) too
        model = fm.models.MLP(d, HIDDEN, activation="silu", rngs=nnx.Rngs(0))
        ctx.data.update(dim=d, model=model, net=None if ctx.data["missing"] else torch_net(model))
    call_j, out_j, first_j, f_eval = jax_side(ctx.data["model"], d, batch, estimator)
    calls = {"jax": call_j}
    if ctx.data["net"] is not None:
        call_t, out_t, first_t = torch_side(ctx.data["net"], d, batch, estimator)
        calls["torch"] = call_t
    med = h.time_interleaved(calls, ctx.repeats)
    t_j = med["jax"].median_s
    flops = None if f_eval is None else 4 * STEPS * f_eval
    row = {"suite": "likelihood", **case, "hidden": list(HIDDEN), "solver": f"rk4 x {STEPS}", "nfe": 4 * STEPS,
           "jax_s": t_j, "jax_compile_s": max(first_j - t_j, 0.0), "jax_points_per_s": batch / t_j,
           "flops_per_eval": f_eval, "flops_per_call": flops, "matmul_peak_flops": ctx.peak,
           "matmul512_flops": ctx.data["peak_small"], **h.limit_fields(flops, t_j, ctx.peak), "pinned": ctx.threads}
    if "torch" in med:
        t_t = med["torch"].median_s
        row.update(torch_s=t_t, torch_first_call_extra_s=max(first_t - t_t, 0.0),
                   torch_points_per_s=batch / t_t, speedup=h.speedup(med, "torch", "jax"))
        if estimator == "exact":
            row["max_abs_diff_nats"] = float(np.abs(out_t - out_j).max())
    return row


COLUMNS = [
    ("D", lambda r: r["dim"]), ("batch", lambda r: r["batch"]), ("estimator", lambda r: r["estimator"]),
    ("JAX ms", lambda r: f"{r['jax_s'] * 1e3:.1f}"), ("JAX compile s", lambda r: f"{r['jax_compile_s']:.1f}"),
    ("JAX points/s", lambda r: f"{r['jax_points_per_s']:.0f}"),
    ("torch ms", lambda r: h.fmt(r["torch_s"] * 1e3 if "torch_s" in r else None, ".1f")),
    ("torch points/s", lambda r: h.fmt(r.get("torch_points_per_s"), ".0f")),
    ("speedup", lambda r: h.fmt(r.get("speedup"), ".1f") + ("x" if "speedup" in r else "")),
    ("diff (exact)", lambda r: h.fmt(r.get("max_abs_diff_nats"), ".1e")),
    ("JAX GFLOP/s (of matmul)", h.fmt_limit),
]


def preamble(ctx, rows) -> str:
    v, missing, a = ctx.env["versions"], ctx.data.get("missing"), ctx.args
    return (
        (f"**{missing}: ours only.** " if missing else "")
        + f"{ctx.env['time']}, {ctx.env['device_kind']} ({ctx.threads}), load {ctx.env['load_avg_1m']:.1f}; jax "
        f"{v['jax']}, diffrax {v['diffrax']}, torch {v['torch']}, torchdiffeq {v['torchdiffeq']}. "
        f"MLP {HIDDEN} SiLU, same weights both sides; {STEPS} fixed RK4 steps (32 evaluations) "
        "from t = 1 to 0. Exact: JAX vmaps D JVPs over the batch; torch loops over D "
        "`autograd.grad` calls (torchcfm CNF tutorial). Hutchinson: one Rademacher probe. "
        f"Median of {ctx.repeats} calls, the two sides taking turns; compile (JAX) / first-call "
        "overhead apart. Speedup = torch time / JAX time. Diff: max |log p_torch - log p_jax| (nats; "
        f"RK4 variants differ at O(h^4)). Exact runs with D x batch > {a.max_exact_work} skipped. JAX GFLOP/s: 32 x "
        "XLA's FLOP count of one evaluation of (v, div v) on the batch, over the median time (XLA "
        "counts the solver's while-loop body once), and its share of a 2048^2 float32 matmul in "
        f"the same run ({ctx.peak / 1e9:.1f} GFLOP/s; a cache-resident 512^2 product reached "
        f"{ctx.data['peak_small'] / 1e9:.1f}, so shares above 100% are possible for these small matrices; "
        f"other benchmarks shared the core). Plot: `{ctx.name}.png` (points/s against D). Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    long = h.long_rows(rows, ("dim", "batch", "estimator"), "points_per_s",
                       {"flowjax_fm": "jax_points_per_s", "torch": "torch_points_per_s"})
    h.write_plot(ctx.file("png"), long, "dim", "points_per_s", ["library", "estimator"], panels="batch",
                 title="log-likelihood throughput", xlabel="D", ylabel="points / s")


SUITE = h.Suite(
    name="likelihood", title="Log-likelihood throughput: exact vs Hutchinson, flowjax_fm vs torch",
    doc=__doc__, cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"dims": [2, 64], "batches": [32]}, repeats=(5, 3), pin=True, quick_file=True,
    setup=setup, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
