"""Bad inputs of [SF]2M score matching (fm.losses) and SDE sampling (fm.sampling).

Every case fails at trace time (argument checks, ``jax.eval_shape`` probes): no solve is
compiled. The run-time policy (``throw=False`` reports a non-finite solve) is tested in
``tests/test_score_sde.py``, where the one compile it needs is paid once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case

Lo, S = fm.losses, fm.sampling

K = jax.random.key(0)
X = jnp.zeros((4, 2))
T = jnp.full((4,), 0.5)
BRIDGE = fm.paths.BrownianBridgePath(sigma=1.0)
UNIFORM = fm.time_sampling.UniformTime()
f = lambda x, t: jnp.zeros_like(x)
wrong = lambda x, t: jnp.zeros((4, 3))
pair = lambda x, t: (jnp.zeros_like(x), jnp.zeros_like(x))


def sde(**kwargs):
    args = dict(sigma=1.0, key=K, num_steps=4)
    args.update(kwargs)
    drift = args.pop("drift", f)
    score = args.pop("score", f)
    x0 = args.pop("x0", X)
    return lambda: S.sample_sde(drift, score, x0, **args)


def sf2m(model, path=BRIDGE, **kwargs):
    return lambda: Lo.SF2MObjective(**kwargs)(model, K, X, X, path=path, time_sampler=UNIFORM)


CASES = [
    # score_loss
    Case("losses.score_loss", "deterministic path",
         lambda: Lo.score_loss(f, K, X, X, path=fm.paths.CondOTPath()),
         match=r"score matching needs a stochastic Gaussian path.*BrownianBridgePath.*CondOTPath"),
    Case("losses.score_loss", "GaussianPath(sigma=0)",
         lambda: Lo.score_loss(f, K, X, X, path=fm.paths.GaussianPath(sigma=0.0)),
         match=r"positive width: GaussianPath\(sigma=0\)"),
    Case("losses.score_loss", "weighting", lambda: Lo.score_loss(f, K, X, X, weighting="sm"),
         match=r"unknown weighting 'sm'; choose one of 'lambda', 'torchcfm'"),
    Case("losses.score_loss", "score output shape", lambda: Lo.score_loss(wrong, K, X, X),
         match=r"score function returned shape \(4, 3\), expected \(4, 2\)"),
    Case("losses.score_loss", "score not callable", lambda: Lo.score_loss(1.0, K, X, X),
         error=TypeError, match=r"score_fn must be a function"),
    Case("losses.score_loss", "x0/x1 shapes", lambda: Lo.score_loss(f, K, X, jnp.zeros((3, 2))),
         match=r"\(4, 2\).*\(3, 2\)"),
    Case("losses.score_loss", "coupling not a coupling",
         lambda: Lo.score_loss(f, K, X, X, coupling="exact"),
         error=TypeError, match=r"coupling must be an instance of fm\.couplings\.AbstractCoupling"),
    # SF2MObjective
    Case("losses.SF2MObjective", "score_weight<0", lambda: Lo.SF2MObjective(score_weight=-1.0),
         match=r"score_weight must be a finite number in \[0, inf\), got -1\.0"),
    Case("losses.SF2MObjective", "weighting", lambda: Lo.SF2MObjective(weighting="ism"),
         match=r"unknown weighting 'ism'; choose one of"),
    Case("losses.SF2MObjective", "deterministic path", sf2m(pair, path=fm.paths.CondOTPath()),
         match=r"score matching needs a stochastic Gaussian path"),
    Case("losses.SF2MObjective", "one head only", sf2m(f),
         match=r"must return a pair \(v, s\) of shape \(4, 2\) each or one array of shape "
               r"\(4, 4\).*got \(4, 2\)"),
    Case("losses.SF2MObjective", "pair of wrong shapes",
         sf2m(lambda x, t: (jnp.zeros_like(x), jnp.zeros((4, 1)))),
         match=r"pair must return \(v, s\) of shape \(4, 2\) each, got 2 outputs of shapes "
               r"\[\(4, 2\), \(4, 1\)\]"),
    Case("losses.split_flow_score", "three outputs",
         lambda: Lo.split_flow_score((X, X, X), X), match=r"got 3 outputs"),
    Case("losses.split_flow_score", "odd width",
         lambda: Lo.split_flow_score(jnp.zeros((4, 3)), X), match=r"shape \(4, 4\).*got \(4, 3\)"),
    # sample_sde: all refused before anything is compiled
    Case("sampling.sample_sde", "sigma<0", sde(sigma=-1.0),
         match=r"sigma must be a finite number in \[0, inf\), got -1\.0"),
    Case("sampling.sample_sde", "sigma=nan", sde(sigma=float("nan")), match=r"sigma must be a finite"),
    Case("sampling.sample_sde", "sigma(t) not scalar", sde(sigma=lambda t: jnp.ones(2)),
         match=r"sigma\(t\) must return a float scalar \(shape \(\)\).*shape \(2,\)"),
    Case("sampling.sample_sde", "key not a key", sde(key=0), error=TypeError,
         match=r"key must be one jax\.random\.key"),
    Case("sampling.sample_sde", "num_steps=0", sde(num_steps=0),
         match=r"num_steps must be an int >= 1, got 0"),
    Case("sampling.sample_sde", "num_steps=None", sde(num_steps=None),
         match=r"num_steps must be an int >= 1, got None"),
    Case("sampling.sample_sde", "unknown solver", sde(solver="rk45"),
         match=r"unknown solver 'rk45'; valid names are euler, heun, shark"),
    Case("sampling.sample_sde", "solver not a solver", sde(solver=3),
         match=r"solver must be one of euler, heun, shark or a diffrax solver object, got int"),
    Case("sampling.sample_sde", "adaptive Euler", sde(adaptive=True),
         match=r"solver Euler has no error estimate.*solver='heun'"),
    Case("sampling.sample_sde", "adaptive not a bool", sde(adaptive="yes"),
         match=r"adaptive must be True or False, got 'yes'"),
    Case("sampling.sample_sde", "t0 == t1", sde(t0=0.5, t1=0.5), match=r"t0 and t1 must differ"),
    Case("sampling.sample_sde", "rtol<0", sde(rtol=-1.0),
         match=r"rtol must be a finite number in \(0, inf\)"),
    Case("sampling.sample_sde", "reverse not a bool", sde(reverse=1),
         match=r"reverse must be True or False, got 1"),
    Case("sampling.sample_sde", "brownian_tol=0", sde(brownian_tol=0.0),
         match=r"brownian_tol must be a finite number in \(0, inf\), got 0\.0"),
    Case("sampling.sample_sde", "unbatched x0", sde(x0=jnp.zeros(3)),
         match=r"x0 must be batched with shape \(B, \*event\).*\(3,\)"),
    Case("sampling.sample_sde", "integer x0", sde(x0=jnp.zeros((4, 2), jnp.int32)),
         match=r"x0 must be a floating-point array, got dtype int32"),
    Case("sampling.sample_sde", "drift output shape", sde(drift=wrong),
         match=r"drift must return x's shape \(4, 2\) as floats, got \(4, 3\)"),
    Case("sampling.sample_sde", "score output shape", sde(score=wrong),
         match=r"score must return x's shape \(4, 2\) as floats, got \(4, 3\)"),
    Case("sampling.sample_sde", "drift fails", sde(drift=lambda x, t: x @ jnp.ones((3, 3))),
         match=r"calling drift\(x, t\) with x of shape \(4, 2\) and t of shape \(4,\) failed"),
    Case("sampling.sample_sde", "drift not callable", sde(drift="v"), error=TypeError,
         match=r"drift must be a function drift\(x, t"),
    Case("sampling.sample_sde", "score not callable", sde(score=2.0), error=TypeError,
         match=r"score must be None or a function"),
    # probability_flow
    Case("sampling.probability_flow", "drift not callable", lambda: S.probability_flow(None, f, 1.0),
         error=TypeError, match=r"drift must be a function"),
    Case("sampling.probability_flow", "score not callable", lambda: S.probability_flow(f, None, 1.0),
         error=TypeError, match=r"score must be a function"),
    Case("sampling.probability_flow", "sigma<0", lambda: S.probability_flow(f, f, -0.5),
         match=r"sigma must be a finite number in \[0, inf\), got -0\.5"),
    Case("sampling.probability_flow", "sigma vector", lambda: S.probability_flow(f, f, jnp.ones(2)),
         match=r"sigma must be a scalar or a function g\(t\), got shape \(2,\)"),
    Case("sampling.probability_flow", "drift output shape",
         lambda: S.probability_flow(wrong, f, 1.0)(X, T),
         match=r"drift must return x's shape \(4, 2\), got \(4, 3\)"),
    Case("sampling.probability_flow", "sigma(t) not scalar",
         lambda: S.probability_flow(f, f, lambda t: jnp.ones(2))(X, T),
         match=r"sigma\(t\) must return a scalar for a scalar t, got shape \(2,\)"),
]

EXEMPT = {
    "losses.SCORE_WEIGHTINGS": "a constant (the names of the score weightings)",
    "sampling.SDE_SOLVER_NAMES": "a constant (the names of the SDE solvers)",
}
