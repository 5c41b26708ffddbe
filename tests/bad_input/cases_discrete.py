"""Bad inputs of discrete flow matching: ``fm.discrete`` and the token models of ``fm.models``.

Models are built abstractly (``nnx.eval_shape``): their call-time checks run before any
parameter is read, so no initialiser is compiled for a case.
"""

# ruff: noqa: E501  (a table: one case per line reads better than wrapped calls)
from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flowjax_fm as fm
from bad_input import Case

D, M = fm.discrete, fm.models
KEY = jax.random.key(0)
PATH = D.MixtureDiscretePath(fm.paths.CondOTSchedule())
V = 4
TOK = jnp.array([[0, 1, 2], [3, 0, 1]], jnp.int32)  # (B, L) = (2, 3)
T2 = jnp.array([0.25, 0.5])
LOGITS = jnp.zeros((2, 3, V))
GOOD_FN = lambda x, t, cond=None: jnp.zeros((*x.shape, V))  # noqa: E731
SHAPE = r"\(2, 3\)"


def _loss(**kw):
    args = dict(logits=LOGITS, x1=TOK, x_t=TOK, t=T2, path=PATH)
    args.update(kw)
    return D.mixture_kl_loss(args.pop("logits"), args.pop("x1"), args.pop("x_t"), args.pop("t"), **args)


def _sample(**kw):
    args = dict(logits_fn=GOOD_FN, key=KEY, x0=TOK, path=PATH, num_steps=2)
    args.update(kw)
    return D.sample(args.pop("logits_fn"), args.pop("key"), args.pop("x0"), **args)


def _nan_sample():
    # equinox's jit: the run-time error then leads with its message, not XLA's callback banner
    nan_fn = lambda x, t: jnp.full((*x.shape, V), jnp.nan)  # noqa: E731
    return eqx.filter_jit(lambda k: D.sample(nan_fn, k, TOK, path=PATH, num_steps=2))(KEY)


@functools.cache
def _transformer(**kw):
    return nnx.eval_shape(lambda: M.TokenTransformer(V, 3, dim=8, depth=1, heads=2, rngs=nnx.Rngs(0), **kw))


@functools.cache
def _mlp(**kw):
    return nnx.eval_shape(lambda: M.TokenMLP(V, 3, hidden=(8,), rngs=nnx.Rngs(0), **kw))


CASES = [
    # --- the path ------------------------------------------------------------------------------
    Case("discrete.MixtureDiscretePath", "scheduler=int", lambda: D.MixtureDiscretePath(3), TypeError,
         r"scheduler must be an instance of fm.paths.AbstractSchedule.*got int"),
    Case("discrete.MixtureDiscretePath", "scheduler=path", lambda: D.MixtureDiscretePath(fm.paths.CondOTPath()), TypeError,
         r"scheduler must be an instance of fm.paths.AbstractSchedule.*got CondOTPath"),
    Case("discrete.MixtureDiscretePath", "scheduler=class", lambda: D.MixtureDiscretePath(fm.paths.CosineSchedule), TypeError,
         r"scheduler must be an instance"),
    Case("discrete.MixtureDiscretePath", "float tokens", lambda: PATH.sample(KEY, TOK.astype(jnp.float32), TOK, T2), ValueError,
         r"x0 must be integer tokens of shape \(B, L\).*got dtype float32 and shape " + SHAPE),
    Case("discrete.MixtureDiscretePath", "1D tokens", lambda: PATH.sample(KEY, TOK[0], TOK[0], T2), ValueError,
         r"x0 must be integer tokens of shape \(B, L\).*shape \(3,\)"),
    Case("discrete.MixtureDiscretePath", "shape mismatch", lambda: PATH.sample(KEY, TOK, TOK[:, :2], T2), ValueError,
         r"x1 must have shape \(2, 3\), got \(2, 2\)"),
    Case("discrete.MixtureDiscretePath", "negative token", lambda: PATH.sample(KEY, TOK.at[0, 0].set(-1), TOK, T2), ValueError,
         r"x0 must lie in \[0, V\), got tokens from -1 to 3"),
    Case("discrete.MixtureDiscretePath", "t scalar", lambda: PATH.sample(KEY, TOK, TOK, jnp.float32(0.5)), ValueError,
         r"t must be a float array of shape \(2,\) \(one time per row\), got shape \(\)"),
    Case("discrete.MixtureDiscretePath", "t > 1", lambda: PATH.sample(KEY, TOK, TOK, jnp.array([0.5, 1.5])), ValueError,
         r"t must be a finite number in \[0, 1\], got an array containing 1.5"),
    Case("discrete.MixtureDiscretePath", "t int", lambda: PATH.sample(KEY, TOK, TOK, jnp.array([0, 1])), ValueError,
         r"t must be a float array of shape \(2,\).*dtype int32"),
    Case("discrete.MixtureDiscretePath", "velocity logits shape", lambda: PATH.posterior_to_velocity(LOGITS[:, :2], TOK, T2), ValueError,
         r"logits must be a float array of shape \(\*tokens.shape, V\) = \(2, 3, 'V'\), got shape \(2, 2, 4\)"),
    Case("discrete.MixtureDiscretePath", "velocity token >= V", lambda: PATH.posterior_to_velocity(LOGITS[..., :3], TOK, T2), ValueError,
         r"x_t must lie in \[0, 3\), got tokens from 0 to 3"),
    Case("discrete.MixtureDiscretePath", "source_probs sum", lambda: PATH.conditional_probs(TOK, T2, jnp.full(V, 0.3)), ValueError,
         r"source_probs must be nonnegative and sum to 1, got sum 1.2"),
    Case("discrete.MixtureDiscretePath", "source_probs 2D", lambda: PATH.conditional_probs(TOK, T2, jnp.full((1, V), 0.25)), ValueError,
         r"source_probs must be a float array of shape \(V,\), got shape \(1, 4\)"),
    # --- sources ------------------------------------------------------------------------------------
    Case("discrete.uniform_source", "vocab_size=0", lambda: D.uniform_source(KEY, (2, 3), 0), ValueError,
         r"vocab_size must be an int >= 1, got 0"),
    Case("discrete.uniform_source", "vocab_size=2.5", lambda: D.uniform_source(KEY, (2, 3), 2.5), ValueError,
         r"vocab_size must be an int >= 1, got 2.5"),
    Case("discrete.uniform_source", "shape 1D", lambda: D.uniform_source(KEY, (3,), 4), ValueError,
         r"shape must be a tuple \(B, L\) of ints >= 1.*got \(3,\)"),
    Case("discrete.uniform_source", "shape zero", lambda: D.uniform_source(KEY, (2, 0), 4), ValueError,
         r"shape must be a tuple \(B, L\) of ints >= 1.*got \(2, 0\)"),
    Case("discrete.mask_source", "mask_token<0", lambda: D.mask_source((2, 3), -1), ValueError,
         r"mask_token must be an int >= 0, got -1"),
    Case("discrete.mask_source", "shape int", lambda: D.mask_source(3, 4), ValueError,
         r"shape must be a tuple \(B, L\) of ints >= 1.*got 3"),
    # --- the loss -------------------------------------------------------------------------------
    Case("discrete.mixture_kl_loss", "path=affine", lambda: _loss(path=fm.paths.CondOTPath()), TypeError,
         r"path must be an fm.discrete.MixtureDiscretePath.*got CondOTPath"),
    Case("discrete.mixture_kl_loss", "kind", lambda: _loss(kind="kl"), ValueError,
         r"unknown kind 'kl'; choose one of 'generalized_kl', 'cross_entropy'"),
    Case("discrete.mixture_kl_loss", "logits shape", lambda: _loss(logits=jnp.zeros((2, 4, V))), ValueError,
         r"logits must be a float array of shape \(\*tokens.shape, V\) = \(2, 3, 'V'\), got shape \(2, 4, 4\)"),
    Case("discrete.mixture_kl_loss", "logits without V", lambda: _loss(logits=jnp.zeros((2, 3))), ValueError,
         r"logits must be a float array of shape .* got shape \(2, 3\)"),
    Case("discrete.mixture_kl_loss", "int logits", lambda: _loss(logits=jnp.zeros((2, 3, V), jnp.int32)), ValueError,
         r"logits must be a float array.*dtype int32"),
    Case("discrete.mixture_kl_loss", "float x1", lambda: _loss(x1=TOK.astype(jnp.float32), logits=jnp.zeros((2, 3, V))), ValueError,
         r"must be integer tokens.*got dtype float32"),
    Case("discrete.mixture_kl_loss", "x1 >= V", lambda: _loss(x1=TOK.at[1, 1].set(V)), ValueError,
         r"x1 must lie in \[0, 4\), got tokens from 0 to 4"),
    Case("discrete.mixture_kl_loss", "x_t shape", lambda: _loss(x_t=TOK[:1]), ValueError,
         r"x_t must have shape \(2, 3\), got \(1, 3\)"),
    Case("discrete.mixture_kl_loss", "t shape", lambda: _loss(t=jnp.zeros(3)), ValueError,
         r"t must be a float array of shape \(2,\).*got shape \(3,\)"),
    # --- the sampler ----------------------------------------------------------------------------
    Case("discrete.sample", "logits_fn=None", lambda: _sample(logits_fn=None), TypeError,
         r"logits_fn must be callable as logits_fn\(x_t, t\) -> \(B, L, V\), got NoneType"),
    Case("discrete.sample", "path=affine", lambda: _sample(path=fm.paths.CondOTPath()), TypeError,
         r"path must be an fm.discrete.MixtureDiscretePath"),
    Case("discrete.sample", "num_steps=0", lambda: _sample(num_steps=0), ValueError,
         r"num_steps must be an int >= 1, got 0"),
    Case("discrete.sample", "num_steps=2.0", lambda: _sample(num_steps=2.0), ValueError,
         r"num_steps must be an int >= 1, got 2.0"),
    Case("discrete.sample", "logits shape", lambda: _sample(logits_fn=lambda x, t: jnp.zeros((x.shape[0], V))), ValueError,
         r"logits_fn must return float logits of shape \(2, 3, 'V'\) for x_t of shape \(2, 3\), got shape \(2, 4\)"),
    Case("discrete.sample", "int logits", lambda: _sample(logits_fn=lambda x, t: jnp.zeros((*x.shape, V), jnp.int32)), ValueError,
         r"logits_fn must return float logits.*dtype int32"),
    Case("discrete.sample", "float x0", lambda: _sample(x0=TOK.astype(jnp.float32)), ValueError,
         r"x0 must be integer tokens of shape \(B, L\).*dtype float32"),
    Case("discrete.sample", "x0 >= V", lambda: _sample(x0=TOK.at[0, 0].set(V)), ValueError,
         r"x0 must lie in \[0, 4\), got tokens from 0 to 4"),
    Case("discrete.sample", "temperature=0", lambda: _sample(temperature=0.0), ValueError,
         r"temperature must be a finite number in \(0, inf\), got 0.0"),
    Case("discrete.sample", "t0=t1", lambda: _sample(t0=0.5, t1=0.5), ValueError,
         r"t0 must be < t1, got t0=0.5 and t1=0.5"),
    Case("discrete.sample", "t1>1", lambda: _sample(t1=1.5), ValueError,
         r"t1 must be a finite number in \[0, 1\], got 1.5"),
    Case("discrete.sample", "corrector<0", lambda: _sample(corrector=-1.0), ValueError,
         r"corrector must be a finite number in \[0, inf\), got -1.0"),
    Case("discrete.sample", "corrector without p0", lambda: _sample(corrector=1.0), ValueError,
         r"a corrector needs the source distribution: pass source_probs, shape \(V,\) = \(4,\)"),
    Case("discrete.sample", "source_probs shape", lambda: _sample(corrector=1.0, source_probs=jnp.full(3, 1 / 3)), ValueError,
         r"source_probs must have shape \(V,\) = \(4,\), got \(3,\)"),
    Case("discrete.sample", "source_probs negative", lambda: _sample(corrector=1.0, source_probs=jnp.array([1.5, -0.5, 0.0, 0.0])), ValueError,
         r"source_probs must be nonnegative and sum to 1"),
    Case("discrete.sample", "guidance without cond", lambda: _sample(guidance_scale=2.0), ValueError,
         r"guidance_scale needs a condition: pass cond=c"),
    Case("discrete.sample", "guidance without null", lambda: _sample(guidance_scale=2.0, cond=jnp.array([0, 1])), ValueError,
         r"guidance_scale needs the null condition: pass null_cond"),
    Case("discrete.sample", "guidance_scale=nan", lambda: _sample(guidance_scale=float("nan"), cond=jnp.array([0, 1]), null_cond=2), ValueError,
         r"guidance_scale must be a finite number in \(-inf, inf\), got nan"),
    Case("discrete.sample", "null_cond shape", lambda: _sample(guidance_scale=2.0, cond=jnp.array([0, 1]), null_cond=jnp.zeros(3, jnp.int32)), ValueError,
         r"a null_cond leaf must have shape \(\) \(one example\), \(1,\) or \(2,\)"),
    Case("discrete.sample", "NaN logits", _nan_sample, RuntimeError,
         r"the posterior of logits_fn is not finite"),
    # --- token models -----------------------------------------------------------------------------
    Case("models.TokenTransformer", "heads", lambda: M.TokenTransformer(V, 3, dim=10, heads=4, rngs=nnx.Rngs(0)), ValueError,
         r"heads must divide dim, got dim=10 and heads=4"),
    Case("models.TokenTransformer", "vocab_size=1", lambda: M.TokenTransformer(1, 3, rngs=nnx.Rngs(0)), ValueError,
         r"vocab_size must be an int >= 2, got 1"),
    Case("models.TokenTransformer", "length=0", lambda: M.TokenTransformer(V, 0, rngs=nnx.Rngs(0)), ValueError,
         r"length must be an int >= 1, got 0"),
    Case("models.TokenTransformer", "mask_token=V", lambda: M.TokenTransformer(V, 3, mask_token=V, rngs=nnx.Rngs(0)), ValueError,
         r"mask_token must be an int in \[0, 3\], got 4"),
    Case("models.TokenTransformer", "depth=0", lambda: M.TokenTransformer(V, 3, depth=0, rngs=nnx.Rngs(0)), ValueError,
         r"depth must be an int >= 1, got 0"),
    Case("models.TokenTransformer", "rngs", lambda: M.TokenTransformer(V, 3, rngs=0), TypeError,
         r"rngs must be an nnx.Rngs"),
    Case("models.TokenTransformer", "float tokens", lambda: _transformer()(TOK.astype(jnp.float32), T2), ValueError,
         r"TokenTransformer takes integer tokens of shape \(B, 3\), got shape \(2, 3\) and dtype float32"),
    Case("models.TokenTransformer", "length", lambda: _transformer()(TOK[:, :2], T2), ValueError,
         r"TokenTransformer takes integer tokens of shape \(B, 3\), got shape \(2, 2\)"),
    Case("models.TokenTransformer", "token >= V", lambda: _transformer()(TOK.at[0, 0].set(7), T2), ValueError,
         r"x must lie in \[0, 4\) \(vocab_size\), got tokens from 0 to 7"),
    Case("models.TokenTransformer", "t shape", lambda: _transformer()(TOK, jnp.zeros(3)), ValueError,
         r"t must have shape \(2,\), got \(3,\)"),
    Case("models.TokenTransformer", "cond unconditional", lambda: _transformer()(TOK, T2, cond=jnp.array([0, 1])), ValueError,
         r"this TokenTransformer has no conditioning \(num_classes=None\) but got cond"),
    Case("models.TokenTransformer", "label > K", lambda: _transformer(num_classes=2)(TOK, T2, cond=np.array([0, 3])), ValueError,
         r"cond must lie in \[0, 3\), got values from 0 to 3"),
    Case("models.TokenTransformer", "float labels", lambda: _transformer(num_classes=2)(TOK, T2, cond=jnp.array([0.0, 1.0])), ValueError,
         r"this TokenTransformer takes integer labels of shape \(2,\) as cond"),
    Case("models.TokenMLP", "hidden=()", lambda: M.TokenMLP(V, 2, hidden=(), rngs=nnx.Rngs(0)), ValueError,
         r"hidden must be a non-empty sequence of ints >= 1, got \(\)"),
    Case("models.TokenMLP", "embed_dim=0", lambda: M.TokenMLP(V, 2, embed_dim=0, rngs=nnx.Rngs(0)), ValueError,
         r"embed_dim must be an int >= 1, got 0"),
    Case("models.TokenMLP", "num_classes=0", lambda: M.TokenMLP(V, 2, num_classes=0, rngs=nnx.Rngs(0)), ValueError,
         r"num_classes must be an int >= 1, got 0"),
    Case("models.TokenMLP", "negative token", lambda: _mlp()(TOK.at[1, 2].set(-2), T2), ValueError,
         r"x must lie in \[0, 4\) \(vocab_size\), got tokens from -2 to 3"),
    Case("models.TokenMLP", "int t", lambda: _mlp()(TOK, jnp.array([0, 1])), ValueError,
         r"t must be a float array of shape \(B,\), got shape \(2,\) and dtype int32"),
]

EXEMPT = {
    "discrete.LOSS_KINDS": "a constant (the names mixture_kl_loss's kind accepts)",
}
