r"""Generation with discrete flow matching: Euler steps of the continuous-time Markov chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_positive_int, check_real, fail_if, is_concrete
from flowjax_fm.discrete._loss import check_path
from flowjax_fm.discrete._path import _EPS, MixtureDiscretePath, _check_source_probs, check_tokens
from flowjax_fm.sampling._guidance import _broadcast_null

__all__ = ["sample"]

_NOT_FINITE = (
    "fm.discrete.sample: the posterior of logits_fn is not finite (NaN or inf logits, or all -inf "
    "in a row) at some step; no token can be drawn from it"
)


def _check_corrector(corrector) -> None:
    if corrector is None or callable(corrector):
        return
    check_real("corrector", corrector, 0.0)


def _null_for(logits_fn, null_cond, cond, batch):
    if null_cond is None:
        null_cond = getattr(logits_fn, "null_cond", None)
        if null_cond is None:
            raise ValueError(
                "guidance_scale needs the null condition: pass null_cond (a label, one example's "
                "condition, or a callable batch -> null condition), or a model with a null_cond method"
            )
    null = null_cond(batch) if callable(null_cond) else null_cond
    return _broadcast_null(cond, null, batch)


def _categorical(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One draw per row of ``probs`` (``(..., V)``, nonnegative) by inverting the cumulative sum.

    One uniform per token (the Gumbel trick would take ``V``). A value of zero probability is
    never drawn: ``u`` in ``[cdf_{k-1}, cdf_k)`` selects ``k``, and a ``u`` that rounds up to the
    total falls back to the last value of positive probability.
    """
    probs = jnp.maximum(probs, 0.0)
    cdf = jnp.cumsum(probs, axis=-1)
    u = jax.random.uniform(key, probs.shape[:-1] + (1,), dtype=probs.dtype) * cdf[..., -1:]
    index = jnp.sum(cdf <= u, axis=-1)
    vocab = probs.shape[-1]
    last = vocab - 1 - jnp.argmax(jnp.flip(probs > 0, axis=-1), axis=-1)
    return jnp.minimum(index, last)


def sample(
    logits_fn: Callable,
    key: jax.Array,
    x0: jax.Array,
    *,
    path: MixtureDiscretePath,
    num_steps: int,
    corrector: float | Callable | None = None,
    source_probs: jax.Array | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    cond: Any = None,
    guidance_scale: float | None = None,
    null_cond: Any = None,
    temperature: float = 1.0,
) -> jax.Array:
    r"""Generate tokens by simulating the CTMC of a discrete flow model (Euler steps).

    With :math:`p_{1|t}^i = \mathrm{softmax}(\text{logits}^i / T)` the model's posterior at
    temperature :math:`T`, the probability velocity of the mixture path, plus an optional
    divergence-free corrector of weight :math:`c_t \ge 0` and source :math:`p_0`, is, off the
    current token :math:`y \neq x_t^i`,

    .. math::
       u_t^i(y \mid x_t) = (1 + c_t)\,\frac{\dot\kappa_t}{1 - \kappa_t}\, p_{1|t}^i(y \mid x_t)
          + c_t\, \frac{\dot\kappa_t}{\kappa_t}\, p_0(y),
       \qquad u_t^i(x_t^i \mid x_t) = -\sum_{y \neq x_t^i} u_t^i(y \mid x_t).

    (:math:`c_t = 0` is the plain velocity
    :math:`\frac{\dot\kappa_t}{1-\kappa_t}[p_{1|t} - \delta_{x_t}]`; the corrector adds
    forward-backward noise that leaves :math:`p_t` unchanged: extra jumps back to the
    source, "remasking" for a mask source, which lets late steps fix early mistakes.)

    One Euler step of size :math:`h = (t_1 - t_0) / N` draws every token independently from

    .. math:: x_{t+h}^i \sim \delta_{x_t^i}(\cdot) + h\, u_t^i(\cdot \mid x_t),

    with the rates scaled down to :math:`1 / \sum_{y \ne x_t^i} u_t^i(y)` where
    :math:`h \sum u > 1` (the stay probability is then 0). When ``t1 == 1`` the last step
    instead draws :math:`x_1^i \sim p_{1|t}^i` directly (there :math:`\kappa \to 1` and the
    rates diverge), as Meta's ``MixtureDiscreteEulerSolver`` does. ``N`` steps are ``N``
    evaluations of ``logits_fn`` (``2N`` rows wide with guidance).

    Classifier-free guidance (``guidance_scale=w``) mixes the conditional and unconditional
    velocities, :math:`u^w = w\, u(\cdot \mid x_t, c) + (1 - w)\, u(\cdot \mid x_t,
    \varnothing)`, and clips the result to a valid rate (off-diagonal entries at 0). Since the
    velocity is affine in the posterior with weights that sum to one, this is the velocity of
    the mixed posterior :math:`\tilde p = w\, p_{1|t}(\cdot \mid x_t, c) + (1 - w)\,
    p_{1|t}(\cdot \mid x_t, \varnothing)`; the last step draws from :math:`\max(\tilde p, 0)`
    renormalised. ``w = 1`` is the conditional sampler, ``w = 0`` the unconditional one. Both
    posteriors come from one call of ``logits_fn`` on the doubled batch ``[x_t; x_t]`` with
    conditions ``[c; null]``.

    The loop is a ``jax.lax.fori_loop`` with per-step keys ``fold_in(key, step)``: the whole
    sampler can be wrapped in ``jax.jit`` and a fixed key gives fixed tokens.

    Args:
      logits_fn: ``logits_fn(x_t, t) -> (B, L, V)`` float logits of :math:`p_{1|t}`, with
        ``x_t`` integer tokens ``(B, L)`` and ``t`` of shape ``(B,)``; called as
        ``logits_fn(x_t, t, cond=c)`` when ``cond`` is given. A Flax NNX model such as
        :class:`~flowjax_fm.models.TokenTransformer` can be passed as is.
      key: a ``jax.random.key``.
      x0: source tokens ``(B, L)`` (or ``(B, *event)``), integers in ``[0, V)``: from
        :func:`uniform_source` or :func:`mask_source`.
      path: the :class:`MixtureDiscretePath` the model was trained on.
      num_steps: ``N``, an int >= 1.
      corrector: ``None`` (no corrector), a float :math:`c \ge 0`, or a callable
        ``t -> c_t`` of a scalar time (a coefficient that vanishes at ``t = 0``, such as
        ``lambda t: 10 * t * (1 - t)``, avoids the :math:`\dot\kappa_t / \kappa_t` spike
        there; :math:`\kappa_t` is clipped at 1e-6).
      source_probs: :math:`p_0`, a float array ``(V,)``; required with a ``corrector``
        (``jnp.full(V, 1 / V)`` for the uniform source, ``jax.nn.one_hot(m, V)`` for the mask).
      t0, t1: the time span, floats with ``0 <= t0 < t1 <= 1``.
      cond: an optional condition (labels ``(B,)``, or any pytree whose leaves have leading
        dimension ``B``) passed to ``logits_fn``.
      guidance_scale: ``w``, a finite float, or ``None`` for no guidance; needs ``cond``.
      null_cond: with guidance, the null condition: a label (e.g. ``num_classes``), one
        example's condition, a batch of them, or a callable ``batch -> null condition``; by
        default ``logits_fn.null_cond`` (the method of the models in ``fm.models``).
      temperature: :math:`T > 0` dividing the logits (``< 1`` sharpens).

    Returns:
      Tokens of ``x0``'s shape and dtype at ``t1``.

    Raises:
      TypeError: ``logits_fn`` not callable; ``path`` not a ``MixtureDiscretePath``.
      ValueError: ``x0`` not integer tokens ``(B, ...)`` in ``[0, V)`` (when concrete);
        logits of the wrong shape or dtype (quoting it, probed once with ``jax.eval_shape``);
        ``num_steps`` not an int >= 1; ``t0``, ``t1``, ``temperature``, ``corrector`` or
        ``guidance_scale`` out of range; a corrector without ``source_probs`` or with
        ``source_probs`` not ``(V,)`` probabilities; guidance without ``cond`` or without a
        null condition.
      RuntimeError: at run time (eagerly or under ``jit``), a posterior that is not finite
        (NaN or inf logits, or a row of all -inf): no token can be drawn from it.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> path = fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule())
      >>> target = jnp.log(jnp.array([0.0, 0.0, 1.0, 0.0]))  # all mass on token 2
      >>> logits_fn = lambda x, t: jnp.broadcast_to(target, (*x.shape, 4))
      >>> x0 = fm.discrete.uniform_source(jax.random.key(0), (2, 3), 4)
      >>> fm.discrete.sample(logits_fn, jax.random.key(1), x0, path=path, num_steps=8).tolist()
      [[2, 2, 2], [2, 2, 2]]

    References:
      Gat et al. 2024, Discrete Flow Matching (CTMC sampling, corrector); Campbell et al.
      2024, Generative Flows on Discrete State-Spaces; Ho and Salimans 2022, Classifier-Free
      Diffusion Guidance; Nisonoff et al. 2024, Unlocking Guidance for Discrete State-Space
      Diffusion and Flow Models.
    """
    if not callable(logits_fn):
        raise TypeError(
            f"logits_fn must be callable as logits_fn(x_t, t) -> (B, L, V), got {type(logits_fn).__name__}"
        )
    check_path(path)
    shape = check_tokens("x0", x0)
    batch = shape[0]
    num_steps = check_positive_int("num_steps", num_steps)
    check_real("t0", t0, 0.0, 1.0)
    check_real("t1", t1, 0.0, 1.0)
    if is_concrete((t0, t1)) and not float(np.asarray(t0)) < float(np.asarray(t1)):
        raise ValueError(f"t0 must be < t1, got t0={t0!r} and t1={t1!r}")
    check_real("temperature", temperature, 0.0, low_open=True)
    _check_corrector(corrector)
    guided = guidance_scale is not None
    if guided:
        check_real("guidance_scale", guidance_scale)
        if cond is None:
            raise ValueError("guidance_scale needs a condition: pass cond=c (labels or a pytree)")
        null = _null_for(logits_fn, null_cond, cond, batch)
        both_cond = jax.tree.map(lambda c, n: jnp.concatenate([c, n], axis=0), cond, null)

    def call(x, t):
        if guided:
            out = logits_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), cond=both_cond)
        elif cond is not None:
            out = logits_fn(x, t, cond=cond)
        else:
            out = logits_fn(x, t)
        return out

    # probe once: the logits must be (rows, *event, V) floats
    rows = 2 * batch if guided else batch
    probe = jax.eval_shape(call, x0, jnp.zeros((batch,), jnp.float32))
    p_shape = tuple(getattr(probe, "shape", ()))
    p_dtype = getattr(probe, "dtype", None)
    if (
        p_dtype is None
        or not jnp.issubdtype(p_dtype, jnp.floating)
        or len(p_shape) != len(shape) + 1
        or p_shape[:-1] != (rows, *shape[1:])
    ):
        raise ValueError(
            f"logits_fn must return float logits of shape {(rows, *shape[1:], 'V')} for x_t of shape "
            f"{(rows, *shape[1:])}, got shape {p_shape} and dtype {p_dtype}"
        )
    vocab = p_shape[-1]
    check_tokens("x0", x0, vocab_size=vocab)
    if corrector is not None:
        if source_probs is None:
            raise ValueError(
                "a corrector needs the source distribution: pass source_probs, shape (V,) "
                f"= ({vocab},) (jnp.full(V, 1 / V) for a uniform source, one_hot(mask, V) for a mask)"
            )
        p0 = _check_source_probs(source_probs)
        if p0.shape != (vocab,):
            raise ValueError(f"source_probs must have shape (V,) = ({vocab},), got {p0.shape}")
        p0 = p0.astype(jnp.float32)

    t0f = jnp.asarray(t0, jnp.float32)
    h = (jnp.asarray(t1, jnp.float32) - t0f) / num_steps
    lands = jnp.asarray(t1, jnp.float32) >= 1.0

    def posterior(x, t):
        logits = call(x, jnp.full((batch,), t, jnp.float32))
        p = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)) / temperature, axis=-1)
        if not guided:
            return p
        w = jnp.asarray(guidance_scale, p.dtype)
        return w * p[:batch] + (1.0 - w) * p[batch:]

    def step(i, x):
        t = t0f + i * h
        p = jnp.maximum(posterior(x, t), 0.0)  # the clip only acts on a guided (mixed) posterior
        kappa, d_kappa = path.kappa(t)
        rates = d_kappa / jnp.maximum(1.0 - kappa, _EPS) * p
        if corrector is not None:
            c = corrector(t) if callable(corrector) else corrector
            c = jnp.asarray(c, p.dtype)
            rates = (1.0 + c) * rates + c * d_kappa / jnp.maximum(kappa, _EPS) * p0
        current = jax.nn.one_hot(x, vocab, dtype=p.dtype)
        rates = jnp.maximum(rates, 0.0) * (1.0 - current)
        total = jnp.sum(rates, axis=-1, keepdims=True)
        scale = jnp.where(h * total > 1.0, 1.0 / jnp.maximum(total, 1e-30), h)
        jump = scale * rates
        euler = jump + current * (1.0 - jnp.sum(jump, axis=-1, keepdims=True))
        final = p / jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), 1e-30)
        probs = jnp.where(jnp.logical_and(i == num_steps - 1, lands), final, euler)
        probs = fail_if(probs, ~jnp.all(jnp.isfinite(probs)), _NOT_FINITE, throw=True)
        return _categorical(jax.random.fold_in(key, i), probs).astype(x.dtype)

    return jax.lax.fori_loop(0, num_steps, step, x0)
