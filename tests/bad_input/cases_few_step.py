"""Bad inputs of the few-step objectives (fm.losses) and few-step sampling (fm.sampling)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

Lo, S = fm.losses, fm.sampling

K = jax.random.key(0)
X = jnp.zeros((4, 2))
P = fm.paths.CondOTPath()
u = lambda x, t, r: jnp.zeros_like(x)
F = lambda x, t: jnp.zeros_like(x)
wrong = lambda x, t, r: jnp.zeros((4, 3))

CASES = [
    # objectives: values checked when built
    Case("losses.MeanFlowObjective", "ratio=1.5", lambda: Lo.MeanFlowObjective(ratio=1.5),
         match=r"ratio must be .*\[0, 1\].*1\.5"),
    Case("losses.MeanFlowObjective", "eps=0", lambda: Lo.MeanFlowObjective(eps=0.0),
         match=r"eps must be .*\(0, inf\).*0\.0"),
    Case("losses.MeanFlowObjective", "power<0", lambda: Lo.MeanFlowObjective(power=-1.0),
         match=r"power must be"),
    Case("losses.MeanFlowObjective", "guidance_mix=1", lambda: Lo.MeanFlowObjective(guidance_mix=1.0),
         match=r"guidance_mix must be .*\[0, 1\)"),
    Case("losses.ShortcutObjective", "max_steps=6", lambda: Lo.ShortcutObjective(max_steps=6),
         match=r"max_steps must be a power of two"),
    Case("losses.ShortcutObjective", "bootstrap=-0.1", lambda: Lo.ShortcutObjective(bootstrap=-0.1),
         match=r"bootstrap must be"),
    Case("losses.ConsistencyObjective", "normalize=0",
         lambda: Lo.ConsistencyObjective(normalize=0.0), match=r"normalize must be"),
    Case("losses.CFMObjective", "not a path",
         lambda: Lo.CFMObjective()(F, K, X, X, path="condot", time_sampler=fm.time_sampling.UniformTime()),
         error=TypeError, match=r"path must be an instance of fm\.paths\.AbstractPath"),
    Case("losses.get_objective", "unknown", lambda: Lo.get_objective("diffusion"),
         match=r"unknown objective 'diffusion'; choose one of"),
    # the losses: shapes at trace time
    Case("losses.meanflow_loss", "x0/x1 shapes", lambda: Lo.meanflow_loss(u, K, X, jnp.zeros((3, 2)), path=P),
         match=r"\(4, 2\).*\(3, 2\)"),
    Case("losses.meanflow_loss", "field output shape", lambda: Lo.meanflow_loss(wrong, K, X, X, path=P),
         match=r"two-time field returned shape \(4, 3\), expected \(4, 2\)"),
    Case("losses.meanflow_loss", "guidance without dropout",
         lambda: Lo.meanflow_loss(u, K, X, X, path=P, cond=jnp.zeros(4, jnp.int32), guidance_scale=2.0),
         match=r"condition dropout"),
    Case("losses.meanflow_loss", "u not callable", lambda: Lo.meanflow_loss(3.0, K, X, X, path=P),
         error=TypeError, match=r"u must be a two-time field"),
    Case("losses.shortcut_loss", "max_steps=3", lambda: Lo.shortcut_loss(u, K, X, X, path=P, max_steps=3),
         match=r"max_steps must be a power of two"),
    Case("losses.shortcut_loss", "integer data",
         lambda: Lo.shortcut_loss(u, K, jnp.zeros((4, 2), jnp.int32), jnp.zeros((4, 2), jnp.int32), path=P),
         match=r"float"),
    Case("losses.consistency_loss", "field output shape",
         lambda: Lo.consistency_loss(lambda x, t: jnp.zeros((4, 1)), K, X, X, path=P),
         match=r"vector field returned shape \(4, 1\), expected \(4, 2\)"),
    Case("losses.consistency_loss", "weight shape",
         lambda: Lo.consistency_loss(F, K, X, X, path=P, weight=lambda t: jnp.ones(3)),
         match=r"weight\(t\) must return shape \(4,\), got \(3,\)"),
    Case("losses.call_two_time", "not callable", lambda: Lo.call_two_time(None, X, X[:, 0], X[:, 0]),
         error=TypeError, match=r"u must be a two-time field"),
    # discrete flow matching as an objective
    Case("discrete.DiscreteObjective", "kind", lambda: fm.discrete.DiscreteObjective(kind="mse"),
         match=r"unknown kind .mse.; choose one of"),
    Case("discrete.DiscreteObjective", "float tokens",
         lambda: fm.discrete.DiscreteObjective()(
             lambda x, t: jnp.zeros((4, 2, 3)), K, X, X,
             path=fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule()),
             time_sampler=fm.time_sampling.UniformTime()),
         match=r"x0 must be integer tokens of shape \(B, L\).*float32"),
    # few-step sampling
    Case("sampling.sample_few_step", "num_steps=0", lambda: S.sample_few_step(u, X, num_steps=0),
         match=r"num_steps must be an int >= 1, got 0"),
    Case("sampling.sample_few_step", "unbatched x0", lambda: S.sample_few_step(u, jnp.zeros(3)),
         match=r"x0 must .*\(B, \*event\).*\(3,\)"),
    Case("sampling.sample_few_step", "integer x0", lambda: S.sample_few_step(u, jnp.zeros((4, 2), jnp.int32)),
         match=r"x0"),
    Case("sampling.sample_few_step", "grid not monotone",
         lambda: S.sample_few_step(u, X, ts=jnp.array([0.0, 0.6, 0.3, 1.0])),
         match=r"ts must be finite and strictly monotone"),
    Case("sampling.sample_few_step", "grid of one time", lambda: S.sample_few_step(u, X, ts=jnp.array([0.0])),
         match=r"ts must be a 1-D grid of at least 2 times, got shape \(1,\)"),
    Case("sampling.sample_few_step", "field output shape", lambda: S.sample_few_step(wrong, X),
         match=r"two-time field returned shape \(4, 3\), expected \(4, 2\)"),
    Case("sampling.sample_few_step", "not callable", lambda: S.sample_few_step("u", X),
         error=TypeError, match=r"u must be a two-time field"),
    Case("sampling.sample_few_step", "NaN field is reported",
         lambda: S.sample_few_step(lambda x, t, r: x * jnp.nan, X), error=None,
         reported=lambda res: not bool(res.success)),
]

EXEMPT = {
    "losses.AbstractObjective": "an abstract base class (no constructor values)",
    "losses.CondDrop": "a named tuple the train step builds (which rows were dropped)",
    "losses.OBJECTIVES": "a constant (the name -> class table of get_objective)",
}
