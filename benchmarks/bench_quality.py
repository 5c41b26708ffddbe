"""Sample quality on 8gaussians -> moons: flowjax_fm against torchcfm with the same settings.

Run:

    .venv/bin/python benchmarks/bench_quality.py [--seeds 0 1 2] [--torch-seeds 0] [--steps 20000]

torchcfm's 2D tutorial settings: MLP 3x64 SELU, Adam 1e-3, batch 256, 20,000 steps, sigma 0.1,
8gaussians -> moons. Evaluation: 2,000 samples integrated with dopri5 at rtol = atol = 1e-4 (ours:
diffrax; torchcfm: torchdiffeq, NFE counted by wrapping the network), exact W2 between them and
2,000 fresh target points (``fm.metrics.wasserstein``, the same function for both sides).

Timing: training wall time per run (ours includes compilation). How close our training runs to
the machine's limit: XLA's FLOP count of one train step (batch 256; the exact-OT solve is a host
callback XLA does not count) x the steady-state steps/s (median 500-step chunk, compile left out),
against a 2048^2 float32 matmul measured in the same run. Older JSON lines without these fields
show "-".

Writes ``quality.jsonl`` (appended), ``quality.md`` and ``quality.png`` (W2 against NFE, mean
over seeds) under ``benchmarks/results`` (``quality_quick.*`` with ``--quick``;
``FLOWJAX_FM_BENCH_RESULTS`` redirects). ``--render`` rewrites the md and png from the JSON lines
without training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _torchcfm  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import (  # noqa: E402
    RESULTS,
    compiled_flops,
    environment,
    fmt_limit,
    limit_fields,
    matmul_peak_flops,
    write_jsonl,
    write_plot,
    write_table,
)
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}


def ours(method: str, seed: int, steps: int, n_eval: int, chunk: int = 500) -> dict:
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(seed))
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(METHODS[method]),
    )
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    stamps = [time.perf_counter()]
    state, _ = fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(seed), src, tgt,
        num_steps=steps, batch_size=256, progress=False, chunk_size=chunk,
        on_chunk=lambda s, m: (jax.block_until_ready(s), stamps.append(time.perf_counter())),
    )
    train_s = stamps[-1] - stamps[0]
    per_chunk = np.diff(stamps)
    # steady state: the median full chunk after the first (which compiles); None when too short
    steady = chunk / float(np.median(per_chunk[1:-1])) if len(per_chunk) >= 3 else None
    kb = jax.random.split(jax.random.key(0), 3)
    flops = compiled_flops(lambda s, k: step(s, k, src(kb[0], 256), tgt(kb[1], 256)),
                           fm.training.init_state(model, opt), kb[2])
    field = fm.training.make_vector_field(model, state.params)
    k0, k1 = jax.random.split(jax.random.key(10_000 + seed))
    res = fm.sampling.sample(field, src(k0, n_eval), solver="dopri5", rtol=1e-4, atol=1e-4)
    w2 = float(fm.metrics.wasserstein(np.asarray(res.x), np.asarray(tgt(k1, n_eval))))
    return {"w2": w2, "nfe": int(res.nfe), "train_s": train_s, "steps_per_s": steady,
            "flops_per_step": flops}


def torchcfm_run(method: str, seed: int, steps: int, n_eval: int, chunk: int = 500) -> dict | None:
    del chunk  # ours only
    try:
        import torch
        import torchdiffeq
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )
        from torchcfm.models.models import MLP
        from torchcfm.utils import sample_8gaussians, sample_moons
    except ImportError as exc:
        print(f"torchcfm side skipped ({exc})")
        return None

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    np.random.seed(seed)  # noqa: NPY002 - torchcfm's OT pair sampler draws from numpy's global RNG
    matcher_cls = ConditionalFlowMatcher if method == "I-CFM" else ExactOptimalTransportConditionalFlowMatcher
    matcher = matcher_cls(sigma=0.1)
    model = MLP(dim=2, time_varying=True, w=64)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    train_s = _torchcfm.train(torch, model, opt, matcher, lambda: (sample_8gaussians(256), sample_moons(256)), steps)
    x, nfe = _torchcfm.dopri5(torch, torchdiffeq, model, sample_8gaussians(n_eval), 1e-4)
    w2 = float(fm.metrics.wasserstein(x, sample_moons(n_eval).numpy()))
    return {"w2": w2, "nfe": nfe, "train_s": train_s, "steps_per_s": steps / train_s}


def latest_rows(path, steps: int) -> dict:
    """The newest JSON line per (method, library, seed) at this step count."""
    import json

    latest = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r.get("suite") == "quality" and r.get("steps") == steps:
            latest[(r["method"], r["library"], r["seed"])] = r
    return latest


def _mean(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def render(name: str, steps: int, command: str) -> None:
    """Rewrite ``NAME.md`` and ``NAME.png`` from ``NAME.jsonl`` (newest result per seed)."""
    latest = latest_rows(RESULTS / f"{name}.jsonl", steps)
    if not latest:
        raise SystemExit(f"no quality rows at {steps} steps in {RESULTS / f'{name}.jsonl'}")
    newest = max(latest.values(), key=lambda r: r["time"])
    table, points = [], []
    for method in METHODS:
        for lib in ("flowjax_fm", "torchcfm"):
            rs = [r for (m, lb, _), r in sorted(latest.items()) if m == method and lb == lib]
            if not rs:
                continue
            w2 = np.array([r["w2"] for r in rs])
            sd = f" +- {w2.std(ddof=1):.3f}" if len(w2) > 1 else ""
            rate = _mean(rs, "steps_per_s")
            lim = {"achieved_gflops": _mean(rs, "achieved_gflops"), "of_peak": _mean(rs, "of_peak")}
            table.append([method, lib, len(rs), f"{w2.mean():.3f}{sd}",
                          f"{np.mean([r['nfe'] for r in rs]):.0f}",
                          f"{np.mean([r['train_s'] for r in rs]):.0f}",
                          "-" if rate is None else f"{rate:.0f}", fmt_limit(lim)])
            points.append({"library": lib, "method": method,
                           "nfe": float(np.mean([r["nfe"] for r in rs])),
                           "w2": float(w2.mean())})
    peaks = sorted({round(r["matmul_peak_flops"] / 1e9, 1) for r in latest.values()
                    if r.get("matmul_peak_flops")})
    write_table(
        name, "Sample quality, 8gaussians -> moons (torchcfm tutorial settings)",
        f"Newest run {newest['time']}, {newest['device_kind']}, load {newest['load_avg_1m']:.1f}. W2: "
        "exact, 2,000 generated vs 2,000 fresh target points; dopri5 rtol = atol = 1e-4. Train time: "
        "wall time of the whole run (ours includes compilation). Steps/s: ours steady state (median "
        "chunk of 500 steps (100 with --quick) after the first), torchcfm steps / train time. "
        "GFLOP/s (ours): XLA's FLOP "
        "count of one train step (the exact-OT solve is a host callback it does not count) x "
        "steady steps/s, and its share of a 2048^2 float32 matmul measured in the same run "
        f"({', '.join(map(str, peaks)) or '-'} GFLOP/s); '-' for runs recorded before these fields. "
        f"Plot: `{name}.png` (W2 against NFE, mean over seeds). Command: {command} (the table "
        f"holds the newest result per library, method and seed in {name}.jsonl at this step count).",
        ["method", "library", "seeds", "W2 (mean +- sd)", "NFE", "train time (s)", "steps/s",
         "GFLOP/s (of matmul)"],
        table,
    )
    write_plot(name, points, "nfe", "w2", ["library", "method"], title=f"W2 vs NFE, {steps} steps",
               xlabel="NFE (dopri5, tol 1e-4)", ylabel="W2 to moons", logx=False, logy=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--torch-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 steps, one seed each")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the md and png from the JSON lines at --steps")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.torch_seeds, args.steps, args.eval = [0], [0], 300, 300
    name = "quality_quick" if args.quick else "quality"
    if args.render:
        render(name, args.steps,
               f"`.venv/bin/python benchmarks/bench_quality.py --render --steps {args.steps}`")
        return
    env = environment()
    peak = matmul_peak_flops()
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for method in METHODS:
        sides = (("flowjax_fm", args.seeds, ours), ("torchcfm", args.torch_seeds, torchcfm_run))
        for lib, seeds, fn in sides:
            results = []
            for seed in seeds:
                r = fn(method, seed, args.steps, args.eval, 100 if args.quick else 500)
                if r is None:
                    break
                results.append(r)
                lim = {}
                if r.get("flops_per_step") and r.get("steps_per_s"):
                    lim = limit_fields(r["flops_per_step"], 1.0 / r["steps_per_s"], peak)
                rows.append({"suite": "quality", "task": "8gaussians->moons", "method": method,
                             "library": lib, "seed": seed, "steps": args.steps, "quick": args.quick,
                             "matmul_peak_flops": peak, **r, **lim, **env})
                print(lib, method, seed, r, flush=True)
    write_jsonl(name, rows)
    render(name, args.steps,
           f"`.venv/bin/python benchmarks/bench_quality.py --seeds {' '.join(map(str, args.seeds))} "
           f"--torch-seeds {' '.join(map(str, args.torch_seeds))} --steps {args.steps}`")
    print(f"wrote {RESULTS}/{name}.jsonl, .md and .png", flush=True)


if __name__ == "__main__":
    main()
