"""Sampling speed: fm.sampling.sample (diffrax, jitted) against torchdiffeq, same network weights.

A small time-conditioned MLP vector field (fixed random weights, SELU), 2D and 64D, batch
2,000, integrated from t = 0 to 1:

* equal NFE: fixed-step rk4 and euler at 8 / 32 / 100 steps;
* equal tolerance: dopri5, rtol = atol = 1e-4, each side's own step-size control; NFE and the
  max abs error against a float64 torchdiffeq reference (dopri5, rtol = atol = 1e-10) reported.

Both sides get one CPU core: the process pins itself to core 0 (``sched_setaffinity``) and sets
OMP_NUM_THREADS=1, torch.set_num_threads(1) and single-threaded XLA before importing either.
Times are medians of repeats after a warm-up (JAX compile time reported apart), with
``block_until_ready``. Output: JSON lines in ``benchmarks/results/sampling.jsonl`` and a table in
``benchmarks/results/sampling.md``.

Usage::

    python benchmarks/bench_sampling.py           # full run
    python benchmarks/bench_sampling.py --quick   # smoke run: 2D only, few repeats
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()
if hasattr(os, "sched_setaffinity"):
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import flowjax_fm as fm  # noqa: E402

try:
    import torch
    import torchdiffeq

    TORCH_ERROR = None
except ImportError as err:  # reported in the output, not hidden
    torch = torchdiffeq = None
    TORCH_ERROR = f"{type(err).__name__}: {err}"

RESULTS = Path(__file__).resolve().parent / "results"


def make_weights(dim: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of an MLP [x, t] -> width -> width -> dim (float32, LeCun-normal-ish)."""
    rng = np.random.default_rng(seed)
    sizes = [dim + 1, width, width, dim]
    return [
        (
            (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            (0.1 * rng.standard_normal(b)).astype(np.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def jax_field(weights):
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]

    def v(x, t):
        h = jnp.concatenate([x, t[:, None]], axis=1)
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.selu(h)
        return h

    return v


def torch_field(weights, dtype):
    params = [(torch.tensor(w, dtype=dtype), torch.tensor(b, dtype=dtype)) for w, b in weights]

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            h = torch.cat([x, t.expand(x.shape[0], 1).to(x.dtype)], dim=1)
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = torch.nn.functional.selu(h)
            return h

    return Field()


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_ours(v, x0, solver, num_steps, rtol, atol, repeats):
    run = jax.jit(
        lambda x: fm.sampling.sample(v, x, solver=solver, num_steps=num_steps, rtol=rtol, atol=atol)
    )
    start = time.perf_counter()
    res = jax.block_until_ready(run(x0))
    first = time.perf_counter() - start
    med, times = median_time(lambda: jax.block_until_ready(run(x0)), repeats)
    return dict(
        seconds=med, times=times, compile_s=first - med, nfe=int(res.nfe), x=np.asarray(res.x)
    )


def bench_torch(weights, x0, method, num_steps, rtol, atol, repeats):
    f = torch_field(weights, torch.float32)
    y0 = torch.tensor(x0)
    ts = torch.tensor([0.0, 1.0])
    options = {"step_size": 1.0 / num_steps} if num_steps else None
    kwargs = (
        dict(method=method, options=options)
        if num_steps
        else dict(method=method, rtol=rtol, atol=atol)
    )

    def call():
        with torch.no_grad():
            return torchdiffeq.odeint(f, y0, ts, **kwargs)[-1]

    call()  # warm-up
    f.nfe = 0
    out = call()
    nfe = f.nfe
    med, times = median_time(call, repeats)
    return dict(seconds=med, times=times, nfe=nfe, x=out.numpy())


def reference(weights, x0):
    f = torch_field(weights, torch.float64)
    with torch.no_grad():
        y = torchdiffeq.odeint(
            f,
            torch.tensor(x0, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            method="dopri5",
            rtol=1e-10,
            atol=1e-10,
        )[-1]
    return y.numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2D only, few repeats")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 11)
    dims = [(2, 64)] if args.quick else [(2, 64), (64, 256)]
    steps = [8] if args.quick else [8, 32, 100]

    meta = dict(
        device=f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
        cpu=platform.processor() or platform.machine(),
        affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None,
        python=platform.python_version(),
        jax=jax.__version__,
        diffrax=__import__("diffrax").__version__,
        torch=None if torch is None else torch.__version__,
        torchdiffeq=None if torchdiffeq is None else torchdiffeq.__version__,
        batch=args.batch,
        repeats=repeats,
        quick=args.quick,
    )
    if torch is None:
        print(f"torch / torchdiffeq missing ({TORCH_ERROR}): timing ours only", file=sys.stderr)
    else:
        torch.set_num_threads(1)
    print(json.dumps(meta))

    rows = []
    for dim, width in dims:
        weights = make_weights(dim, width)
        x0 = np.asarray(jax.random.normal(jax.random.key(0), (args.batch, dim)), np.float32)
        v = jax_field(weights)
        ref = reference(weights, x0) if torch is not None else None
        cases = [(s, n, None, None) for s in ("rk4", "euler") for n in steps]
        cases.append(("dopri5", None, 1e-4, 1e-4))
        for solver, n, rtol, atol in cases:
            ours = bench_ours(v, jnp.asarray(x0), solver, n, rtol or 1e-5, atol or 1e-5, repeats)
            row = dict(
                dim=dim,
                width=width,
                batch=args.batch,
                solver=solver,
                num_steps=n,
                rtol=rtol,
                ours_s=ours["seconds"],
                ours_compile_s=ours["compile_s"],
                ours_nfe=ours["nfe"],
            )
            if torch is not None:
                theirs = bench_torch(weights, x0, solver, n, rtol, atol, repeats)
                row.update(
                    torch_s=theirs["seconds"],
                    torch_nfe=theirs["nfe"],
                    speedup=theirs["seconds"] / ours["seconds"],
                    ours_err=float(np.abs(ours["x"] - ref).max()),
                    torch_err=float(np.abs(theirs["x"] - ref).max()),
                )
            row.update(meta)
            rows.append(row)
            print(json.dumps({k: row[k] for k in row if k not in meta}), flush=True)

    RESULTS.mkdir(exist_ok=True)
    suffix = "_quick" if args.quick else ""
    with open(RESULTS / f"sampling{suffix}.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (RESULTS / f"sampling{suffix}.md").write_text(markdown(rows, meta))
    print(f"wrote {RESULTS / f'sampling{suffix}.jsonl'} and .md")


def markdown(rows, meta):
    lines = [
        "# Sampling: fm.sampling.sample (diffrax, jit) vs torchdiffeq",
        "",
        f"Device {meta['device']}, one core (affinity {meta['affinity']}), load average "
        f"{meta['loadavg']}; jax {meta['jax']}, diffrax {meta['diffrax']}, torch {meta['torch']}, "
        f"torchdiffeq {meta['torchdiffeq']}; batch {meta['batch']}, median of {meta['repeats']}.",
        "MLP [x, t] -> w -> w -> d, SELU, same float32 weights on both sides. Errors: max abs "
        "against a float64 torchdiffeq dopri5 solve at rtol = atol = 1e-10. torchdiffeq's "
        "`rk4` is the 3/8-rule variant (also 4 evaluations a step), ours the classical tableau; "
        "adaptive NFE differ because the controllers differ (theirs picks its first step by a "
        "heuristic, ours starts at 1% of the span). `torch / ours` > 1: ours is faster.",
        "",
    ]
    if meta["torch"] is None:
        lines += ["**torch / torchdiffeq not installed: ours only.**", ""]
    lines += [
        "| dim | solver | steps / tol | NFE ours / torch | ms ours | ms torch | torch / ours | "
        "compile s | err ours | err torch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        setting = str(r["num_steps"]) if r["num_steps"] else f"tol {r['rtol']:g}"
        if "torch_s" in r:
            lines.append(
                f"| {r['dim']} | {r['solver']} | {setting} | {r['ours_nfe']} / {r['torch_nfe']} | "
                f"{1e3 * r['ours_s']:.2f} | {1e3 * r['torch_s']:.2f} | {r['speedup']:.2f}x | "
                f"{r['ours_compile_s']:.2f} | {r['ours_err']:.1e} | {r['torch_err']:.1e} |"
            )
        else:
            lines.append(
                f"| {r['dim']} | {r['solver']} | {setting} | {r['ours_nfe']} / - | "
                f"{1e3 * r['ours_s']:.2f} | - | - | {r['ours_compile_s']:.2f} | - | - |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
