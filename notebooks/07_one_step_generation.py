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
# # One-step generation: MeanFlow, shortcut models and time schedules
#
# A flow-matching model learns the *instantaneous* velocity $v(x_t, t)$ of a flow from noise
# ($t = 0$) to data ($t = 1$). Sampling integrates $\dot x = v(x, t)$: tens of field
# evaluations (NFE) with an adaptive solver, and large errors with one or two Euler steps
# wherever the trajectories bend.
#
# A few-step model learns instead the **average velocity** over an interval $[t, r]$,
#
# $$u(x_t, t, r) = \frac{1}{r - t} \int_t^r v(x_s, s)\, ds, \qquad
#   x_r = x_t + (r - t)\, u(x_t, t, r),$$
#
# so a jump of any length is a single evaluation, exact if $u$ is. It needs a network of
# two times (`two_time=True`). There is no regression target for $u$ (the integral is over
# the unknown flow), but differentiating $(r - t)\, u(x_t, t, r) = \int_t^r v\, ds$ in $t$
# along the flow gives the **MeanFlow identity** (Geng et al. 2025, in our time direction)
#
# $$u(x_t, t, r) = v(x_t, t) + (r - t)\, \frac{d}{dt} u(x_t, t, r), \qquad
#   \frac{d}{dt} u = \partial_x u \cdot v + \partial_t u ,$$
#
# whose total derivative is one forward-mode product: `jax.jvp` of $u$ at $(x_t, t, r)$
# with tangents $(v, 1, 0)$. `fm.losses.MeanFlowObjective` regresses $u_\theta$ onto the
# right-hand side (stop-gradient), with the conditional velocity $x_1 - x_0$ in place of
# $v$.
#
# This notebook: the identity checked on a flow whose average velocity is known; MeanFlow
# and a one-time OT-CFM model (same network, same steps) on 8gaussians $\to$ moons at 1, 2
# and 4 NFE; shortcut models; the training-time samplers and sampling grids of
# SD3 / Flux-style models. Set `FLOWJAX_FAST=1` for a shrunken run.

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
NUM_STEPS = 200 if FAST else 6_000  # optimiser steps of every model
N_EVAL = 400 if FAST else 2_000  # generated points per W2
N_TIMES = 5_000 if FAST else 50_000  # draws per time-sampler histogram
NFE = (1, 2, 4)
print(f"FAST={FAST}: {NUM_STEPS} steps per model, {N_EVAL} evaluation points")

# %% [markdown]
# ## The identity, with `jax.jvp`
#
# For the flow $\dot x = x$ (so $v(x, t) = x$), $x_r = x_t e^{r - t}$ and the average
# velocity is $u(x_t, t, r) = x_t\, (e^{r - t} - 1) / (r - t)$. One `jax.jvp` gives $u$ and
# its total derivative together; the identity holds to float precision, and one jump of
# `fm.sampling.sample_few_step` lands on the exact $x_1 = e\, x_0$.


# %%
def u_exact(x, t, r):
    """Average velocity of dx/dt = x over [t, r] at x_t = x (t, r scalars)."""
    return x * jnp.expm1(r - t) / (r - t)


x, t, r = jnp.array([0.3, -1.2]), jnp.float32(0.2), jnp.float32(0.9)
v = x  # the instantaneous velocity at (x, t)
u, du_dt = jax.jvp(u_exact, (x, t, r), (v, jnp.float32(1.0), jnp.float32(0.0)))
print("u(x, t, r)              ", u)
print("v + (r - t) du/dt       ", v + (r - t) * du_dt)

x0_demo = jnp.array([[1.0, -0.5]])
u_batched = lambda x, t, r: x * (jnp.expm1(r - t) / (r - t))[:, None]
one_jump = fm.sampling.sample_few_step(u_batched, x0_demo, num_steps=1)
print(f"one jump: {one_jump.x[0]}, exact e * x0: {np.e * x0_demo[0]}, NFE {int(one_jump.nfe)}")

# %% [markdown]
# ## MeanFlow against OT-CFM on 8gaussians $\to$ moons
#
# Both use a 3 x 256 SiLU MLP, the straight path (`CondOTPath`), exact minibatch OT pairs
# (`ExactOTCoupling`: OT pairing straightens the flow, which helps every few-step method),
# Adam at $10^{-3}$, batch 256 and the same number of steps. MeanFlow's model takes two times;
# its objective draws $t \le r$ and sets $r = t$ for three quarters of the examples
# (plain flow matching there), with the paper's adaptive loss weight.

# %%
opt = optax.adam(1e-3)
source, target = fm.data.make_sampler("8gaussians"), fm.data.make_sampler("moons")


def train(name, objective, two_time, seed=0):
    """Train the 3 x 256 MLP with OT pairs, print the time and final loss; return the field."""
    model = fm.models.MLP(2, (256, 256, 256), activation="silu", two_time=two_time, rngs=nnx.Rngs(seed))
    step = fm.training.make_train_step(
        model,
        optimizer=opt,
        path=fm.paths.CondOTPath(),
        coupling=fm.couplings.ExactOTCoupling(),
        objective=objective,
    )
    start = time.perf_counter()
    state, hist = fm.training.fit(
        step,
        fm.training.init_state(model, opt),
        jax.random.key(seed),
        source,
        target,
        num_steps=NUM_STEPS,
        batch_size=256,
        progress=False,
    )
    seconds = time.perf_counter() - start
    loss = float(np.mean(hist["loss"][-100:]))
    rate = NUM_STEPS / seconds
    print(f"{name:9s} {NUM_STEPS} steps in {seconds:.0f} s ({rate:.0f} steps/s), final loss {loss:.3f}")
    return fm.training.make_vector_field(model, state.params)


mf_field = train("MeanFlow", fm.losses.MeanFlowObjective(), two_time=True)
cfm_field = train("OT-CFM", fm.losses.CFMObjective(), two_time=False)

# %% [markdown]
# ## W2 at 1, 2 and 4 NFE
#
# MeanFlow: $K$ jumps of $u$ on the uniform grid (`sample_few_step`). OT-CFM: $K$ Euler steps.
# The multi-step reference is adaptive dopri5 at $10^{-5}$ on each model's instantaneous
# field (for MeanFlow, $u(x, t, t)$: `make_vector_field` of a two-time model called without
# `r`). Exact W2 between `N_EVAL` generated points and as many fixed moons; the floor is the
# W2 between two independent samples of moons of that size.

# %%
x0_eval = fm.data.sample_toy("8gaussians", jax.random.key(10), N_EVAL)
x1_ref = fm.data.sample_toy("moons", jax.random.key(11), N_EVAL)
floor = float(fm.metrics.wasserstein(fm.data.sample_toy("moons", jax.random.key(12), N_EVAL), x1_ref, p=2))
print(f"W2 between two samples of moons (floor): {floor:.3f}")


def w2(x):
    return float(fm.metrics.wasserstein(x, x1_ref, p=2))


def few_step_samples(field, k, two_time):
    if two_time:
        return fm.sampling.sample_few_step(field, x0_eval, num_steps=k).x
    return fm.sampling.sample(field, x0_eval, solver="euler", num_steps=k).x


def evaluate(field, two_time):
    """Samples and W2 at 1, 2, 4 NFE and with dopri5 (plus its NFE)."""
    samples = {k: few_step_samples(field, k, two_time) for k in NFE}
    ref = fm.sampling.sample(field, x0_eval, solver="dopri5", rtol=1e-5, atol=1e-5)
    samples["dopri5"] = ref.x
    return samples, {k: w2(x) for k, x in samples.items()}, int(ref.nfe)


results = {
    "MeanFlow (jumps)": evaluate(mf_field, two_time=True),
    "OT-CFM (Euler)": evaluate(cfm_field, two_time=False),
}


def print_table(rows):
    print(f"{'model':18s}" + "".join(f"{f'W2 {k} NFE':>10s}" for k in NFE) + f"{'W2 dopri5 (NFE)':>18s}")
    for name, (_, w, nfe) in rows.items():
        print(f"{name:18s}" + "".join(f"{w[k]:10.3f}" for k in NFE) + f"{w['dopri5']:11.3f} ({nfe:3d})")


print_table(results)

# %%
fig, axes = plt.subplots(2, 4, figsize=(13, 6.5), sharex=True, sharey=True)
for row, (name, (samples, w, nfe)) in enumerate(results.items()):
    for col, k in enumerate((*NFE, "dopri5")):
        ax = axes[row, col]
        ax.scatter(*np.asarray(x1_ref).T, s=1, c="lightgrey")
        ax.scatter(*np.asarray(samples[k]).T, s=1, c="tab:blue")
        label = f"{k} NFE" if k != "dopri5" else f"dopri5, {nfe} NFE"
        ax.set_title(f"{label}: W2 {w[k]:.2f}", fontsize=10)
    axes[row, 0].set_ylabel(name)
fig.suptitle("grey: moons; blue: samples from the same 8gaussians points")
fig.tight_layout()

# %% [markdown]
# How to read it: with OT pairs the OT-CFM flow is already nearly straight, so even its one
# Euler step lands on the moons rather than at the mean of the data, as it does with independent
# pairs (notebook 04); what one step still gets wrong is the curvature that minibatch pairing
# leaves (the stray points between and beyond the moons). A MeanFlow jump has no
# discretisation error, only the network's error in fitting the average velocity; here that
# error still shrinks with more, shorter jumps, and MeanFlow's own $u(x, t, t)$ needs fewer
# dopri5 evaluations than the OT-CFM field. Which of the two is better at one NFE
# depends on the training budget: in the full run committed here (one seed) they are within a
# few hundredths at every $K$, and MeanFlow's single jump is *not* better than one Euler step
# of OT-CFM. The `fewstep` benchmark repeats the comparison over seeds, tasks and longer
# training.

# %% [markdown]
# ## Shortcut models
#
# Frans et al. (2024) read the two-time network as a step: $s(x_t, t, d) = u(x_t, t, t + d)$.
# At $d = 0$ it is trained by flow matching; for $d > 0$ by **self-consistency**, one step
# of size $2d$ equal to two steps of size $d$ of the model itself,
#
# $$s_1 = s(x_t, t, d), \quad s_2 = s(x_t + d\, s_1, t + d, d), \qquad
#   s(x_t, t, 2d) \approx \mathrm{sg}\big(\tfrac{s_1 + s_2}{2}\big),$$
#
# with $2d = 2^{-k}$ down to $1/128$ (`ShortcutObjective(bootstrap=0.25, max_steps=128)`).
# No JVP: two extra forward passes instead. Same network, pairs and steps:

# %%
sc_field = train("shortcut", fm.losses.ShortcutObjective(), two_time=True)
results["shortcut (jumps)"] = evaluate(sc_field, two_time=True)
print(f"floor {floor:.3f}")
print_table(results)

# %% [markdown]
# In the full run committed here the shortcut model, trained without a JVP, has the lowest W2
# of the three at every $K$, and its one jump beats one Euler step of OT-CFM (one seed, one
# budget: a hint, not a ranking).

# %% [markdown]
# ## Time schedules: training times and sampling grids
#
# Two different things carry the word "schedule". **Training-time samplers**
# (`fm.time_sampling`) choose where on $[0, 1]$ the loss is evaluated: SD3's logit-normal and
# "mode" samplers concentrate training in the middle, and the shift
# $t' = t / (t + s(1 - t))$ (`ShiftedTime`, SD3 uses $s = 3$) moves it towards the noise end,
# which matters more at high resolution. **Sampling grids** (`fm.sampling.time_grid`) place
# the steps of a fixed-step solver: `"shifted"` gives small steps near the noise, `"edm"`
# (Karras et al.'s $\rho$-schedule on the noise level) small steps near the data.
#
# Convention: here $t = 0$ is noise and $t = 1$ data; diffusers' flow-matching schedulers use
# $\sigma = 1 - t$ ($\sigma = 1$ at noise), so their `shift` and ours mean the same thing.

# %%
samplers = {
    "UniformTime()": fm.time_sampling.UniformTime(),
    "LogitNormalTime(0, 1)": fm.time_sampling.LogitNormalTime(0.0, 1.0),
    "ModeTime(1.29)": fm.time_sampling.ModeTime(1.29),
    "ShiftedTime(UniformTime(), 3.0)": fm.time_sampling.ShiftedTime(fm.time_sampling.UniformTime(), 3.0),
}
grids = {
    "uniform": fm.sampling.time_grid(8),
    "shifted, s = 3": fm.sampling.time_grid(8, kind="shifted", shift=3.0),
    "edm, rho = 7": fm.sampling.time_grid(8, kind="edm"),
}
for name, grid in grids.items():
    print(f"{name:15s}", np.array2string(np.asarray(grid), precision=3, floatmode="fixed"))

fig, (ax_t, ax_g) = plt.subplots(1, 2, figsize=(12, 3.8))
bins = np.linspace(0, 1, 41)
for i, (name, sampler) in enumerate(samplers.items()):
    draws = np.asarray(sampler(jax.random.key(20 + i), N_TIMES))
    ax_t.hist(draws, bins=bins, density=True, histtype="step", lw=1.5, label=name)
ax_t.set_xlabel("t  (0 = noise, 1 = data)")
ax_t.set_title("training-time samplers (density)")
ax_t.legend(fontsize=8)
for i, grid in enumerate(grids.values()):
    ax_g.plot(np.asarray(grid), np.full(grid.shape, i), "o-", ms=5)
ax_g.set_yticks(range(len(grids)), list(grids))
ax_g.set_xlabel("t  (0 = noise, 1 = data)")
ax_g.set_title("8-step sampling grids")
fig.tight_layout()

# %% [markdown]
# A grid is passed to any fixed-step solver as `ts=`. On the OT-CFM model above, 8 Euler
# steps on each grid (which grid is best depends on where this flow bends; on images the
# shifted grid of SD3 / Flux is the usual choice):

# %%
for name, grid in grids.items():
    x = fm.sampling.sample(cfm_field, x0_eval, solver="euler", ts=grid).x
    print(f"OT-CFM, 8 Euler steps, {name:15s} grid: W2 {w2(x):.3f}")

# %% [markdown]
# ## Class-conditional digits (not run here)
#
# MeanFlow can also fold classifier-free guidance into training
# (`MeanFlowObjective(guidance_scale=w)` with condition dropout), so that one evaluation of
# the trained model samples the *guided* flow. Training a UNet on digits takes minutes on a
# CPU even in fast mode, so this notebook leaves it out; notebook 03 shows the conditional
# digits pipeline, and the `flowjax-fm train --objective meanflow --guidance-scale W
# --cond-dropout P` command trains the guided image model.
