"""Sample quality on 8gaussians -> moons: flowjax_fm against torchcfm with the same settings.

Run:

    .venv/bin/python benchmarks/bench_quality.py [--seeds 0 1 2] [--torch-seeds 0] [--steps 20000]

torchcfm's 2D tutorial settings: MLP 3x64 SELU, Adam 1e-3, batch 256, 20,000 steps, sigma 0.1,
8gaussians -> moons. Evaluation: 2,000 samples integrated with dopri5 at rtol = atol = 1e-4 (ours:
diffrax; torchcfm: torchdiffeq, NFE counted by wrapping the network), exact W2 between them and
2,000 fresh target points (``fm.metrics.wasserstein``, the same function for both sides).
Writes ``benchmarks/results/quality.jsonl`` (appended) and ``benchmarks/results/quality.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import environment, write_jsonl, write_table  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

METHODS = {"I-CFM": "independent", "OT-CFM": "exact-ot"}


def ours(method: str, seed: int, steps: int, n_eval: int) -> dict:
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", rngs=nnx.Rngs(seed))
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(
        model, optimizer=opt, path=fm.paths.GaussianPath(0.1),
        coupling=fm.couplings.get_coupling(METHODS[method]),
    )
    src, tgt = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")
    t = time.perf_counter()
    state, _ = fm.training.fit(
        step, fm.training.init_state(model, opt), jax.random.key(seed), src, tgt,
        num_steps=steps, batch_size=256, progress=False,
    )
    train_s = time.perf_counter() - t
    field = fm.training.make_vector_field(model, state.params)
    k0, k1 = jax.random.split(jax.random.key(10_000 + seed))
    res = fm.sampling.sample(field, src(k0, n_eval), solver="dopri5", rtol=1e-4, atol=1e-4)
    w2 = float(fm.metrics.wasserstein(np.asarray(res.x), np.asarray(tgt(k1, n_eval))))
    return {"w2": w2, "nfe": int(res.nfe), "train_s": train_s}


def torchcfm_run(method: str, seed: int, steps: int, n_eval: int) -> dict | None:
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
    import warnings

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    np.random.seed(seed)  # noqa: NPY002 - torchcfm's OT pair sampler draws from numpy's global RNG
    matcher_cls = ConditionalFlowMatcher if method == "I-CFM" else ExactOptimalTransportConditionalFlowMatcher
    matcher = matcher_cls(sigma=0.1)
    model = MLP(dim=2, time_varying=True, w=64)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.zero_grad()
            x0, x1 = sample_8gaussians(256), sample_moons(256)
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0
    nfe = [0]

    def field(t, x):
        nfe[0] += 1
        return model(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

    with torch.no_grad():
        x = torchdiffeq.odeint(field, sample_8gaussians(n_eval), torch.tensor([0.0, 1.0]),
                               method="dopri5", rtol=1e-4, atol=1e-4)[-1]
    w2 = float(fm.metrics.wasserstein(x.numpy(), sample_moons(n_eval).numpy()))
    return {"w2": w2, "nfe": nfe[0], "train_s": train_s}


def render_rows(path, steps: int) -> list[list]:
    """Table rows from the JSON lines: the newest result per (method, library, seed)."""
    import json

    latest = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r.get("suite") == "quality" and r.get("steps") == steps:
            latest[(r["method"], r["library"], r["seed"])] = r
    table = []
    for method in METHODS:
        for lib in ("flowjax_fm", "torchcfm"):
            rs = [r for (m, lb, _), r in sorted(latest.items()) if m == method and lb == lib]
            if not rs:
                continue
            w2 = np.array([r["w2"] for r in rs])
            sd = f" +- {w2.std(ddof=1):.3f}" if len(w2) > 1 else ""
            table.append([method, lib, len(rs), f"{w2.mean():.3f}{sd}",
                          f"{np.mean([r['nfe'] for r in rs]):.0f}",
                          f"{np.mean([r['train_s'] for r in rs]):.0f}"])
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--torch-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 steps, one seed each")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.torch_seeds, args.steps, args.eval = [0], [0], 300, 300
    env = environment()
    rows = []
    for method in METHODS:
        sides = (("flowjax_fm", args.seeds, ours), ("torchcfm", args.torch_seeds, torchcfm_run))
        for lib, seeds, fn in sides:
            results = []
            for seed in seeds:
                r = fn(method, seed, args.steps, args.eval)
                if r is None:
                    break
                results.append(r)
                rows.append({"suite": "quality", "task": "8gaussians->moons", "method": method,
                             "library": lib, "seed": seed, "steps": args.steps, **r, **env})
                print(lib, method, seed, r, flush=True)
    path = write_jsonl("quality", rows)
    table = render_rows(path, args.steps)
    write_table(
        "quality", "Sample quality, 8gaussians -> moons (torchcfm tutorial settings)",
        f"{env['time']}, {env['device_kind']}, load {env['load_avg_1m']:.1f}. W2: exact, 2,000 generated vs "
        "2,000 fresh target points; dopri5 rtol = atol = 1e-4. Command: "
        f"`.venv/bin/python benchmarks/bench_quality.py --seeds {' '.join(map(str, args.seeds))} "
        f"--torch-seeds {' '.join(map(str, args.torch_seeds))} --steps {args.steps}` (the table holds the "
        "newest result per library, method and seed in quality.jsonl at this step count).",
        ["method", "library", "seeds", "W2 (mean +- sd)", "NFE", "train time (s)"],
        table,
    )


if __name__ == "__main__":
    main()
