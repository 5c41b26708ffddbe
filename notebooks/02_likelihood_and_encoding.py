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
# # Likelihood and encoding
#
# A flow is a continuous normalizing flow: along $\dot x_t = v(x_t, t)$ the log-density obeys
# $\frac{d}{dt}\log p_t(x_t) = -\nabla\cdot v(x_t, t)$, so for a data point $x_1$
#
# $$\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot v(x_t, t)\,dt,$$
#
# with $x_0$ the point carried back to $t = 0$. `fm.likelihood.log_prob` integrates $x$ and
# the divergence together (backwards, one diffrax solve). The divergence is exact ($D$
# Jacobian-vector products) or Hutchinson's unbiased estimate
# $\nabla\cdot v \approx \varepsilon^\top (\partial v / \partial x)\, \varepsilon$.
#
# This notebook trains a flow from $\mathcal N(0, I)$ to `moons`, compares the two
# estimators, draws the model density, checks the encode / decode round trip and reports
# bits per dimension. Set `FLOWJAX_FAST=1` for a shrunken run.

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

FAST = os.environ.get("FLOWJAX_FAST", "0") == "1"
NUM_STEPS = 1_500 if FAST else 10_000
N_TEST = 256 if FAST else 1_000  # held-out points for log-likelihoods
GRID = 40 if FAST else 100  # heat-map resolution per axis
print(f"FAST={FAST}, {NUM_STEPS} training steps, {N_TEST} test points, {GRID}x{GRID} grid")

# %% [markdown]
# ## A flow from N(0, I) to moons
#
# `log_prob`'s default source density is the standard normal, so the source is `gaussian`.
# The divergence of a ReLU/SELU network jumps where a unit switches, which slows the
# adaptive solver; a smooth activation (`silu`) keeps likelihoods accurate and cheap.
# Exact minibatch OT pairs make the flow straight.

# %%
model = fm.models.MLP(2, (64, 64, 64), activation="silu", rngs=nnx.Rngs(0))
opt = optax.adam(1e-3)
step = fm.training.make_train_step(
    model,
    optimizer=opt,
    path=fm.paths.CondOTPath(),
    coupling=fm.couplings.ExactOTCoupling(),
)
start = time.perf_counter()
state, history = fm.training.fit(
    step,
    fm.training.init_state(model, opt),
    jax.random.key(0),
    fm.data.make_sampler("gaussian"),
    fm.data.make_sampler("moons"),
    num_steps=NUM_STEPS,
    batch_size=256,
    progress=False,
)
print(f"trained in {time.perf_counter() - start:.1f} s, final loss {history['loss'][-100:].mean():.3f}")
field = fm.training.make_vector_field(model, state.params)

# %% [markdown]
# ## Exact vs Hutchinson log-likelihood
#
# Held-out moons points; the exact divergence first (the reference), then Hutchinson with
# 1 and 8 Rademacher probes per point. The probes are drawn once and held fixed along the
# path (as FFJORD does), so each per-point estimate is unbiased.

# %%
x_test = fm.data.sample_toy("moons", jax.random.key(1), N_TEST)

start = time.perf_counter()
logp_exact = fm.likelihood.log_prob(field, x_test, estimator="exact")
print(
    f"exact:           mean log p = {float(logp_exact.mean()):.4f} nats ({time.perf_counter() - start:.1f} s)"
)
estimates = {}
for probes in (1, 8):
    start = time.perf_counter()
    estimates[probes] = fm.likelihood.log_prob(
        field, x_test, key=jax.random.key(2), estimator="hutchinson", num_probes=probes
    )
    err = estimates[probes] - logp_exact
    print(
        f"hutchinson x{probes}:  mean log p = {float(estimates[probes].mean()):.4f} nats, "
        f"per-point error: mean {float(err.mean()):+.4f}, std {float(err.std()):.4f} "
        f"({time.perf_counter() - start:.1f} s)"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
lo, hi = float(logp_exact.min()), float(logp_exact.max())
for probes, est in estimates.items():
    axes[0].scatter(logp_exact, est, s=4, alpha=0.6, label=f"{probes} probe(s)")
    axes[1].hist(np.asarray(est - logp_exact), bins=40, alpha=0.6, label=f"{probes} probe(s)")
axes[0].plot([lo, hi], [lo, hi], c="k", lw=0.8)
axes[0].set_xlabel("exact log p"), axes[0].set_ylabel("Hutchinson log p")
axes[1].set_xlabel("Hutchinson - exact (nats)")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Per point, one probe is noisy; averaged over a data set the error shrinks as
# $1/\sqrt{N}$ and more probes shrink it further. In 2D the exact divergence costs only two
# Jacobian-vector products, so it is the right choice here; Hutchinson pays off in high
# dimension (images).
#
# ## Model density
#
# The exact log-density on a grid.

# %%
xs = jnp.linspace(-4.5, 6.0, GRID)  # moons lies in about [-4, 5.6] x [-2.5, 2.6]
ys = jnp.linspace(-3.5, 3.5, GRID)
xx, yy = jnp.meshgrid(xs, ys)
grid = jnp.stack([xx.ravel(), yy.ravel()], axis=1)
start = time.perf_counter()
logp_grid = fm.likelihood.log_prob(field, grid, rtol=1e-4, atol=1e-4)
mass = float(jnp.exp(logp_grid).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0]))
print(
    f"{grid.shape[0]} grid points in {time.perf_counter() - start:.1f} s; "
    f"the density integrates to {mass:.3f} over the grid (Riemann sum)"
)

fig, axes = plt.subplots(2, 1, figsize=(6, 6.5), sharex=True, sharey=True)
extent = (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))
im = axes[0].imshow(
    np.exp(np.asarray(logp_grid)).reshape(GRID, GRID), origin="lower", extent=extent, cmap="magma"
)
axes[0].set_title("model density p_1(x)")
fig.colorbar(im, ax=axes[0], fraction=0.046)
samples = fm.sampling.sample(
    field, fm.data.sample_toy("gaussian", jax.random.key(3), 2_000), solver="dopri5", rtol=1e-4, atol=1e-4
).x
axes[1].scatter(*x_test.T, s=2, alpha=0.5, label="data")
axes[1].scatter(*samples.T, s=2, alpha=0.3, label="generated")
axes[1].set_title("data and samples")
axes[1].legend(fontsize=8, markerscale=4)
for ax in axes:
    ax.set_aspect("equal")
fig.tight_layout()

# %% [markdown]
# ## Encoding and the round trip
#
# `fm.sampling.encode` runs the flow backwards (data to noise). Encoded data should look like
# the source, $\mathcal N(0, I)$; decoding the codes again (`fm.sampling.sample`) should
# return the data, up to the solver tolerance. `fm.sampling.round_trip_error` does the
# reverse check (source to data and back) per point.

# %%
codes = fm.sampling.encode(field, x_test, solver="dopri5", rtol=1e-5, atol=1e-5).x
decoded = fm.sampling.sample(field, codes, solver="dopri5", rtol=1e-5, atol=1e-5).x
print(
    f"codes: mean {np.round(np.asarray(codes.mean(0)), 3)}, "
    f"std {np.round(np.asarray(codes.std(0)), 3)} (N(0, I) expected)"
)
print(f"data -> noise -> data, max abs error: {float(jnp.abs(decoded - x_test).max()):.2e}")
for tol in (1e-3, 1e-5, 1e-7):
    err = fm.sampling.round_trip_error(field, codes, solver="dopri5", rtol=tol, atol=tol)
    print(
        f"noise -> data -> noise at rtol = atol = {tol:.0e}: "
        f"median {float(jnp.median(err)):.1e}, max {float(err.max()):.1e}"
    )

fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
axes[0].scatter(*x_test.T, s=4, c=np.asarray(x_test[:, 0]), cmap="viridis")
axes[0].set_title("data x_1 (coloured by x)")
axes[1].scatter(*codes.T, s=4, c=np.asarray(x_test[:, 0]), cmap="viridis")
axes[1].set_title("codes x_0 = encode(x_1)")
for ax in axes:
    ax.set_aspect("equal")
fig.tight_layout()

# %% [markdown]
# ## Bits per dimension
#
# $\mathrm{bpd} = -\log p(x) / (D \log 2)$. A baseline: the best single Gaussian for the
# data (its mean and covariance fitted on a large sample).

# %%
bpd_flow = float(fm.likelihood.bits_per_dim(logp_exact, 2).mean())
fit_points = np.asarray(fm.data.sample_toy("moons", jax.random.key(4), 20_000), np.float64)
mu, cov = fit_points.mean(0), np.cov(fit_points.T)
diff = np.asarray(x_test, np.float64) - mu
maha = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
logp_gauss = -0.5 * (maha + np.log(np.linalg.det(cov)) + 2 * np.log(2 * np.pi))
bpd_gauss = float(fm.likelihood.bits_per_dim(jnp.asarray(logp_gauss), 2).mean())
print(f"flow:             {bpd_flow:.3f} bits/dim  (mean log p {float(logp_exact.mean()):.3f} nats)")
print(f"fitted Gaussian:  {bpd_gauss:.3f} bits/dim  (mean log p {logp_gauss.mean():.3f} nats)")
