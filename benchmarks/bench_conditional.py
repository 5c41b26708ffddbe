"""Continuous conditions: rotated moons given the angle, and which coupling learns them best.

Run:

    .venv/bin/python -m benchmarks.bench_conditional [--quick] [--seeds 0 1] [--steps 5000]

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
``conditional.png`` (W2 per angle and method) under ``RESULTS``
(``conditional_quick.*`` with ``--quick``; ``FLOWJAX_FM_BENCH_RESULTS`` redirects).
``--render`` rewrites the md and png from the newest run in the JSON lines.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import flowjax_fm as fm
from benchmarks import _harness as h

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
    """``(model with trained weights, train seconds, mean loss of the last 500 steps)``."""
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
    state, history = fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(seed), None,
                                     rotated_moons, num_steps=steps, batch_size=BATCH, progress=False)
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


@functools.cache
def eval_points(seed: int, n: int):
    """The seed's source points (the same for every method) and the true samples at each angle."""
    k_x0, *k_refs = jax.random.split(jax.random.key(10_000 + seed), 1 + len(ANGLES))
    return (jax.random.normal(k_x0, (n, 2)),
            [np.asarray(moons_at(k, n, th)) for k, th in zip(k_refs, ANGLES, strict=True)])


# -- the suite -----------------------------------------------------------------------------


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=5_000)
    ap.add_argument("--eval", type=int, default=1_000)
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                    help="cond_weight values of the exact OT coupling")
    ap.add_argument("--sinkhorn-weight", type=float, default=10.0)


def setup(ctx) -> None:
    ctx.data["refs"] = references(ctx.args.eval)
    print(ctx.data["refs"], flush=True)


def cases(ctx):
    return [{"seed": seed, "method": name} for seed in ctx.args.seeds for name in methods(ctx.args)]


def run_case(ctx, case) -> dict:
    a = ctx.args
    coupling, hide = methods(a)[case["method"]]
    field, train_s, loss = train(coupling, hide, case["seed"], a.steps)
    t = time.perf_counter()
    ev = evaluate(field, *eval_points(case["seed"], a.eval))
    return {"suite": "conditional", "task": "N(0,I)->rotated moons | angle", "eval_points": a.eval,
            "batch_size": BATCH, "run_started": ctx.env["time"], **ctx.data["refs"], **case,
            "train_steps": a.steps, "train_s": train_s, "final_loss": loss, "eval_s": time.perf_counter() - t, **ev}


def history(ctx, rows):
    """The rows of the newest run."""
    return h.newest_run([r for r in rows if r.get("suite") == "conditional"], "run_started")


def _order(rows):
    return list(dict.fromkeys(r["method"] for r in rows))


HEADERS = ["method", *(f"W2 at {a}" for a in ANGLE_NAMES), "W2 mean", "NFE", "final loss", "train s"]


def table_rows(ctx, rows):
    out = []
    for m in _order(rows):
        sub = [r for r in rows if r["method"] == m]
        out.append(dict(zip(HEADERS, [m, *(h.mean_sd(r[f"w2_{a}"] for r in sub) for a in ANGLE_NAMES),
                                      h.mean_sd(r["w2_mean"] for r in sub), h.mean_sd((r["nfe_mean"] for r in sub), ".0f"),
                                      h.mean_sd(r["final_loss"] for r in sub), h.mean_sd((r["train_s"] for r in sub), ".0f")],
                             strict=True)))
    r0 = rows[0]
    for label, kind in (("floor: two true samples", "floor"), ("ceiling: all-angle marginal", "ceiling")):
        vals = [r0[f"{kind}_{a}"] for a in ANGLE_NAMES]
        out.append(dict(zip(HEADERS, [label, *(f"{v:.3f}" for v in vals), f"{np.mean(vals):.3f}", "", "", ""],
                            strict=True)))
    return out


COLUMNS = [(head, lambda t, head=head: t[head]) for head in HEADERS]


def preamble(ctx, rows) -> str:
    r0, seeds, n = rows[0], sorted({r["seed"] for r in rows}), rows[0]["eval_points"]
    return (
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
        f"Plot: `{ctx.name}.png`. Command: {ctx.command}."
    )


def plot(ctx, rows) -> None:
    r0 = rows[0]
    title = f"rotated moons | angle, {r0['train_steps']} steps, seeds {sorted({r['seed'] for r in rows})}"
    groups = {f"theta = {a}": {m: [r[f"w2_{a}"] for r in rows if r["method"] == m] for m in _order(rows)}
              for a in ANGLE_NAMES}
    h.write_bars(ctx.file("png"), {title: groups}, ylabel="conditional W2 (dopri5 1e-4)", title="",
                 floor={title: [r0[f"floor_{a}"] for a in ANGLE_NAMES]})


SUITE = h.Suite(
    name="conditional", title="Continuous conditions: rotated moons given the angle", doc=__doc__,
    cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"seeds": [0], "steps": 200, "eval": 200, "weights": [10.0]}, peak=False, quick_file=True,
    setup=setup, history=history, table_rows=table_rows, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
