# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Riemannian flow matching on the sphere and the torus
#
# Data that live on a curved or periodic space: directions (unit vectors of
# $\mathbb R^3$, the sphere $S^2$) and angles (a protein backbone's dihedral angles
# $(\phi, \psi)$, the flat torus $\mathbb T^2$). Riemannian flow matching (Chen & Lipman
# 2024) replaces the straight line between a source point $x_0$ and a data point $x_1$ by
# the **geodesic**,
#
# $$x_t = \exp_{x_0}\!\big(t \log_{x_0} x_1\big), \qquad
#   u_t = \tfrac{d}{dt} x_t \in T_{x_t}\mathcal M,$$
#
# regresses a vector field on the manifold onto $u_t$,
# $\mathbb E\,\lVert v_\theta(x_t, t) - u_t \rVert^2$, and integrates it with steps that
# stay on $\mathcal M$. In flowjax_fm that is three objects:
#
# * `fm.manifolds.Sphere()` / `FlatTorus()` / `Euclidean()`: `projx`, `proju`, `expmap`,
#   `logmap`, `dist` for one point, the batched `squared_distances` (the geodesic OT cost)
#   and uniform / wrapped-normal sources;
# * `fm.paths.GeodesicPath(M)`: $x_t$ and $u_t$ (from one `jax.jvp`), a path like any
#   other for `make_train_step`; `fm.couplings.ExactOTCoupling(manifold=M)` pairs by the
#   squared geodesic distance (wrapped on the torus);
# * `fm.sampling.sample(field, x0, manifold=M)`: any diffrax solver, projected onto
#   $\mathcal M$.
#
# We compare it with the **Euclidean baseline that ignores the manifold**: straight paths in
# the ambient coordinates ($\mathbb R^3$ for the sphere; for the torus the angles as points
# of the plane, unwrapped), an ordinary ODE solve, and a projection onto $\mathcal M$
# (normalise, or wrap modulo $2\pi$) once at the end. Scores: the geodesic $W_2$ and an MMD
# with a Gaussian kernel of the geodesic distance.
#
# Set `FLOWJAX_FAST=1` to run a shrunken version (fewer steps and points) in about a minute.
# The full comparison over three seeds and five methods is the benchmark
# `python -m benchmarks.bench_riemannian` (`benchmarks/results/riemannian.md`).

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import flowjax_fm as fm
from flowjax_fm.data import sphere_uniform, sphere_vmf_mixture, torus_uniform, torus_wrapped_mixture

FAST = os.environ.get("FLOWJAX_FAST", "0") == "1"
NUM_STEPS = 400 if FAST else 3_000  # training steps per model
N_EVAL = 500 if FAST else 2_000  # generated and target points scored
BATCH = 256
HIDDEN = (128, 128, 128)
S, T = fm.manifolds.Sphere(), fm.manifolds.FlatTorus()
print(f"FAST={FAST}, jax {jax.__version__}, devices: {jax.devices()}")

# %% [markdown]
# ## The maps, and a geodesic path
#
# A manifold's maps take **one point** (batch them with `jax.vmap`). On the sphere the
# logarithm of a point a quarter turn away has length $\pi/2$; the geodesic's velocity is
# tangent at every $x_t$ (`proju` leaves it unchanged). On the torus, differences are
# wrapped: $0.1$ and $6.2$ radians are $0.18$ apart, through $0 \equiv 2\pi$.

# %%
x0, x1 = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0])
path = fm.paths.GeodesicPath(S)
for t in (0.0, 0.5, 1.0):
    x_t, u_t = path.sample_and_target(x0, x1, jnp.float32(t))
    tangent_err = float(jnp.abs(S.proju(x_t, u_t) - u_t).max())
    print(f"t={t:.1f}  x_t={np.round(x_t, 4)}  |u_t|={float(jnp.linalg.norm(u_t)):.4f}  "
          f"|proju(u_t) - u_t|={tangent_err:.1e}")
a, b = jnp.array([0.1, 3.0]), jnp.array([6.2, 3.5])
print("torus logmap:", np.round(T.logmap(a, b), 4), " dist:", round(float(T.dist(a, b)), 4),
      " straight-line distance:", round(float(jnp.linalg.norm(b - a)), 4))

# %% [markdown]
# ## The data
#
# **Sphere**: an equal-weight mixture of four von Mises-Fisher distributions,
# $p(x) \propto \sum_k \exp(\kappa_k \mu_k^\top x)$ with $\kappa = 8, 16, 32, 64$ (spreads
# of about 20 to 7 degrees), drawn by Wood's rejection algorithm. Shown in the Mollweide
# projection, which keeps areas, so point densities read true.
#
# **Torus**: a wrapped-normal mixture shaped like a Ramachandran plot: the right-handed
# helix, the broad beta / polyproline region, the bridge between them, the left-handed helix
# and glycine's epsilon region. The angles come in $[0, 2\pi)$ (the torus's coordinates) and
# are drawn in the usual $[-180^\circ, 180^\circ)$ axes. The bridge mode straddles
# $\psi = 0$, a seam of the $[0, 2\pi)$ chart that the Euclidean baseline works in (the
# dashed lines $\phi = 0$ and $\psi = 0$ are its seams); the beta and epsilon modes reach
# across $\psi = \pm 180^\circ$.


# %%
def lon_lat(x):
    """Unit vectors (n, 3) -> (longitude, latitude) in radians for a Mollweide axis."""
    x = np.asarray(x)
    return np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1.0, 1.0))


def degrees(x):
    """Angles in [0, 2 pi) -> degrees in [-180, 180)."""
    return np.degrees((np.asarray(x) + np.pi) % (2 * np.pi) - np.pi)


def sphere_ax(fig, pos, pts, title, color):
    ax = fig.add_subplot(pos, projection="mollweide")
    ax.scatter(*lon_lat(pts), s=1.5, c=color, alpha=0.6)
    ax.set_title(title, fontsize=9)
    ax.set_xticklabels([])
    ax.grid(alpha=0.3)
    return ax


def torus_ax(ax, pts, title, color):
    d = degrees(pts)
    ax.scatter(d[:, 0], d[:, 1], s=1.5, c=color, alpha=0.6)
    ax.axhline(0.0, color="k", ls="--", lw=0.6)  # the seams of the data's [0, 2 pi) chart
    ax.axvline(0.0, color="k", ls="--", lw=0.6)
    ax.set(xlim=(-180, 180), ylim=(-180, 180), xticks=range(-180, 181, 90), yticks=range(-180, 181, 90),
           xlabel="phi (degrees)", ylabel="psi (degrees)", aspect="equal")
    ax.set_title(title, fontsize=9)
    return ax


y_sphere = sphere_vmf_mixture(jax.random.key(2000), N_EVAL)
y_torus = torus_wrapped_mixture(jax.random.key(2000), N_EVAL)
fig = plt.figure(figsize=(11, 3.6))
sphere_ax(fig, 121, y_sphere, "sphere: vMF mixture (Mollweide, equal-area)", "C0")
torus_ax(fig.add_subplot(122), y_torus, "torus: Ramachandran-like mixture", "C0")
fig.tight_layout()

# %% [markdown]
# ## Training: the same network, two ways
#
# Both methods train the same MLP (3 x 128, SiLU) with Adam, batch 256, exact-OT pairs and
# the same uniform source points on $\mathcal M$:
#
# * **RFM**: `GeodesicPath(M)` and `ExactOTCoupling(manifold=M)`; the network is made a
#   vector field *on* $\mathcal M$: on the sphere its output is projected onto the tangent
#   space with `proju`; on the torus it reads $(\cos x, \sin x)$, so the field is continuous
#   across the seam $0 \equiv 2\pi$. Sampled with `sample(..., manifold=M)`.
# * **Euclidean + projx**: `CondOTPath` and Euclidean exact OT in the ambient coordinates, an
#   ordinary solve, then `projx` (normalise; wrap modulo $2\pi$).
#
# Only the model and the path/coupling differ; `make_train_step` and `fit` are the ones used
# for any flow.


# %%
class OnManifold(nnx.Module):
    """An MLP made a vector field on M: periodic input features (torus), tangent output (sphere)."""

    def __init__(self, manifold, dim, rngs):
        self.manifold, self.dim = manifold, dim
        self.periodic = isinstance(manifold, fm.manifolds.FlatTorus)
        self.net = fm.models.MLP(2 * dim if self.periodic else dim, HIDDEN, activation="silu", rngs=rngs)

    def __call__(self, x, t, cond=None):
        h = jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=-1) if self.periodic else x
        v = self.net(h, t)[:, : self.dim]
        return jax.vmap(self.manifold.proju)(x, v)


TASKS = {  # manifold, source, target, dimension
    "sphere": (S, sphere_uniform, sphere_vmf_mixture, 3),
    "torus": (T, torus_uniform, torus_wrapped_mixture, 2),
}


def train(task, method, seed=0):
    """Train one model; returns its vector field and the training time."""
    manifold, source, target, dim = TASKS[task]
    if method == "RFM":
        model = OnManifold(manifold, dim, nnx.Rngs(seed))
        path, coupling = fm.paths.GeodesicPath(manifold), fm.couplings.ExactOTCoupling(manifold=manifold)
    else:
        model = fm.models.MLP(dim, HIDDEN, activation="silu", rngs=nnx.Rngs(seed))
        path, coupling = fm.paths.CondOTPath(), fm.couplings.ExactOTCoupling()
    opt = optax.adam(1e-3)
    step = fm.training.make_train_step(model, optimizer=opt, path=path, coupling=coupling)
    start = time.perf_counter()
    state, history = fm.training.fit(step, fm.training.init_state(model, opt), jax.random.key(seed), source,
                                     target, num_steps=NUM_STEPS, batch_size=BATCH, progress=False)
    jax.block_until_ready(state.params)
    seconds = time.perf_counter() - start
    print(f"{task:6s} {method:9s} final loss {float(np.mean(history['loss'][-50:])):.4f}  ({seconds:.0f} s)")
    return fm.training.make_vector_field(model, state.params), seconds


fields = {(task, method): train(task, method) for task in TASKS for method in ("RFM", "Euclidean")}

# %% [markdown]
# ## Sampling
#
# RFM integrates on $\mathcal M$ (dopri5 at $10^{-5}$; `manifold=M` evaluates the field at
# `projx(x)`, makes it tangent and projects every accepted step; on the torus the angles are
# integrated unwrapped and wrapped at the end, so no step jumps across the seam). The
# Euclidean baseline integrates in $\mathbb R^3$ / $\mathbb R^2$ and is projected once.
# How far it strays from $\mathcal M$ before that projection is printed too.


# %%
def generate(task, method, n=N_EVAL, seed=0, **solver):
    manifold, source, _, _ = TASKS[task]
    field = fields[(task, method)][0]
    x0 = source(jax.random.key(1000 + seed), n)
    solver = solver or {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-5}
    if method == "RFM":
        res = fm.sampling.sample(field, x0, manifold=manifold, **solver)
        return res.x, res
    res = fm.sampling.sample(field, x0, **solver)
    return jax.vmap(manifold.projx)(res.x), res


samples, raw = {}, {}
for task, method in fields:
    samples[(task, method)], raw[(task, method)] = generate(task, method)

sphere_gap = lambda x: float(jnp.abs(jnp.linalg.norm(x, axis=1) - 1.0).max())
print("RFM on the sphere: max | |x| - 1 | =", f"{sphere_gap(samples[('sphere', 'RFM')]):.1e}")
print("RFM on the torus: every angle in [0, 2 pi):",
      bool(jnp.all(jax.vmap(lambda p: T.belongs(p, 0.0))(samples[("torus", "RFM")]))))
r = jnp.linalg.norm(raw[("sphere", "Euclidean")].x, axis=1)
print(f"Euclidean on the sphere, before projx: |x| from {float(r.min()):.3f} to {float(r.max()):.3f}, "
      f"mean | |x| - 1 | = {float(jnp.abs(r - 1).mean()):.3f}")
a = raw[("torus", "Euclidean")].x
print("Euclidean on the torus, before wrapping: share outside [0, 2 pi)^2 =",
      f"{float(jnp.mean(jnp.any((a < 0) | (a >= 2 * jnp.pi), axis=1))):.1%}")

# %%
fig = plt.figure(figsize=(13, 3.4))
sphere_ax(fig, 131, y_sphere, "target", "C0")
sphere_ax(fig, 132, samples[("sphere", "RFM")], "RFM (geodesic path, OT, on-manifold solve)", "C2")
sphere_ax(fig, 133, samples[("sphere", "Euclidean")], "Euclidean in R^3, projected", "C3")
fig.suptitle("sphere samples (Mollweide)", fontsize=10)
fig.tight_layout()

fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
torus_ax(axes[0], y_torus, "target", "C0")
torus_ax(axes[1], samples[("torus", "RFM")], "RFM (geodesic path, OT, on-manifold solve)", "C2")
torus_ax(axes[2], samples[("torus", "Euclidean")], "Euclidean in the [0, 2 pi) chart, wrapped", "C3")
fig.suptitle("torus samples, Ramachandran-style axes (dashed: the seams of the data's [0, 2 pi) chart)",
             fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## Trajectories on the torus
#
# The geodesic flow may leave one side of the chart and come back in on the other (the
# angles are wrapped for the picture, so a path that crosses a seam is drawn in two
# pieces); the Euclidean flow moves in straight-ish lines inside the square $[0, 2\pi)^2$
# and must reach a mode split by the seam from the inside.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.5))
rk4 = {"solver": "rk4", "num_steps": 20}
for ax, method in zip(axes, ("RFM", "Euclidean"), strict=True):
    _, res = generate("torus", method, n=60, seed=5, save_trajectory=True, **rk4)
    traj = np.asarray(res.trajectory)  # (steps + 1, n, 2), unwrapped for the Euclidean flow
    wrapped = degrees(traj)
    for i in range(traj.shape[1]):
        jumps = np.any(np.abs(np.diff(wrapped[:, i], axis=0)) > 180, axis=1)  # a seam crossing
        seg = np.split(wrapped[:, i], np.nonzero(jumps)[0] + 1)
        for s in seg:
            ax.plot(s[:, 0], s[:, 1], lw=0.6, c="grey", alpha=0.7)
    ax.scatter(*wrapped[0].T, s=6, c="k", label="x0")
    ax.scatter(*wrapped[-1].T, s=8, c="C2" if method == "RFM" else "C3", label="x1")
    ax.set(xlim=(-180, 180), ylim=(-180, 180), aspect="equal", xlabel="phi", ylabel="psi")
    ax.axhline(0.0, color="k", ls="--", lw=0.6)
    ax.axvline(0.0, color="k", ls="--", lw=0.6)
    ax.set_title(f"{method}: 60 trajectories (rk4, 20 steps)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
fig.tight_layout()

# %% [markdown]
# ## Scores: geodesic $W_2$ and MMD
#
# * **Geodesic $W_2$**: the exact optimal assignment between the generated points and as
#   many fresh target points under the squared geodesic cost (`M.squared_distances`,
#   `fm.couplings.solve_assignment`), $W_2 = \sqrt{\text{mean cost}}$.
# * **MMD$^2$** (unbiased) with the kernel $\frac13\sum_\sigma \exp(-d(x, y)^2 / 2\sigma^2)$,
#   $\sigma \in \{0.1, 0.3, 1\}$ rad, $d$ = `M.dist`. A Gaussian of a geodesic distance is
#   not a positive definite kernel on every curved or periodic space (Feragen et al. 2015),
#   so read it as a discrepancy; it can dip slightly below 0 near a perfect fit.
#
# The **floor** row scores two independent target samples of the same size against each
# other: the value a perfect model would get, on average, with this many points.


# %%
def geodesic_w2(manifold, x, y):
    cost = manifold.squared_distances(x, y)
    perm = np.asarray(fm.couplings.solve_assignment(cost))
    return float(np.sqrt(np.asarray(cost, np.float64)[np.arange(len(perm)), perm].mean()))


@jax.jit
def _gram(d2):
    return sum(jnp.exp(-d2 / (2.0 * s * s)) for s in (0.1, 0.3, 1.0)) / 3.0


def geodesic_mmd2(manifold, x, y):
    dist2 = lambda a, b: jax.vmap(lambda p: jax.vmap(lambda q: manifold.dist(p, q) ** 2)(b))(a)
    within = lambda a: (lambda k: (k.sum() - jnp.trace(k)) / (len(a) * (len(a) - 1)))(_gram(dist2(a, a)))
    return float(within(x) + within(y) - 2.0 * _gram(dist2(x, y)).mean())


rows = []
for task in TASKS:
    manifold, _, target, _ = TASKS[task]
    y = target(jax.random.key(2000), N_EVAL)
    y2 = target(jax.random.key(3000), N_EVAL)
    for method in ("RFM", "Euclidean"):
        x, res = samples[(task, method)], raw[(task, method)]  # dopri5, drawn above
        rows.append((task, method, geodesic_w2(manifold, x, y), 1e3 * geodesic_mmd2(manifold, x, y),
                     int(res.nfe)))
    rows.append((task, "two target samples (floor)", geodesic_w2(manifold, y2, y),
                 1e3 * geodesic_mmd2(manifold, y2, y), None))

print(f"{NUM_STEPS} training steps, {N_EVAL} points\n")
print(f"{'task':7s} {'method':28s} {'W2':>7s} {'MMD^2 x1e3':>11s} {'NFE (dopri5)':>12s}")
for task, method, w2, mmd, nfe in rows:
    print(f"{task:7s} {method:28s} {w2:7.4f} {mmd:11.3f} {'-' if nfe is None else nfe:>12}")

# %% [markdown]
# ## What to take away
#
# * Points sampled with `manifold=M` stay on $\mathcal M$ to rounding (checked above), for
#   any diffrax solver.
# * On the **torus**, the geodesic flow with a periodic network handles the modes that the
#   seams of a chart cut in two; the baseline that treats the angles as points of the plane
#   has to build such a mode from two pieces at opposite edges of its square. In the
#   benchmark (three seeds) RFM with OT pairs had the lower $W_2$ and MMD on every seed, at
#   2,500 steps and at 10,000 (0.228 against 0.264 there, floor 0.238); the same geodesic
#   path with the baseline's network (raw angles, a field that jumps at the seam) needed
#   ~5x the dopri5 evaluations and lost on MMD.
# * On the **sphere** the naive baseline is strong: its chords through the ball end near
#   the sphere, the final normalisation removes the radial error, and in three dimensions
#   the straight paths of different pairs can pass each other at different radii. At 2,500
#   steps it was *ahead* of RFM on both scores (0.152 against 0.172 in $W_2$). At 10,000
#   steps RFM is ahead, by a small margin next to the two-sample floor: $W_2$ 0.119
#   (tangent network) and 0.117 (plain network) against 0.122, floor 0.110; MMD lower on
#   average, per seed 1/3 and 2/3. A short run like this notebook's can rank them either
#   way. See `benchmarks/results/riemannian.md` for every cell.
#
# References: Chen & Lipman 2024, *Flow Matching on General Geometries*; Wood 1994,
# *Simulation of the von Mises Fisher distribution*; Feragen, Lauze & Hauberg 2015,
# *Geodesic exponential kernels*.
