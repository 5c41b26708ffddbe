r"""Riemannian flow matching against the Euclidean baseline that ignores the manifold.

Run (one core, one thread):

    .venv/bin/python -m benchmarks.bench_riemannian [--quick] [--seeds 0 1 2] [--steps 10000]
        [--manifolds sphere torus] [--methods ...] [--solvers dopri5 rk4x20]

Tasks (``flowjax_fm.data``'s manifold toys): **sphere**, uniform on :math:`S^2` to an
equal-weight mixture of four von Mises-Fisher distributions (``sphere_vmf_mixture``,
:math:`\kappa = 8, 16, 32, 64`), points as unit vectors of :math:`\mathbb R^3`; **torus**,
uniform on :math:`\mathbb T^2` to the Ramachandran-like wrapped-normal mixture
(``torus_wrapped_mixture``: five modes, one straddling the :math:`\psi = 0` seam of the
:math:`[0, 2\pi)` chart the data come in, two reaching across :math:`\psi = \pm\pi`).

Methods, all with an MLP 3 x 128 SiLU, Adam 1e-3, batch 256, ``--steps`` steps of
``fm.training.fit``, uniform training times:

* ``RFM OT``: ``GeodesicPath(M)`` and ``ExactOTCoupling(manifold=M)`` (exact OT with the
  squared geodesic cost; wrapped on the torus); the network is a vector field *on* M: on the
  sphere its output is projected onto the tangent space (``M.proju``), on the torus it is fed
  the periodic features :math:`(\cos x, \sin x)` of the angles (so the field is continuous
  across the seams of the chart). Sampled with ``fm.sampling.sample(..., manifold=M)``.
* ``RFM indep``: the same with independent pairs.
* ``RFM OT, plain MLP``: geodesic path and pairs, but the baseline's network on raw
  coordinates (the sampler alone makes its field tangent): what the manifold-aware network adds.
* ``Euclid OT + projx``: the honest naive baseline: ``CondOTPath`` in the ambient coordinates
  (:math:`\mathbb R^3` for the sphere; for the torus the angles as points of
  :math:`\mathbb R^2`, unwrapped), Euclidean exact OT pairs, the same source points, an
  ordinary ODE solve, then ``M.projx`` (normalise / wrap modulo :math:`2\pi`).
* ``Euclid indep + projx``: the same with independent pairs (not in the default run:
  ``--methods``).

Scores on 2,000 samples (source key ``1000 + seed``) against 2,000 fresh target points (key
``2000 + seed``), sampled with dopri5 (rtol = atol = 1e-5; ``--solvers`` adds rk4 with 20
steps):

* the geodesic :math:`W_2`: exact OT (``fm.couplings.solve_assignment``) on
  ``M.squared_distances``, :math:`\sqrt{\text{mean cost}}`;
* :math:`\mathrm{MMD}^2` (unbiased, x 1e3) with the geodesic Gaussian kernel
  :math:`k(x, y) = \frac13 \sum_\sigma \exp(-d(x, y)^2 / 2\sigma^2)`,
  :math:`\sigma \in \{0.1, 0.3, 1\}` radians, :math:`d` = ``M.dist``. Caveat: a Gaussian of the
  geodesic distance is not positive definite on curved or periodic spaces for every
  bandwidth (Feragen et al. 2015), so this is a discrepancy, not a metric, and can be
  slightly negative near zero.

The noise floor: the same scores between two independent target samples of 2,000 (keys
``2000 + seed`` and ``3000 + seed``). ``off-M`` is how far the Euclidean baseline's samples are
from M before the projection (sphere: mean :math:`|\lVert x\rVert - 1|`; torus: share of
points outside :math:`[0, 2\pi)^2`, which the projection wraps back).

Writes ``RESULTS/riemannian.{jsonl,md,png}`` (``riemannian_quick.*`` with ``--quick``); the
table holds the newest row of every (manifold, method, seed) at ``--steps``.

References:
  Chen & Lipman 2024, Flow Matching on General Geometries. Feragen, Lauze & Hauberg 2015,
  Geodesic exponential kernels: when curvature and linearity conflict.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from benchmarks import _harness as h

MANIFOLDS = ("sphere", "torus")
METHODS = ("RFM OT", "RFM indep", "RFM OT, plain MLP", "Euclid OT + projx", "Euclid indep + projx")
DEFAULT_METHODS = METHODS[:4]
FLOOR = "two target samples (floor)"
SOLVERS = {"dopri5": {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-5},
           "rk4x20": {"solver": "rk4", "num_steps": 20}}
BANDWIDTHS = (0.1, 0.3, 1.0)  # radians
HIDDEN = (128, 128, 128)


def task(name):
    """``(manifold, source, target, dim)`` of a task."""
    import flowjax_fm as fm

    toys = fm.data
    if name == "sphere":
        return fm.manifolds.Sphere(), toys.sphere_uniform, toys.sphere_vmf_mixture, 3
    return fm.manifolds.FlatTorus(), toys.torus_uniform, toys.torus_wrapped_mixture, 2


# -- the scores ------------------------------------------------------------------------------


def geodesic_mmd2(manifold, x, y, bandwidths=BANDWIDTHS) -> float:
    r"""Unbiased :math:`\mathrm{MMD}^2` between two point sets with the kernel
    :math:`\frac1{|S|}\sum_{\sigma \in S} \exp(-d(x, y)^2 / 2\sigma^2)`, :math:`d` = ``manifold.dist``.

    .. math::
       \widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
       + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i, j} k(x_i, y_j)
    """
    return float(_mmd2_fn(manifold, tuple(bandwidths))(x, y))


@functools.cache
def _mmd2_fn(manifold, bandwidths):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def mmd2(x, y):
        def gram(a, b):
            d = jax.vmap(lambda p: jax.vmap(lambda q: manifold.dist(p, q))(b))(a)
            return sum(jnp.exp(-(d**2) / (2.0 * s * s)) for s in bandwidths) / len(bandwidths)

        def within(a):
            k, n = gram(a, a), a.shape[0]
            return (k.sum() - jnp.trace(k)) / (n * (n - 1))

        return within(x) + within(y) - 2.0 * gram(x, y).mean()

    return mmd2


def geodesic_w2(manifold, x, y) -> float:
    """Exact geodesic W2 between equal-size sets: the assignment on ``manifold.squared_distances``."""
    cost, perm = _assign_fn(manifold)(x, y)
    perm, c = np.asarray(perm), np.asarray(cost, np.float64)
    return float(np.sqrt(c[np.arange(len(perm)), perm].mean()))


@functools.cache
def _assign_fn(manifold):
    import jax

    import flowjax_fm as fm

    @jax.jit
    def assign(x, y):
        cost = manifold.squared_distances(x, y)
        return cost, fm.couplings.solve_assignment(cost)

    return assign


# -- the models ------------------------------------------------------------------------------


def manifold_net(manifold, dim, seed):
    """An MLP made a vector field on ``manifold``: periodic inputs (torus), tangent output (sphere)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import flowjax_fm as fm

    periodic = isinstance(manifold, fm.manifolds.FlatTorus)

    class OnManifold(nnx.Module):
        def __init__(self, rngs):
            self.net = fm.models.MLP(2 * dim if periodic else dim, HIDDEN, activation="silu", rngs=rngs)

        def __call__(self, x, t, cond=None):
            h = jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=-1) if periodic else x
            v = self.net(h, t)[:, :dim]  # (periodic: the other outputs are unused)
            return jax.vmap(manifold.proju)(x, v)

    return OnManifold(nnx.Rngs(seed))


def build(ctx, manifold_name, method, seed):
    """``(step, model)`` for a seed; the step of a (manifold, method) is built once and reused,
    so that ``fit`` compiles once per method (a model of another seed has the same structure)."""
    import optax
    from flax import nnx

    import flowjax_fm as fm

    manifold, _, _, dim = task(manifold_name)
    if method in ("RFM OT", "RFM indep"):
        model = manifold_net(manifold, dim, seed)
    else:
        model = fm.models.MLP(dim, HIDDEN, activation="silu", rngs=nnx.Rngs(seed))
    key = (manifold_name, method)
    if key not in ctx.data:
        ot = "OT" in method
        if method.startswith("RFM"):
            path = fm.paths.GeodesicPath(manifold)
            coupling = fm.couplings.ExactOTCoupling(manifold=manifold) if ot else fm.couplings.IndependentCoupling()
        else:
            path = fm.paths.CondOTPath()
            coupling = fm.couplings.ExactOTCoupling() if ot else fm.couplings.IndependentCoupling()
        ctx.data[key] = fm.training.make_train_step(model, optimizer=optax.adam(1e-3), path=path,
                                                    coupling=coupling)
    return ctx.data[key], model


# -- the cases -------------------------------------------------------------------------------


def cases(ctx):
    a = ctx.args
    for m in a.manifolds:
        for seed in a.seeds:
            yield {"manifold": m, "method": FLOOR, "seed": seed}
        for method in a.methods:
            for seed in a.seeds:
                yield {"manifold": m, "method": method, "seed": seed}


def run_floor(ctx, case) -> dict:
    import jax

    manifold, _, target, _ = task(case["manifold"])
    n, s = ctx.args.eval, case["seed"]
    y = target(jax.random.key(2000 + s), n)
    y2 = target(jax.random.key(3000 + s), n)
    scores = {"w2": geodesic_w2(manifold, y2, y), "mmd2": geodesic_mmd2(manifold, y2, y)}
    return {f"{k}_{solver}": v for solver in ctx.args.solvers for k, v in scores.items()}


def run_model(ctx, case) -> dict:
    import jax
    import jax.numpy as jnp

    import flowjax_fm as fm

    a, s = ctx.args, case["seed"]
    manifold, source, target, _ = task(case["manifold"])
    step, model = build(ctx, case["manifold"], case["method"], s)
    opt_state = fm.training.init_state(model, step.optimizer)
    state, history, timing = h.fit_timed(step, opt_state, jax.random.key(s), source, target,
                                         steps=a.steps, batch=256, chunk=a.chunk)
    field = fm.training.make_vector_field(model, state.params)
    x0 = source(jax.random.key(1000 + s), a.eval)
    y = target(jax.random.key(2000 + s), a.eval)
    riemannian = case["method"].startswith("RFM")
    row = {"steps": a.steps, "eval": a.eval, "train_s": timing.train_s, "compile_s": timing.compile_s,
           "steps_per_s": timing.steps_per_s,
           "final_loss": float(np.mean(np.asarray(history["loss"])[-100:]))}
    for name in a.solvers:
        opts = SOLVERS[name]
        start = time.perf_counter()
        if riemannian:
            res = fm.sampling.sample(field, x0, manifold=manifold, **opts)
            x = res.x
        else:
            res = fm.sampling.sample(field, x0, **opts)
            raw = res.x
            x = jax.vmap(manifold.projx)(raw)
            if isinstance(manifold, fm.manifolds.Sphere):
                off = float(jnp.mean(jnp.abs(jnp.linalg.norm(raw, axis=1) - 1.0)))
            else:
                off = float(jnp.mean(jnp.any((raw < 0) | (raw >= 2 * np.pi), axis=1)))
            row[f"off_manifold_{name}"] = off
        x = jax.block_until_ready(x)
        row[f"sample_s_{name}"] = time.perf_counter() - start
        on = jax.vmap(lambda p: manifold.belongs(p, 1e-5))(x)
        row[f"on_manifold_{name}"] = bool(jnp.all(on))
        row[f"nfe_{name}"] = int(res.nfe)
        row[f"w2_{name}"] = geodesic_w2(manifold, x, y)
        row[f"mmd2_{name}"] = geodesic_mmd2(manifold, x, y)
    return row


def run_case(ctx, case) -> dict:
    row = run_floor(ctx, case) if case["method"] == FLOOR else run_model(ctx, case)
    return {"suite": "riemannian", "command": ctx.command, **case, **row}


def flags(ap) -> None:
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=10_000, help="training steps per model")
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--eval", type=int, default=2000, help="generated and target points scored")
    ap.add_argument("--manifolds", nargs="*", default=list(MANIFOLDS), choices=MANIFOLDS)
    ap.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), choices=METHODS)
    ap.add_argument("--solvers", nargs="*", default=["dopri5"], choices=list(SOLVERS))


# -- tables ----------------------------------------------------------------------------------


def history(ctx, rows):
    """The newest row of every (manifold, method, seed) at ``--steps`` (floors at ``--eval``)."""
    a = ctx.args
    keep = (r for r in rows if r.get("suite") == "riemannian" and r.get("quick") == a.quick
            and (r["method"] == FLOOR or (r.get("steps") == a.steps and r.get("eval") == a.eval)))
    return h.latest(keep, lambda r: (r["manifold"], r["method"], r["seed"]))


def table_rows(ctx, rows):
    out = []
    for m in MANIFOLDS:
        for method in (*METHODS, FLOOR):
            rs = [r for r in rows if (r["manifold"], r["method"]) == (m, method)]
            if rs:
                out.append({"manifold": m, "method": method, "rows": rs})
    return out


def _ms(t, key, scale=1.0, spec=".3f"):
    return h.mean_sd((r[key] * scale for r in t["rows"] if r.get(key) is not None), spec)


def _off(t):
    v = h.mean_of(t["rows"], "off_manifold_dopri5")
    if v is None:
        return "-"
    return f"{v:.3f}" if t["manifold"] == "sphere" else f"{100 * v:.1f}%"


def _on_m(t):
    if t["method"] == FLOOR:
        return "-"
    flags = [v for r in t["rows"] for k, v in r.items() if k.startswith("on_manifold_")]
    return "yes" if flags and all(flags) else "NO"


def _solvers(rows):
    return [s for s in SOLVERS if any(f"w2_{s}" in r for r in rows)]


COLUMNS = [
    ("manifold", lambda t: t["manifold"]), ("method", lambda t: t["method"]),
    ("seeds", lambda t: len(t["rows"])),
    ("W2 (dopri5)", lambda t: _ms(t, "w2_dopri5")),
    ("MMD^2 x1e3 (dopri5)", lambda t: _ms(t, "mmd2_dopri5", 1e3, ".2f")),
    ("NFE", lambda t: h.fmt(h.mean_of(t["rows"], "nfe_dopri5"), ".0f")),
    ("off-M before projx", _off),
    ("on M (1e-5)", _on_m),
    ("train s", lambda t: h.fmt(h.mean_of(t["rows"], "train_s"), ".0f")),
    ("steps/s", lambda t: h.fmt(h.mean_of(t["rows"], "steps_per_s"), ".0f")),
]


def preamble(ctx, rows) -> str:
    models = [r for r in rows if r["method"] != FLOOR]
    steps = models[0]["steps"] if models else "-"
    return (f"{h.env_line(ctx.env, ctx.threads)}. Every model: MLP 3x128 SiLU, Adam 1e-3, batch 256, "
            f"{steps} steps, uniform source on M (the same points for the Euclidean baseline). Scores on "
            f"{ctx.args.eval:,} samples vs {ctx.args.eval:,} fresh target points: geodesic W2 (exact OT on the "
            "squared geodesic cost) and unbiased MMD^2 with a geodesic Gaussian kernel (sigma 0.1, 0.3, 1 rad, "
            "averaged); mean +- sd over seeds; dopri5 at rtol = atol = 1e-5. "
            "RFM samples with `fm.sampling.sample(..., manifold=M)`; the Euclidean baseline solves in the "
            "ambient chart and projects once at the end. `off-M`: sphere, mean | |x| - 1 | before the "
            "projection; torus, share of points outside [0, 2 pi)^2 before wrapping. Train s includes "
            f"compilation (once per method: later seeds reuse it). Rows: the newest of each case in "
            f"{ctx.name}.jsonl, from {' and '.join(sorted({r.get('command', '(not recorded)') for r in rows}))}.")


def verdict(ctx, rows) -> str:
    """Per manifold, solver and score: each RFM variant against Euclid OT + projx (the baseline
    trained with the same pairs), means over seeds and the seeds where the RFM variant won."""
    baseline = "Euclid OT + projx"
    cells = []
    for m in MANIFOLDS:
        get = lambda method, key, m=m: [r[key] for r in rows if (r["manifold"], r["method"]) == (m, method)
                                        and r.get(key) is not None]
        for solver in _solvers(rows):
            for score in ("w2", "mmd2"):
                key = f"{score}_{solver}"
                euc, floor = get(baseline, key), get(FLOOR, key)
                for method in (x for x in METHODS if x.startswith("RFM")):
                    rfm = get(method, key)
                    if not rfm or not euc:
                        continue
                    wins = sum(a < b for a, b in zip(rfm, euc, strict=False))
                    cells.append([m, solver, score.upper(), method, f"{np.mean(rfm):.4g}", f"{np.mean(euc):.4g}",
                                  f"{np.mean(floor):.4g}" if floor else "-",
                                  "RFM" if np.mean(rfm) < np.mean(euc) else "baseline",
                                  f"{wins}/{min(len(rfm), len(euc))}"])
    if not cells:
        return ""
    out = ("\n## Each RFM variant against the Euclidean baseline (Euclid OT + projx)\n\nLower is better; "
           "`seeds won`: seeds (same seed, same source points) where the RFM variant scored lower.\n\n"
           + h.markdown_table(["manifold", "solver", "score", "RFM variant", "RFM", "baseline", "floor",
                               "better mean", "seeds won"], cells) + "\n")
    if "rk4x20" in _solvers(rows):
        out += "\n## The same models sampled with rk4, 20 steps\n\n" + h.markdown_table(
            ["manifold", "method", "W2 (rk4x20)", "MMD^2 x1e3 (rk4x20)"],
            [[t["manifold"], t["method"], _ms(t, "w2_rk4x20"), _ms(t, "mmd2_rk4x20", 1e3, ".2f")]
             for t in table_rows(ctx, rows)]) + "\n"
    return out


def plot(ctx, rows) -> None:
    panels = {}
    floors = {}
    for m in MANIFOLDS:
        for score, label in (("w2", "W2"), ("mmd2", "MMD^2")):
            groups = {}
            for solver in _solvers(rows):
                groups[solver] = {method: [r[f"{score}_{solver}"] for r in rows
                                           if (r["manifold"], r["method"]) == (m, method)]
                                  for method in METHODS}
                groups[solver] = {k: v for k, v in groups[solver].items() if v}
            if any(groups.values()):
                panel = f"{m}: {label}"
                panels[panel] = groups
                floors[panel] = [h.mean_of([r for r in rows if (r["manifold"], r["method"]) == (m, FLOOR)],
                                           f"{score}_{solver}") or np.nan for solver in _solvers(rows)]
    h.write_bars(ctx.file("png"), panels, ylabel="lower is better", floor=floors,
                 title="Riemannian FM vs the Euclidean baseline projected after sampling")


SUITE = h.Suite(
    name="riemannian", title="Riemannian flow matching vs the Euclidean-projected baseline (S^2, T^2)",
    doc=__doc__, cases=cases, run_case=run_case, columns=COLUMNS, preamble=preamble, flags=flags,
    quick={"steps": 200, "eval": 300, "chunk": 100, "seeds": [0]},
    quick_file=True, pin=True, peak=False, history=history, table_rows=table_rows,
    extra_md=verdict, plot=plot,
)

if __name__ == "__main__":
    h.main(SUITE)
