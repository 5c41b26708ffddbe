"""Continuous conditions: rotated moons given the angle, and which coupling learns them best.

Run:

    .venv/bin/python benchmarks/bench_conditional.py [--quick] [--seeds 0 1] [--steps 5000]

Task. Data ``x1 = R(theta) m`` with ``m`` a moons point and ``theta ~ U[0, 2 pi)`` drawn
afresh for every example, condition ``c = (cos theta, sin theta)``; the data are a sampler
``(key, n) -> (x1, c)`` (a fresh batch every step, no fixed data set). Source ``N(0, I)``
(``source=None`` in ``fm.training.fit``). The moons are not centred at the origin (mean
about (0.8, 0.05)), so the rotation moves their mean as well as their orientation.

Model and training, the same for every method: ``fm.models.MLP(2, (64, 64, 64),
activation="selu", cond_dim=2)``, Adam 1e-3, batch 256, ``GaussianPath(0.1)``, ``--steps``
steps, uniform times. Only the pairing of each batch differs:

- ``independent``: ``IndependentCoupling()`` (I-CFM; row i of the noise with data row i).
- ``OT, cond. hidden``: exact minibatch OT on ``x`` alone (OT-CFM that ignores the
  condition). The step used is a wrapper around the independent step above: it pairs the batch
  with ``ExactOTCoupling()`` called without conditions, moves each data row's condition with
  its row, and hands the paired batch to the independent step (whose pairing is then the
  identity), so the coupling never sees the condition while the network does.
- ``OT, cond_weight=w``: ``ExactOTCoupling(cond_weight=w)``, the cost
  ``|x0_i - x1_j|^2 + w |c_i - c_j|^2`` with source row i carrying data row i's condition
  (C2OT); ``--weights`` (default 1, 10 and 100; all reported, no selection on the test angles).
- ``Sinkhorn, cond_weight=w``: ``SinkhornCoupling(epsilon=0.5, anderson=5, cond_weight=w)``
  (pairs drawn from the entropic plan; absolute epsilon, against mean squared distances of
  about 11 between noise and data; Anderson acceleration, measured 2.4x faster here than
  without: 16 vs 39 ms a step) at ``--sinkhorn-weight`` (default 10).

Evaluation at three fixed angles (0, 2 pi / 3, 4 pi / 3): ``--eval`` (1,000) points from the
model at that condition (the same source points for every method of a seed), integrated with
dopri5 (rtol = atol = 1e-4), against ``--eval`` fresh rotated-moons points at that angle:
exact W2 (``fm.metrics.wasserstein``) and the solver's NFE. Two reference values per angle:
the floor (W2 between two independent samples of the true conditional) and the ceiling of a
model that ignores the condition (W2 between the all-angle data marginal and the
conditional). Training time: wall time of ``fit`` (compilation included).

Writes ``conditional.jsonl`` (appended), ``conditional.md`` (mean +- sd over seeds) and
``conditional.png`` (W2 per angle and method) under ``benchmarks/results``
(``conditional_quick.*`` with ``--quick``; ``FLOWJAX_FM_BENCH_RESULTS`` redirects).
``--render`` rewrites the md and png from the newest run in the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _common import RESULTS, environment, write_jsonl, write_table  # noqa: E402
from flax import nnx  # noqa: E402

import flowjax_fm as fm  # noqa: E402

ANGLES = (0.0, 2.0 * np.pi / 3.0, 4.0 * np.pi / 3.0)
ANGLE_NAMES = ("0", "2pi/3", "4pi/3")
BATCH, LR, SIGMA, TOL = 256, 1e-3, 0.1, 1e-4
SINKHORN_EPSILON = 0.5


# -- data ----------------------------------------------------------------------------------


def rotate(x, theta):
    """Rotate the rows of ``x`` (n, 2) by the angles ``theta`` (n,) (or one angle)."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], axis=-1)


def angle_cond(theta):
    """The condition of angles ``theta`` (n,): ``(cos theta, sin theta)``, shape (n, 2)."""
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def rotated_moons(key, n):
    """The data sampler ``(key, n) -> (x1, c)``: moons rotated by a uniform angle each."""
    k_x, k_theta = jax.random.split(key)
    theta = jax.random.uniform(k_theta, (n,), maxval=2.0 * jnp.pi)
    return rotate(fm.data.sample_toy("moons", k_x, n), theta), angle_cond(theta)


def moons_at(key, n, theta):
    return rotate(fm.data.sample_toy("moons", key, n), theta)


# -- methods -------------------------------------------------------------------------------


def condition_hidden(step, coupling):
    """``step`` with the batch first paired by ``coupling`` on ``x`` alone (the condition hidden).

    Each data row's condition moves with its row; ``step`` (built with the independent
    coupling) then keeps the pairs as they are.
    """

    def hidden(state, key, x0, x1, cond):
        k_pair, k_step = jax.random.split(key)
        pairing = coupling(k_pair, x0, x1)
        x0, x1 = pairing.apply(x0, x1)
        return step(state, k_step, x0, x1, pairing.apply_target(cond))

    return hidden


def methods(args) -> dict:
    """``{name: (coupling, hide_condition)}`` in table order."""
    out = {"independent": (fm.couplings.IndependentCoupling(), False),
           "OT, cond. hidden": (fm.couplings.ExactOTCoupling(), True)}
    for w in args.weights:
        out[f"OT, cond_weight={w:g}"] = (fm.couplings.ExactOTCoupling(cond_weight=w), False)
    w = args.sinkhorn_weight
    out[f"Sinkhorn eps={SINKHORN_EPSILON:g}, cond_weight={w:g}"] = (
        fm.couplings.SinkhornCoupling(epsilon=SINKHORN_EPSILON, anderson=5, cond_weight=w), False)
    return out


def train(coupling, hide: bool, seed: int, steps: int):
    model = fm.models.MLP(2, (64, 64, 64), activation="selu", cond_dim=2, rngs=nnx.Rngs(seed))
    opt = optax.adam(LR)
    path = fm.paths.GaussianPath(SIGMA)
    if hide:
        inner = fm.training.make_train_step(model, optimizer=opt, path=path,
                                            coupling=fm.couplings.IndependentCoupling())
        step = condition_hidden(inner, coupling)
    else:
        step = fm.training.make_train_step(model, optimizer=opt, path=path, coupling=coupling)
    t = time.perf_counter()
    state, history = fm.training.fit(step, fm.training.init_state(model, opt),
                                     jax.random.key(seed), None, rotated_moons,
                                     num_steps=steps, batch_size=BATCH, progress=False)
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - t
    loss = float(np.mean(history["loss"][-min(500, steps):]))
    # the trained model itself is the field: a pytree, so every method shares one compiled solve
    nnx.update(model, state.params)
    return model, train_s, loss


def evaluate(field, x0, refs) -> dict:
    out = {}
    for name, theta, ref in zip(ANGLE_NAMES, ANGLES, refs, strict=True):
        cond = jnp.broadcast_to(angle_cond(jnp.array([theta]))[0], (x0.shape[0], 2))
        res = fm.sampling.sample(field, x0, solver="dopri5", rtol=TOL, atol=TOL, cond=cond)
        out[f"w2_{name}"] = float(fm.metrics.wasserstein(np.asarray(res.x), ref))
        out[f"nfe_{name}"] = int(res.nfe)
    out["w2_mean"] = float(np.mean([out[f"w2_{n}"] for n in ANGLE_NAMES]))
    out["nfe_mean"] = float(np.mean([out[f"nfe_{n}"] for n in ANGLE_NAMES]))
    return out


def references(n: int) -> dict:
    """Floor and ceiling per angle, from fixed keys (independent of the seed)."""
    out = {}
    for i, (name, theta) in enumerate(zip(ANGLE_NAMES, ANGLES, strict=True)):
        k_a, k_b, k_m = jax.random.split(jax.random.key(1000 + i), 3)
        ref = np.asarray(moons_at(k_a, n, theta))
        out[f"floor_{name}"] = float(fm.metrics.wasserstein(np.asarray(moons_at(k_b, n, theta)), ref))
        out[f"ceiling_{name}"] = float(fm.metrics.wasserstein(np.asarray(rotated_moons(k_m, n)[0]), ref))
    return out


def run(seed: int, args) -> list[dict]:
    k_x0, *k_refs = jax.random.split(jax.random.key(10_000 + seed), 1 + len(ANGLES))
    x0 = jax.random.normal(k_x0, (args.eval, 2))
    refs = [np.asarray(moons_at(k, args.eval, th)) for k, th in zip(k_refs, ANGLES, strict=True)]
    rows = []
    for name, (coupling, hide) in methods(args).items():
        field, train_s, loss = train(coupling, hide, seed, args.steps)
        t = time.perf_counter()
        ev = evaluate(field, x0, refs)
        rows.append({"method": name, "seed": seed, "train_steps": args.steps, "train_s": train_s,
                     "final_loss": loss, "eval_s": time.perf_counter() - t, **ev})
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()},
              flush=True)
    return rows


# -- output --------------------------------------------------------------------------------


def _ms(values, fmt="{:.3f}") -> str:
    values = np.asarray(values, float)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(values.mean())} +- {fmt.format(values.std(ddof=1))}"


def render(name: str, rows: list[dict]) -> None:
    """Rewrite ``NAME.md`` and ``NAME.png`` from one run's rows."""
    r0 = rows[0]
    seeds = sorted({r["seed"] for r in rows})
    order = list(dict.fromkeys(r["method"] for r in rows))
    table = []
    for m in order:
        sub = [r for r in rows if r["method"] == m]
        table.append([m] + [_ms([r[f"w2_{a}"] for r in sub]) for a in ANGLE_NAMES]
                     + [_ms([r["w2_mean"] for r in sub]), _ms([r["nfe_mean"] for r in sub], "{:.0f}"),
                        _ms([r["final_loss"] for r in sub]), _ms([r["train_s"] for r in sub], "{:.0f}")])
    table.append(["floor: two true samples"] + [f"{r0[f'floor_{a}']:.3f}" for a in ANGLE_NAMES]
                 + [f"{np.mean([r0[f'floor_{a}'] for a in ANGLE_NAMES]):.3f}", "", "", ""])
    table.append(["ceiling: all-angle marginal"] + [f"{r0[f'ceiling_{a}']:.3f}" for a in ANGLE_NAMES]
                 + [f"{np.mean([r0[f'ceiling_{a}'] for a in ANGLE_NAMES]):.3f}", "", "", ""])
    weights = sorted({float(m.split("cond_weight=")[1]) for m in order
                      if m.startswith("OT, cond_weight=")})
    sk = [m for m in order if m.startswith("Sinkhorn")]
    cmd = "`.venv/bin/python benchmarks/bench_conditional.py"
    if r0.get("quick"):
        cmd += " --quick`"
    else:
        cmd += (f" --seeds {' '.join(map(str, seeds))} --steps {r0['train_steps']}"
                f" --eval {r0['eval_points']} --weights {' '.join(f'{w:g}' for w in weights)}"
                + (f" --sinkhorn-weight {sk[0].split('cond_weight=')[1]}" if sk else "") + "`")
    n = r0["eval_points"]
    write_table(
        name, "Continuous conditions: rotated moons given the angle",
        f"{r0['time']}, {r0['device_kind']}, load {r0['load_avg_1m']:.1f}. Data: moons rotated by "
        "theta ~ U[0, 2pi) (a fresh sampler batch each step), condition c = (cos theta, sin theta); "
        "source N(0, I). MLP 3x64 SELU with cond_dim=2, Adam 1e-3, batch 256, GaussianPath(0.1), "
        f"{r0['train_steps']} steps for every method; only the pairing differs. 'OT, cond. hidden': "
        "exact OT on x alone (a step wrapper pairs the batch without the conditions, which follow "
        "their data rows), 'cond_weight=w': cost |x0_i - x1_j|^2 + w |c_i - c_j|^2 (C2OT); Sinkhorn: "
        "absolute epsilon, Anderson acceleration 5, pairs drawn from the plan. "
        f"Conditional W2 (exact) between {n} model samples at the angle (dopri5, rtol = atol = "
        f"1e-4; the same source points for every method) and {n} fresh rotated moons at that "
        "angle; NFE: dopri5 evaluations, mean over the three angles. Floor: two true samples; "
        "ceiling: the all-angle data marginal against the conditional (a model ignoring the "
        "condition). Loss: mean CFM loss of the last 500 steps (not comparable across couplings). "
        f"Train s: wall time of fit (compilation included). Mean +- sd over seeds {seeds}. "
        f"Plot: `{name}.png`. Command: {cmd}.",
        ["method"] + [f"W2 at {a}" for a in ANGLE_NAMES]
        + ["W2 mean", "NFE", "final loss", "train s"],
        table,
    )
    plot(name, rows, order)


def plot(name: str, rows: list[dict], order: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r0 = rows[0]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    xs = np.arange(len(ANGLE_NAMES))
    width = 0.8 / len(order)
    for i, m in enumerate(order):
        vals = np.array([[r[f"w2_{a}"] for a in ANGLE_NAMES] for r in rows if r["method"] == m])
        err = vals.std(axis=0, ddof=1) if len(vals) > 1 else None
        ax.bar(xs + (i - (len(order) - 1) / 2) * width, vals.mean(axis=0), width, yerr=err,
               capsize=2, label=m)
    ax.plot(xs, [r0[f"floor_{a}"] for a in ANGLE_NAMES], "k_", ms=30, mew=2, label="floor")
    ax.set_xticks(xs, [f"theta = {a}" for a in ANGLE_NAMES])
    ax.set_ylabel("conditional W2 (dopri5 1e-4)")
    ax.set_title(f"rotated moons | angle, {r0['train_steps']} steps, seeds "
                 f"{sorted({r['seed'] for r in rows})}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    plt.close(fig)


def newest_run(name: str) -> list[dict]:
    """The rows of the newest run recorded in ``NAME.jsonl``."""
    rows = [json.loads(line) for line in (RESULTS / f"{name}.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("suite") == "conditional"]
    if not rows:
        raise SystemExit(f"no conditional rows in {RESULTS / f'{name}.jsonl'}")
    newest = max(r["run_started"] for r in rows)
    return [r for r in rows if r["run_started"] == newest]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the md and png from the newest run in the JSON lines")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=5_000)
    ap.add_argument("--eval", type=int, default=1_000)
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                    help="cond_weight values of the exact OT coupling")
    ap.add_argument("--sinkhorn-weight", type=float, default=10.0)
    args = ap.parse_args()
    name = "conditional_quick" if args.quick else "conditional"
    if args.render:
        render(name, newest_run(name))
        return
    if args.quick:
        args.seeds, args.steps, args.eval, args.weights = [0], 200, 200, [10.0]
    env = environment()
    started = env["time"]
    refs = references(args.eval)
    print(refs, flush=True)
    rows = []
    for seed in args.seeds:
        for r in run(seed, args):
            rows.append({"suite": "conditional", "task": "N(0,I)->rotated moons | angle",
                         "quick": args.quick, "eval_points": args.eval, "batch_size": BATCH,
                         "run_started": started, **refs, **r, **env})
    write_jsonl(name, rows)
    render(name, rows)
    print(f"wrote {RESULTS}/{name}.jsonl, .md and .png", flush=True)


if __name__ == "__main__":
    main()
