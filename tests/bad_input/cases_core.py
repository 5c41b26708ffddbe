"""Bad inputs of the math core: ``fm.paths``, ``fm.time_sampling``, ``fm.losses``, ``fm.models``,
``fm.reflow`` (hyperparameters, call arguments, class labels eagerly and under ``jit``)."""

# ruff: noqa: E501  (a table: one case per line reads better than wrapped calls)
from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import flowjax_fm as fm
from bad_input import Case

P, T, L, M, R = fm.paths, fm.time_sampling, fm.losses, fm.models, fm.reflow
NAN, INF = float("nan"), float("inf")
KEY = jax.random.key(0)
X = jnp.zeros((4, 2))
TB = jnp.full(4, 0.5)
ZERO_FIELD = lambda x, t, cond=None: jnp.zeros_like(x)  # noqa: E731
FINITE = r"must be a finite number in"


def _loss(**kw):
    args = dict(path=P.CondOTPath())
    args.update(kw)
    field = args.pop("vector_field", ZERO_FIELD)
    x0 = args.pop("x0", X)
    return L.cfm_loss(field, KEY, x0, X, **args)


def _paired(**kw):
    args = dict(path=P.CondOTPath())
    args.update(kw)
    return L.paired_cfm_loss(ZERO_FIELD, KEY, X, X, **args)


def _sample(**kw):
    args = dict(path=P.CondOTPath())
    args.update(kw)
    return L.sample_conditional(KEY, X, X, **args)


@functools.cache
def _mlp_k3():
    return M.MLP(2, (4,), num_classes=3, rngs=nnx.Rngs(0))


@functools.cache
def _unet_k3():
    # abstract parameters (nnx.eval_shape): building a real UNet compiles every initialiser
    # eagerly (tens of seconds on a loaded 2-core machine), and the call-time checks run first
    return nnx.eval_shape(lambda: M.UNet(1, channels=4, channel_mult=(1,), num_heads=1, num_groups=1,
                                         num_classes=3, rngs=nnx.Rngs(0)))


def _mlp_call(labels):
    return _mlp_k3()(X, TB, cond=labels)


def _jit_call(model, x, t, labels):
    # equinox's jit: under plain jax.jit the same RuntimeError is raised, but its message opens
    # with XLA's callback banner ("INTERNAL: CpuCallback error ... Traceback"), which the suite's
    # first-line rule refuses; tests/test_guards_core.py checks the plain jax.jit case.
    graphdef, state = nnx.split(model)

    @eqx.filter_jit
    def f(state, x, t, labels):
        return nnx.merge(graphdef, state)(x, t, cond=labels)

    return jax.block_until_ready(f(state, x, t, labels))


IMG, TI = jnp.zeros((2, 4, 4, 1)), jnp.zeros(2)
ONE, ZERO3 = jnp.float32(0.5), jnp.zeros(3)

CASES = [
    # --- paths -------------------------------------------------------------------------------
    Case("paths.GaussianPath", "sigma=nan", lambda: P.GaussianPath(sigma=NAN), ValueError,
         r"sigma must be a finite number in \[0, inf\), got nan"),
    Case("paths.GaussianPath", "sigma<0", lambda: P.GaussianPath(sigma=-0.1), ValueError, r"sigma " + FINITE),
    Case("paths.GaussianPath", "sigma=inf", lambda: P.GaussianPath(sigma=INF), ValueError, r"sigma " + FINITE),
    Case("paths.GaussianPath", "sigma=str", lambda: P.GaussianPath(sigma="0.1"), ValueError,
         r"sigma must be a real number"),
    Case("paths.GaussianPath", "no noise", lambda: P.GaussianPath().sample(ZERO3, ZERO3, ONE), ValueError,
         r"stochastic: pass noise"),
    Case("paths.BrownianBridgePath", "sigma=0", lambda: P.BrownianBridgePath(sigma=0.0), ValueError,
         r"sigma must be a finite number in \(0, inf\), got 0.0.*epsilon = 2 sigma\^2"),
    Case("paths.BrownianBridgePath", "sigma<0", lambda: P.BrownianBridgePath(sigma=-1.0), ValueError,
         r"sigma " + FINITE + r" \(0, inf\)"),
    Case("paths.BrownianBridgePath", "sigma=nan", lambda: P.BrownianBridgePath(sigma=NAN), ValueError,
         r"sigma " + FINITE),
    Case("paths.BrownianBridgePath", "noise shape",
         lambda: P.BrownianBridgePath().sample(ZERO3, ZERO3, ONE, jnp.zeros(2)), ValueError,
         r"noise must have the shape of x0"),
    Case("paths.CondOTPath", "sigma_min<0", lambda: P.CondOTPath(sigma_min=-0.1), ValueError,
         r"sigma_min must be a finite number in \[0, 1\)"),
    Case("paths.CondOTPath", "sigma_min=1", lambda: P.CondOTPath(sigma_min=1.0), ValueError,
         r"sigma_min must be a finite number in \[0, 1\), got 1.0"),
    Case("paths.CondOTPath", "sigma_min=nan", lambda: P.CondOTPath(sigma_min=NAN), ValueError, r"sigma_min"),
    Case("paths.CondOTPath", "int x0",
         lambda: P.CondOTPath().sample(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32), ONE), ValueError,
         r"x0 must be floating point"),
    Case("paths.AffinePath", "schedule=int", lambda: P.AffinePath(3), TypeError,
         r"schedule must be an instance of fm.paths.AbstractSchedule"),
    Case("paths.AffinePath", "schedule=path", lambda: P.AffinePath(P.CondOTPath()), TypeError,
         r"schedule must be an instance of fm.paths.AbstractSchedule.*got CondOTPath"),
    Case("paths.AffinePath", "schedule=class", lambda: P.AffinePath(P.CosineSchedule), TypeError,
         r"schedule must be an instance"),
    Case("paths.AffinePath", "t shape in conversion",
         lambda: P.AffinePath().velocity_to_x1(X, X, jnp.zeros(3)), ValueError,
         r"t must have shape \(\) or \(B,\) = \(4,\), got \(3,\)"),
    Case("paths.PolynomialSchedule", "n=0", lambda: P.PolynomialSchedule(0.0), ValueError,
         r"n must be a finite number in \(0, inf\), got 0.0"),
    Case("paths.PolynomialSchedule", "n<0", lambda: P.PolynomialSchedule(-2.0), ValueError, r"n " + FINITE),
    Case("paths.PolynomialSchedule", "n=nan", lambda: P.PolynomialSchedule(NAN), ValueError, r"n " + FINITE),
    Case("paths.VPSchedule", "beta_min<0", lambda: P.VPSchedule(beta_min=-0.1), ValueError,
         r"beta_min must be a finite number in \[0, inf\)"),
    Case("paths.VPSchedule", "beta_max=0", lambda: P.VPSchedule(beta_min=0.0, beta_max=0.0), ValueError,
         r"beta_max must be a finite number in \(0, inf\)"),
    Case("paths.VPSchedule", "beta_max=inf", lambda: P.VPSchedule(beta_max=INF), ValueError, r"beta_max " + FINITE),
    Case("paths.VPSchedule", "max<min", lambda: P.VPSchedule(beta_min=5.0, beta_max=1.0), ValueError,
         r"beta_max must be >= beta_min, got beta_min=5.0 and beta_max=1.0"),
    Case("paths.VPPath", "x0/x1 shapes", lambda: P.VPPath().sample(jnp.zeros(3), jnp.zeros(4), ONE), ValueError,
         r"x0 and x1 must have the same shape, got \(3,\) and \(4,\)"),
    Case("paths.VPPath", "batched t", lambda: P.VPPath().sample(ZERO3, ZERO3, jnp.zeros(2)), ValueError,
         r"t must be a scalar"),
    Case("paths.VPPath", "int t", lambda: P.VPPath().target_velocity(ZERO3, ZERO3, jnp.int32(0)), ValueError,
         r"t must be floating point"),
    Case("paths.get_path", "unknown", lambda: P.get_path("straight"), ValueError,
         r"unknown path 'straight'; choose one of 'bridge', 'condot', 'gaussian', 'vp'"),
    Case("paths.get_path", "not a str", lambda: P.get_path(["vp"]), ValueError, r"unknown path"),
    Case("paths.get_path", "unknown kwarg", lambda: P.get_path("vp", sigma=0.1), ValueError,
         r"path 'vp' takes no arguments; got unknown argument\(s\) sigma"),
    Case("paths.get_path", "wrong kwarg", lambda: P.get_path("condot", sigma=0.1), ValueError,
         r"path 'condot' takes sigma_min; got unknown argument\(s\) sigma"),
    Case("paths.get_path", "bad value", lambda: P.get_path("bridge", sigma=0.0), ValueError, r"sigma " + FINITE),
    # --- time samplers ---------------------------------------------------------------------
    Case("time_sampling.UniformTime", "n=0", lambda: T.UniformTime()(KEY, 0), ValueError,
         r"n must be an int >= 1, got 0"),
    Case("time_sampling.UniformTime", "n=True", lambda: T.UniformTime()(KEY, True), ValueError,
         r"n must be an int >= 1, got True"),
    Case("time_sampling.UniformTime", "n=2.0", lambda: T.UniformTime()(KEY, 2.0), ValueError,
         r"n must be an int >= 1, got 2.0"),
    Case("time_sampling.UniformTime", "int dtype", lambda: T.UniformTime()(KEY, 2, jnp.int32), ValueError,
         r"dtype must be a floating dtype"),
    Case("time_sampling.LogitNormalTime", "scale=0", lambda: T.LogitNormalTime(scale=0.0), ValueError,
         r"scale must be a finite number in \(0, inf\), got 0.0"),
    Case("time_sampling.LogitNormalTime", "scale<0", lambda: T.LogitNormalTime(scale=-1.0), ValueError,
         r"scale " + FINITE),
    Case("time_sampling.LogitNormalTime", "scale=nan", lambda: T.LogitNormalTime(scale=NAN), ValueError,
         r"scale " + FINITE),
    Case("time_sampling.LogitNormalTime", "loc=nan", lambda: T.LogitNormalTime(loc=NAN), ValueError,
         r"loc must be a finite number in \(-inf, inf\), got nan"),
    Case("time_sampling.LogitNormalTime", "loc=inf", lambda: T.LogitNormalTime(loc=INF), ValueError, r"loc " + FINITE),
    Case("time_sampling.LogitNormalTime", "n=-1", lambda: T.LogitNormalTime()(KEY, -1), ValueError,
         r"n must be an int >= 1"),
    Case("time_sampling.BetaTime", "a<0", lambda: T.BetaTime(-1.0, 1.0), ValueError,
         r"a must be a finite number in \(0, inf\), got -1.0"),
    Case("time_sampling.BetaTime", "b=0", lambda: T.BetaTime(1.0, 0.0), ValueError, r"b " + FINITE + r" \(0, inf\)"),
    Case("time_sampling.BetaTime", "a=nan", lambda: T.BetaTime(NAN, 1.0), ValueError, r"a " + FINITE),
    Case("time_sampling.BetaTime", "b=inf", lambda: T.BetaTime(1.0, INF), ValueError, r"b " + FINITE),
    Case("time_sampling.BetaTime", "n=array", lambda: T.BetaTime()(KEY, jnp.int32(3)), ValueError,
         r"n must be an int >= 1"),
    Case("time_sampling.get_time_sampler", "unknown", lambda: T.get_time_sampler("cosine"), ValueError,
         r"unknown time sampler 'cosine'; choose one of 'beta', 'logit-normal', 'mode', 'shifted', 'uniform'"),
    Case("time_sampling.get_time_sampler", "unknown kwarg", lambda: T.get_time_sampler("uniform", loc=0.3),
         ValueError, r"time sampler 'uniform' takes no arguments; got unknown argument\(s\) loc"),
    Case("time_sampling.get_time_sampler", "wrong kwarg", lambda: T.get_time_sampler("beta", alpha=2.0),
         ValueError, r"time sampler 'beta' takes a, b; got unknown argument\(s\) alpha"),
    Case("time_sampling.get_time_sampler", "bad value", lambda: T.get_time_sampler("logit-normal", scale=0.0),
         ValueError, r"scale " + FINITE),
    # --- losses ----------------------------------------------------------------------------
    Case("losses.call_field", "not callable", lambda: L.call_field(None, X, TB), TypeError,
         r"vector_field must be a function"),
    Case("losses.cfm_loss", "path=None", lambda: _loss(path=None), TypeError,
         r"path must be an instance of fm.paths.AbstractPath \(e.g. fm.paths.CondOTPath\(\)\), got NoneType"),
    Case("losses.cfm_loss", "path=class", lambda: _loss(path=P.CondOTPath), TypeError,
         r"path must be an instance of fm.paths.AbstractPath"),
    Case("losses.cfm_loss", "coupling=str", lambda: _loss(coupling="exact"), TypeError,
         r"coupling must be an instance of fm.couplings.AbstractCoupling.*got str"),
    Case("losses.cfm_loss", "time_sampler=fn", lambda: _loss(time_sampler=lambda k, n: jnp.zeros(n)), TypeError,
         r"time_sampler must be an instance of fm.time_sampling.AbstractTime"),
    Case("losses.cfm_loss", "weight=3", lambda: _loss(weight=3.0), TypeError,
         r"weight must be None or a function t -> \(B,\) weights"),
    Case("losses.cfm_loss", "field=None", lambda: _loss(vector_field=None), TypeError,
         r"vector_field must be a function"),
    Case("losses.cfm_loss", "labels (B, 1)", lambda: _loss(cond=jnp.zeros((4, 1), jnp.int32)), ValueError,
         r"integer labels must have shape \(4,\), got a leaf of cond0 of shape \(4, 1\)"),
    Case("losses.cfm_loss", "labels of wrong length", lambda: _loss(cond=jnp.zeros(3, jnp.int32)), ValueError,
         r"leading dimension 4 .*got a leaf of shape \(3,\)"),
    Case("losses.cfm_loss", "int data", lambda: _loss(x0=jnp.zeros((4, 2), jnp.int32)), ValueError,
         r"x0 must be floating point"),
    Case("losses.pair_batch", "coupling=None", lambda: L.pair_batch(KEY, X, X, coupling=None), TypeError,
         r"coupling must be an instance of fm.couplings.AbstractCoupling"),
    Case("losses.pair_batch", "cond length",
         lambda: L.pair_batch(KEY, X, X, coupling=fm.couplings.IndependentCoupling(), cond=jnp.zeros((5, 2))),
         ValueError, r"leading dimension 4"),
    Case("losses.pair_batch", "shapes",
         lambda: L.pair_batch(KEY, X, jnp.zeros((4, 3)), coupling=fm.couplings.IndependentCoupling()),
         ValueError, r"x0 and x1 must have the same shape, got \(4, 2\) and \(4, 3\)"),
    Case("losses.paired_cfm_loss", "path=str", lambda: _paired(path="condot"), TypeError,
         r"path must be an instance of fm.paths.AbstractPath"),
    Case("losses.paired_cfm_loss", "time_sampler=class", lambda: _paired(time_sampler=T.UniformTime), TypeError,
         r"time_sampler must be an instance of fm.time_sampling.AbstractTime"),
    Case("losses.paired_cfm_loss", "index shape", lambda: _paired(index=jnp.arange(3)), ValueError,
         r"index must be integer example positions of shape \(4,\), got shape \(3,\)"),
    Case("losses.paired_cfm_loss", "float index", lambda: _paired(index=jnp.zeros(4)), ValueError,
         r"index must be integer .* dtype float32"),
    Case("losses.paired_cfm_loss", "weight shape", lambda: _paired(weight=lambda t: t[:2]), ValueError,
         r"weight\(t\) must return shape \(4,\), got \(2,\)"),
    Case("losses.per_example_keys", "2-D index", lambda: L.per_example_keys(KEY, jnp.zeros((2, 2), jnp.int32)),
         ValueError, r"index must be integer example positions of shape \(B,\), got shape \(2, 2\)"),
    Case("losses.per_example_keys", "float index", lambda: L.per_example_keys(KEY, jnp.zeros(3)), ValueError,
         r"dtype float32"),
    Case("losses.regress", "sample=tuple", lambda: L.regress(ZERO_FIELD, (TB, X, X)), TypeError,
         r"sample must be a ConditionalSample"),
    Case("losses.regress", "weight=str", lambda: L.regress(ZERO_FIELD, _sample(), weight="uniform"), TypeError,
         r"weight must be None or a function"),
    Case("losses.regress", "field output", lambda: L.regress(lambda x, t: x[:, :1], _sample()), ValueError,
         r"the vector field returned shape \(4, 1\), expected \(4, 2\)"),
    Case("losses.sample_conditional", "path=None", lambda: _sample(path=None), TypeError,
         r"path must be an instance of fm.paths.AbstractPath"),
    Case("losses.sample_conditional", "time_sampler", lambda: _sample(time_sampler=P.CondOTPath()), TypeError,
         r"time_sampler must be an instance of fm.time_sampling.AbstractTime.*got CondOTPath"),
    Case("losses.sample_conditional", "index length", lambda: _sample(index=jnp.arange(5)), ValueError,
         r"index must be integer example positions of shape \(4,\)"),
    Case("losses.sample_conditional", "empty batch", lambda: L.sample_conditional(
        KEY, jnp.zeros((0, 2)), jnp.zeros((0, 2)), path=P.CondOTPath()), ValueError, r"empty"),
    # --- models ----------------------------------------------------------------------------
    Case("models.MLP", "dim=0", lambda: M.MLP(0, rngs=nnx.Rngs(0)), ValueError, r"dim must be an int >= 1, got 0"),
    Case("models.MLP", "dim=True", lambda: M.MLP(True, rngs=nnx.Rngs(0)), ValueError,
         r"dim must be an int >= 1, got True"),
    Case("models.MLP", "hidden=()", lambda: M.MLP(2, (), rngs=nnx.Rngs(0)), ValueError,
         r"hidden must be a non-empty sequence of ints >= 1, got \(\)"),
    Case("models.MLP", "hidden has 0", lambda: M.MLP(2, (16, 0), rngs=nnx.Rngs(0)), ValueError,
         r"hidden must be a non-empty sequence of ints >= 1"),
    Case("models.MLP", "hidden=int", lambda: M.MLP(2, 16, rngs=nnx.Rngs(0)), ValueError, r"hidden must be"),
    Case("models.MLP", "hidden float", lambda: M.MLP(2, (16.0,), rngs=nnx.Rngs(0)), ValueError, r"hidden must be"),
    Case("models.MLP", "activation name", lambda: M.MLP(2, activation="swish", rngs=nnx.Rngs(0)), ValueError,
         r"unknown activation 'swish'; choose one of"),
    Case("models.MLP", "activation=int", lambda: M.MLP(2, activation=3, rngs=nnx.Rngs(0)), TypeError,
         r"activation must be a name in .* or a function"),
    Case("models.MLP", "time_frequencies<0", lambda: M.MLP(2, time_frequencies=-1, rngs=nnx.Rngs(0)), ValueError,
         r"time_frequencies must be an int >= 0"),
    Case("models.MLP", "num_classes=0", lambda: M.MLP(2, num_classes=0, rngs=nnx.Rngs(0)), ValueError,
         r"num_classes must be an int >= 1, got 0"),
    Case("models.MLP", "cond_dim=1.5", lambda: M.MLP(2, cond_dim=1.5, rngs=nnx.Rngs(0)), ValueError,
         r"cond_dim must be an int >= 1"),
    Case("models.MLP", "both conds", lambda: M.MLP(2, num_classes=3, cond_dim=2, rngs=nnx.Rngs(0)), ValueError,
         r"not both"),
    Case("models.MLP", "class_embed_dim=0", lambda: M.MLP(2, num_classes=3, class_embed_dim=0, rngs=nnx.Rngs(0)),
         ValueError, r"class_embed_dim must be an int >= 1"),
    Case("models.MLP", "rngs=int", lambda: M.MLP(2, rngs=0), TypeError, r"rngs must be an nnx.Rngs"),
    Case("models.MLP", "label -1", lambda: _mlp_call(jnp.array([0, 1, 2, -1])), ValueError,
         r"cond must lie in \[0, 4\), got values from -1 to 2"),
    Case("models.MLP", "label K+1", lambda: _mlp_call(jnp.array([0, 1, 3, 4])), ValueError,
         r"cond must lie in \[0, 4\), got values from 0 to 4"),
    Case("models.MLP", "label under jit", lambda: _jit_call(_mlp_k3(), X, TB, jnp.array([0, 1, 5, 2])),
         RuntimeError, r"cond must lie in \[0, 4\) \(label 3 is the null class\)"),
    Case("models.MLP", "negative label under jit", lambda: _jit_call(_mlp_k3(), X, TB, jnp.array([0, -2, 1, 2])),
         RuntimeError, r"cond must lie in \[0, 4\)"),
    Case("models.MLP", "float labels", lambda: _mlp_call(jnp.array([0.0, 1.0, 2.0, 1.0])), ValueError,
         r"integer labels of shape \(4,\) as cond, got shape \(4,\) and dtype float32.*cond_dim"),
    Case("models.MLP", "labels (B, 1)", lambda: _mlp_call(jnp.zeros((4, 1), jnp.int32)), ValueError,
         r"integer labels of shape \(4,\) as cond, got shape \(4, 1\)"),
    Case("models.MLP", "int x", lambda: M.MLP(2, (4,), rngs=nnx.Rngs(0))(jnp.zeros((4, 2), jnp.int32), TB),
         ValueError, r"x must be floating point, got dtype int32"),
    Case("models.UNet", "in_channels=0", lambda: M.UNet(0, rngs=nnx.Rngs(0)), ValueError,
         r"in_channels must be an int >= 1, got 0"),
    Case("models.UNet", "channels=True", lambda: M.UNet(1, channels=True, rngs=nnx.Rngs(0)), ValueError,
         r"channels must be an int >= 1, got True"),
    Case("models.UNet", "channel_mult=()", lambda: M.UNet(1, channel_mult=(), rngs=nnx.Rngs(0)), ValueError,
         r"channel_mult must be a non-empty sequence of ints >= 1"),
    Case("models.UNet", "channel_mult 0", lambda: M.UNet(1, channel_mult=(1, 0), rngs=nnx.Rngs(0)), ValueError,
         r"channel_mult must be"),
    Case("models.UNet", "channel_mult 1.5", lambda: M.UNet(1, channel_mult=(1, 1.5), rngs=nnx.Rngs(0)), ValueError,
         r"channel_mult must be"),
    Case("models.UNet", "num_res_blocks=0", lambda: M.UNet(1, num_res_blocks=0, rngs=nnx.Rngs(0)), ValueError,
         r"num_res_blocks must be an int >= 1"),
    Case("models.UNet", "num_heads divides", lambda: M.UNet(1, channels=4, channel_mult=(1, 2), num_heads=3,
                                                            rngs=nnx.Rngs(0)), ValueError,
         r"num_heads must divide the lowest-resolution width .* = 8, got num_heads=3"),
    Case("models.UNet", "num_heads=0", lambda: M.UNet(1, num_heads=0, rngs=nnx.Rngs(0)), ValueError,
         r"num_heads must be an int >= 1"),
    Case("models.UNet", "num_groups=0", lambda: M.UNet(1, num_groups=0, rngs=nnx.Rngs(0)), ValueError,
         r"num_groups must be an int >= 1"),
    Case("models.UNet", "num_classes<0", lambda: M.UNet(1, num_classes=-1, rngs=nnx.Rngs(0)), ValueError,
         r"num_classes must be an int >= 1"),
    Case("models.UNet", "rngs=None", lambda: M.UNet(1, rngs=None), TypeError, r"rngs must be an nnx.Rngs"),
    Case("models.UNet", "label K+1", lambda: _unet_k3()(IMG, TI, cond=jnp.array([4, 0])), ValueError,
         r"cond must lie in \[0, 4\), got values from 0 to 4"),
    Case("models.UNet", "negative label", lambda: _unet_k3()(IMG, TI, cond=jnp.array([-1, 0])), ValueError,
         r"cond must lie in \[0, 4\), got values from -1 to 0"),
    Case("models.UNet", "float labels", lambda: _unet_k3()(IMG, TI, cond=jnp.array([0.0, 1.0])), ValueError,
         r"integer labels of shape \(2,\).*dtype float32.*cond_dim"),
    Case("models.UNet", "int images", lambda: _unet_k3()(jnp.zeros((2, 4, 4, 1), jnp.int32), TI), ValueError,
         r"x must be floating point"),
    Case("models.DigitClassifier", "image_shape 2-D", lambda: M.DigitClassifier((8, 8), 10, rngs=nnx.Rngs(0)),
         ValueError, r"image_shape must be \(H, W, C\)"),
    Case("models.DigitClassifier", "image_shape 0", lambda: M.DigitClassifier((8, 0, 1), 10, rngs=nnx.Rngs(0)),
         ValueError, r"image_shape must be"),
    Case("models.DigitClassifier", "num_classes=0", lambda: M.DigitClassifier((8, 8, 1), 0, rngs=nnx.Rngs(0)),
         ValueError, r"num_classes must be an int >= 1"),
    Case("models.DigitClassifier", "width=0", lambda: M.DigitClassifier((8, 8, 1), 10, width=0, rngs=nnx.Rngs(0)),
         ValueError, r"width must be an int >= 1"),
    Case("models.DigitClassifier", "rngs", lambda: M.DigitClassifier((8, 8, 1), 10, rngs=jax.random.key(0)),
         TypeError, r"rngs must be an nnx.Rngs"),
    Case("models.sinusoidal_embedding", "dim odd", lambda: M.sinusoidal_embedding(TB, 3), ValueError,
         r"dim \(the time embedding size\) must be even, got 3"),
    Case("models.sinusoidal_embedding", "dim=0", lambda: M.sinusoidal_embedding(TB, 0), ValueError,
         r"dim must be an int >= 2, got 0"),
    Case("models.sinusoidal_embedding", "scale=0", lambda: M.sinusoidal_embedding(TB, 4, scale=0.0), ValueError,
         r"scale must be a finite number in \(0, inf\)"),
    Case("models.sinusoidal_embedding", "t 2-D", lambda: M.sinusoidal_embedding(X, 4), ValueError,
         r"t must be a float array of shape \(B,\), got shape \(4, 2\)"),
    Case("models.time_features", "K<0", lambda: M.time_features(TB, -1), ValueError,
         r"num_frequencies must be an int >= 0, got -1"),
    Case("models.time_features", "K float", lambda: M.time_features(TB, 2.0), ValueError,
         r"num_frequencies must be an int >= 0"),
    Case("models.time_features", "int t", lambda: M.time_features(jnp.arange(3), 2), ValueError,
         r"t must be a float array of shape \(B,\), got shape \(3,\) and dtype int32"),
    # --- reflow ----------------------------------------------------------------------------
    Case("reflow.GridTime", "k=0", lambda: R.GridTime(0), ValueError, r"k must be an int >= 1, got 0"),
    Case("reflow.GridTime", "k=True", lambda: R.GridTime(True), ValueError, r"k must be an int >= 1, got True"),
    Case("reflow.GridTime", "k=2.5", lambda: R.GridTime(2.5), ValueError, r"k must be an int >= 1"),
    Case("reflow.GridTime", "n=0", lambda: R.GridTime(2)(KEY, 0), ValueError, r"n must be an int >= 1"),
    Case("reflow.GridTime", "int dtype", lambda: R.GridTime(2)(KEY, 4, jnp.int32), ValueError,
         r"dtype must be a floating dtype"),
    Case("reflow.generate_pairs", "n=0", lambda: R.generate_pairs(ZERO_FIELD, KEY, X, 0), ValueError,
         r"n must be an int >= 1, got 0"),
    Case("reflow.generate_pairs", "batch_size=True", lambda: R.generate_pairs(ZERO_FIELD, KEY, X, 2,
                                                                             batch_size=True), ValueError,
         r"batch_size must be an int >= 1, got True"),
    Case("reflow.generate_pairs", "num_steps=0", lambda: R.generate_pairs(ZERO_FIELD, KEY, X, 2, num_steps=0),
         ValueError, r"num_steps must be an int >= 1"),
    Case("reflow.generate_pairs", "field=None", lambda: R.generate_pairs(None, KEY, X, 2), TypeError,
         r"vector_field must be a function"),
    Case("reflow.generate_pairs", "too few rows", lambda: R.generate_pairs(ZERO_FIELD, KEY, X, 5), ValueError,
         r"an array source needs at least n=5 rows"),
    Case("reflow.generate_pairs", "int source", lambda: R.generate_pairs(ZERO_FIELD, KEY, np.zeros((4, 2), int), 2),
         ValueError, r"source must be a floating-point array"),
    Case("reflow.paired_sampler", "shapes", lambda: R.paired_sampler(X, jnp.zeros((3, 2))), ValueError,
         r"same shape"),
    Case("reflow.paired_sampler", "nan pairs", lambda: R.paired_sampler(X, X.at[2, 1].set(NAN)), ValueError,
         r"x1 contains 1 non-finite value \(NaN or inf\); first in row 2"),
    Case("reflow.paired_sampler", "n=0", lambda: R.paired_sampler(X, X)(KEY, 0), ValueError,
         r"n must be an int >= 1"),
    Case("reflow.fit_pairs", "step=None", lambda: R.fit_pairs(None, None, KEY, X, X, num_steps=1, batch_size=2),
         TypeError, r"step must be a function"),
    Case("reflow.fit_pairs", "num_steps<0", lambda: R.fit_pairs(ZERO_FIELD, None, KEY, X, X, num_steps=-1,
                                                                batch_size=2), ValueError,
         r"num_steps must be an int >= 0, got -1"),
    Case("reflow.fit_pairs", "batch_size=0", lambda: R.fit_pairs(ZERO_FIELD, None, KEY, X, X, num_steps=1,
                                                                 batch_size=0), ValueError,
         r"batch_size must be an int >= 1, got 0"),
    Case("reflow.fit_pairs", "progress=1", lambda: R.fit_pairs(ZERO_FIELD, None, KEY, X, X, num_steps=1,
                                                               batch_size=2, progress=1), ValueError,
         r"progress must be True or False"),
    Case("reflow.reflow", "num_steps=True", lambda: R.reflow(None, KEY, X, X, num_steps=True), ValueError,
         r"num_steps must be an int >= 0, got True"),
    Case("reflow.reflow", "chunk_size=0", lambda: R.reflow(None, KEY, X, X, num_steps=2, chunk_size=0), ValueError,
         r"chunk_size must be an int >= 1"),
    Case("reflow.reflow", "time_sampler", lambda: R.reflow(None, KEY, X, X, num_steps=2, time_sampler="uniform"),
         TypeError, r"time_sampler must be an instance of fm.time_sampling.AbstractTime"),
    Case("reflow.reflow", "optimizer", lambda: R.reflow(None, KEY, X, X, num_steps=2, optimizer=optax.adam),
         TypeError, r"optimizer must be None or an optax GradientTransformation"),
    Case("reflow.reflow", "inf pairs", lambda: R.reflow(None, KEY, X.at[0, 0].set(INF), X, num_steps=2),
         ValueError, r"x0 contains 1 non-finite value"),
    Case("reflow.distill", "euler_steps=0", lambda: R.distill(None, KEY, X, X, euler_steps=0, num_steps=2),
         ValueError, r"euler_steps must be an int >= 1, got 0"),
    Case("reflow.distill", "euler_steps=1.5", lambda: R.distill(None, KEY, X, X, euler_steps=1.5, num_steps=2),
         ValueError, r"euler_steps must be an int >= 1"),
    Case("reflow.distill", "batch_size<0", lambda: R.distill(None, KEY, X, X, num_steps=2, batch_size=-4),
         ValueError, r"batch_size must be an int >= 1, got -4"),
]

EXEMPT = {
    "paths.AbstractPath": "an abstract base class (no constructor values)",
    "paths.AbstractAffinePath": "an abstract base class (no constructor values)",
    "paths.AbstractSchedule": "an abstract base class (no constructor values)",
    "paths.PATHS": "a constant (the name -> class table of get_path)",
    "paths.CondOTSchedule": "no hyperparameters; its t is checked by the affine path that evaluates it",
    "paths.CosineSchedule": "no hyperparameters; its t is checked by the affine path that evaluates it",
    "paths.LinearVPSchedule": "no hyperparameters; its t is checked by the affine path that evaluates it",
    "time_sampling.AbstractTime": "an abstract base class (no constructor values)",
    "losses.ConditionalSample": "a result tuple built by sample_conditional",
    "models.ACTIVATIONS": "a constant (the activation name table)",
}
