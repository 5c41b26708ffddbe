r"""Score matching on a stochastic path: the score half of [SF]2M.

A stochastic path puts, for each pair :math:`(x_0, x_1)`, a Gaussian around the line,

.. math:: x_t = \mu_t + \sigma_t \epsilon, \qquad \mu_t = (1 - t)\, x_0 + t\, x_1,
   \qquad \epsilon \sim N(0, I),

with :math:`\sigma_t = \sigma \sqrt{t (1 - t)}` for the Brownian bridge
(:class:`~flowjax_fm.paths.BrownianBridgePath`) and :math:`\sigma_t = \sigma` for the
constant tube (:class:`~flowjax_fm.paths.GaussianPath`). The score of that conditional
Gaussian at :math:`x_t` is

.. math:: \nabla_x \log p_t(x_t \mid x_0, x_1) = -\frac{x_t - \mu_t}{\sigma_t^2}
   = -\frac{\epsilon}{\sigma_t},

and regressing a network onto it (denoising score matching) gives the score of the
marginal :math:`p_t` as the minimiser. With the weight :math:`\lambda(t)` of [SF]2M the
loss is

.. math:: \mathcal L_s = \mathbb E_{t, (x_0, x_1), \epsilon}\,
   \frac{1}{D} \big\| \lambda(t)\, s_\theta(x_t, t) + \epsilon \big\|^2

(a mean over the :math:`D` event elements, then over the batch, as
:func:`~flowjax_fm.losses.cfm_loss`).

**Conventions** (``weighting``):

* ``"lambda"`` (ours, the default): :math:`\lambda(t) = \sigma_t`. The minimiser is the
  score itself, :math:`s_\theta \to \nabla \log p_t`, the quantity
  :func:`~flowjax_fm.sampling.sample_sde` and :func:`~flowjax_fm.sampling.probability_flow`
  take as ``score``.
* ``"torchcfm"``: :math:`\lambda(t) = 2 \sigma_t / \sigma^2` (torchcfm's
  ``SchrodingerBridgeConditionalFlowMatcher.compute_lambda``, there with ``1e-8`` added to
  :math:`\sigma^2`). The minimiser is :math:`\frac{\sigma^2}{2} \nabla \log p_t`, the
  score term of the bridge SDE's drift already scaled: torchcfm samples
  :math:`dx = [v_\theta + s_\theta]\, dt + \sigma\, dW`, which is
  ``sample_sde(lambda x, t: v(x, t) + s(x, t), None, x0, sigma=sigma, key=key)``.

The two losses take the same value on corresponding networks
(:math:`s^{\mathrm{torchcfm}} = \frac{\sigma^2}{2} s`, since then
:math:`\lambda^{\mathrm{torchcfm}} s^{\mathrm{torchcfm}} = \sigma_t s`), so they train the same
function up to that constant factor.

References:
  Tong, Malkin, Fatras, Atanackovic, Zhang, Huguet, Wolf, Bengio 2024, Simulation-Free
  Schrodinger Bridges via Score and Flow Matching (AISTATS); Vincent 2011, A Connection
  Between Score Matching and Denoising Autoencoders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice, check_real, is_concrete
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling
from flowjax_fm.losses._cfm import (
    ConditionalSample,
    _check_parts,
    _describe,
    _draw_on_path,
    call_field,
    sample_conditional,
)
from flowjax_fm.losses._few_step import AbstractObjective, _finish
from flowjax_fm.paths import AbstractPath, BrownianBridgePath, GaussianPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime

__all__ = ["SCORE_WEIGHTINGS", "SF2MObjective", "score_loss", "split_flow_score"]

SCORE_WEIGHTINGS: tuple[str, ...] = ("lambda", "torchcfm")


def _check_path(path) -> None:
    """A ValueError unless ``path`` is a Gaussian path with a score (bridge or tube)."""
    _check_parts(path=path)
    if not isinstance(path, BrownianBridgePath | GaussianPath):
        raise ValueError(
            "score matching needs a stochastic Gaussian path, fm.paths.BrownianBridgePath(sigma) "
            f"or fm.paths.GaussianPath(sigma) with sigma > 0; got {_describe(path)}"
        )
    if isinstance(path, GaussianPath) and is_concrete(path.sigma) and float(path.sigma) == 0.0:
        raise ValueError(
            "score matching needs a path of positive width: GaussianPath(sigma=0) is "
            "deterministic (no score); use sigma > 0"
        )


def _sigma_t(path, t):
    r""":math:`\sigma_t` of the path's conditional Gaussian at times ``t`` (any shape)."""
    if isinstance(path, BrownianBridgePath):
        return path.sigma * jnp.sqrt(jnp.maximum(t * (1.0 - t), 0.0))
    return path.sigma * jnp.ones_like(t)


def _lambda(path, t, weighting):
    r""":math:`\lambda(t)` of the convention ``weighting`` (see the module docstring)."""
    sigma_t = _sigma_t(path, t)
    if weighting == "torchcfm":
        return 2.0 * sigma_t / jnp.square(path.sigma)
    return sigma_t


def _col(a, like):
    return a.reshape(a.shape + (1,) * (like.ndim - 1))


def _mean_sq(a):
    return jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)


def _score_terms(s, sample: ConditionalSample, path, weighting):
    """Per-example :math:`\\frac1D\\|\\lambda(t) s + \\epsilon\\|^2`, shape ``(B,)``."""
    lam = _lambda(path, sample.t, weighting).astype(sample.x_t.dtype)
    return _mean_sq(_col(lam, s) * s + sample.noise)


def split_flow_score(out, like):
    """The velocity and score of a joint model's output ``out`` at a batch ``like``.

    A model trained by :class:`SF2MObjective` returns either a pair ``(v, s)``, each of
    ``like``'s shape ``(B, *event)``, or one array of shape ``(B, *event[:-1], 2 * event[-1])``
    whose first half along the last axis is the velocity and second half the score.

    Args:
      out: the model output, a pair or one array.
      like: the input batch ``x`` (for its shape).

    Returns:
      ``(v, s)``, both of ``like``'s shape.

    Raises:
      ValueError: ``out`` of neither form (the message quotes the shapes).

    Examples:
      >>> import jax.numpy as jnp
      >>> v, s = split_flow_score(jnp.arange(8.0).reshape(2, 4), jnp.zeros((2, 2)))
      >>> v.tolist(), s.tolist()
      ([[0.0, 1.0], [4.0, 5.0]], [[2.0, 3.0], [6.0, 7.0]])
    """
    shape = tuple(jnp.shape(like))
    doubled = shape[:-1] + (2 * shape[-1],)
    if isinstance(out, tuple | list):
        shapes = [tuple(jnp.shape(o)) for o in out]
        if len(out) == 2 and shapes == [shape, shape]:
            return out[0], out[1]
        raise ValueError(
            f"a flow-and-score model returning a pair must return (v, s) of shape {shape} each, "
            f"got {len(out)} outputs of shapes {shapes}"
        )
    got = tuple(jnp.shape(out)) if hasattr(out, "shape") else type(out).__name__
    if got != doubled:
        raise ValueError(
            f"a flow-and-score model must return a pair (v, s) of shape {shape} each or one "
            f"array of shape {doubled} (velocity and score halves along the last axis), got {got}"
        )
    d = shape[-1]
    return out[..., :d], out[..., d:]


def score_loss(
    score_fn: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath = BrownianBridgePath(),
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    weighting: str = "lambda",
    cond=None,
):
    r"""[SF]2M score-matching loss on one minibatch.

    Pairs the batch with ``coupling``, draws :math:`t` and :math:`\epsilon` per example
    (the same draws as :func:`~flowjax_fm.losses.cfm_loss` for the same ``key``) and
    regresses the score network onto the conditional score :math:`-\epsilon / \sigma_t`:

    .. math:: \mathcal L_s = \frac{1}{B} \sum_k \frac{1}{D}
       \big\| \lambda(t_k)\, s_\theta(x_{t_k}, t_k) + \epsilon_k \big\|^2,
       \qquad x_t = (1 - t) x_0 + t x_1 + \sigma_t \epsilon.

    Here :math:`\sigma_t = \sigma\sqrt{t(1-t)}` (bridge) or :math:`\sigma` (Gaussian tube),
    and :math:`-\epsilon/\sigma_t` is the score of the conditional Gaussian at :math:`x_t`.
    Two conventions (``weighting``):

    * ``"lambda"`` (default): :math:`\lambda(t) = \sigma_t`; the minimiser is the marginal
      score :math:`s_\theta \to \nabla_x \log p_t`, what
      :func:`~flowjax_fm.sampling.sample_sde` takes as ``score``.
    * ``"torchcfm"``: :math:`\lambda(t) = 2\sigma_t / \sigma^2` (torchcfm's
      ``SchrodingerBridgeConditionalFlowMatcher.compute_lambda``, which adds ``1e-8`` to
      :math:`\sigma^2`); the minimiser is :math:`\frac{\sigma^2}{2}\nabla_x \log p_t`, the
      drift correction itself: sample torchcfm's way, :math:`dx = [v + s]\, dt + \sigma\,
      dW`, with ``sample_sde(lambda x, t: v(x, t) + s(x, t), None, x0, sigma=sigma, key=key)``.

    The two losses agree on corresponding networks (:math:`s^{\mathrm{torchcfm}} =
    \frac{\sigma^2}{2} s`). At ``t = 0`` and ``t = 1`` the bridge has :math:`\sigma_t = 0`:
    the term is the constant :math:`\|\epsilon\|^2/D` there (no gradient), the weighting
    that keeps the loss finite.

    Args:
      score_fn: ``s(x, t) -> (B, *event)`` (``s(x, t, cond=c)`` when ``cond`` is given),
        ``t`` of shape ``(B,)``.
      key: a ``jax.random.key``.
      x0: source batch ``(B, *event)``; x1: data batch of the same shape.
      path: :class:`~flowjax_fm.paths.BrownianBridgePath` (default ``sigma = 1``, [SF]2M)
        or :class:`~flowjax_fm.paths.GaussianPath` with ``sigma > 0``.
      coupling: an :class:`~flowjax_fm.couplings.AbstractCoupling` (SF2M pairs with an
        entropic plan of regularisation :math:`2\sigma^2`, ``SinkhornCoupling(epsilon=2 *
        sigma**2)``, or exact OT).
      time_sampler: an :class:`~flowjax_fm.time_sampling.AbstractTime`.
      weighting: ``"lambda"`` or ``"torchcfm"`` (:data:`SCORE_WEIGHTINGS`).
      cond: optional condition of the data rows (follows the pairing), passed as ``cond=``.

    Returns:
      ``(loss, aux)`` with ``aux["per_example"]`` ``(B,)`` and ``aux["t"]`` ``(B,)``.

    Raises:
      TypeError: ``path``, ``coupling`` or ``time_sampler`` not of its kind; ``score_fn``
        not callable.
      ValueError: a path without a score (deterministic, or ``GaussianPath(sigma=0)``);
        an unknown ``weighting``; shapes as :func:`~flowjax_fm.losses.cfm_loss`; a score
        output not of ``x0``'s shape.

    Examples:
      The score of the bridge between fixed points ``0`` and ``1`` at ``x_t`` is
      ``-(x_t - t) / sigma_t^2``; the conditional score scores exactly zero:

      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> path = fm.paths.BrownianBridgePath(sigma=1.0)
      >>> score = lambda x, t: -(x - t[:, None]) / (t * (1 - t))[:, None]
      >>> x0, x1 = jnp.zeros((64, 1)), jnp.ones((64, 1))
      >>> loss, aux = fm.losses.score_loss(score, jax.random.key(0), x0, x1, path=path)
      >>> round(float(loss), 6), aux["per_example"].shape
      (0.0, (64,))

    References:
      Tong et al. 2024, Simulation-Free Schrodinger Bridges via Score and Flow Matching.
    """
    _check_parts(score_fn=score_fn, coupling=coupling, time_sampler=time_sampler)
    _check_path(path)
    check_choice("weighting", weighting, SCORE_WEIGHTINGS)
    sample = sample_conditional(
        key, x0, x1, path=path, coupling=coupling, time_sampler=time_sampler, cond=cond
    )
    s = call_field(score_fn, sample.x_t, sample.t, sample.cond)
    if jnp.shape(s) != jnp.shape(sample.x_t):
        raise ValueError(
            f"the score function returned shape {jnp.shape(s)}, expected {jnp.shape(sample.x_t)}"
        )
    per_example = _score_terms(s, sample, path, weighting)
    return per_example.mean(), {"per_example": per_example, "t": sample.t}


@pytree_dataclass
class SF2MObjective(AbstractObjective):
    r"""[SF]2M: flow matching and score matching of one model, trained jointly.

    The model returns the velocity and the score at once, either as a pair ``(v, s)``
    (two heads, or two networks wrapped in one module) or as one array with twice the
    event's last axis, ``[v, s]`` along that axis (see :func:`split_flow_score`). On the
    draws of :func:`~flowjax_fm.losses.paired_cfm_loss` (the same ``t``, ``x_t``, ``u_t``
    and :math:`\epsilon`),

    .. math:: \mathcal L = \mathbb E\, w(t) \Big[ \tfrac1D \| v_\theta(x_t, t) - u_t \|^2
       + \beta\, \tfrac1D \| \lambda(t)\, s_\theta(x_t, t) + \epsilon \|^2 \Big]

    with :math:`\beta` = ``score_weight`` and :math:`\lambda` of ``weighting`` (see
    :func:`score_loss`). The trained pair samples the bridge SDE
    :math:`dx = [v_\theta + \frac{\sigma^2}{2} s_\theta]\, dt + \sigma\, dW`
    with :func:`~flowjax_fm.sampling.sample_sde` (``weighting="lambda"``), or its
    probability-flow ODE :math:`dx = v_\theta\, dt` with :func:`~flowjax_fm.sampling.sample`.
    ``aux`` holds ``mse`` (the flow part, per example: what
    :func:`~flowjax_fm.training.make_train_step` logs as ``mse``) and ``score`` (the score
    part, per example).

    The path must have a score: :class:`~flowjax_fm.paths.BrownianBridgePath` ([SF]2M) or
    :class:`~flowjax_fm.paths.GaussianPath` with ``sigma > 0``.

    Args:
      score_weight: :math:`\beta \ge 0`, a pytree leaf.
      weighting: ``"lambda"`` (the score network learns :math:`\nabla \log p_t`) or
        ``"torchcfm"`` (it learns :math:`\frac{\sigma^2}{2}\nabla \log p_t`), static.

    Raises:
      ValueError: ``score_weight`` negative or not finite, an unknown ``weighting``; when
        called, a path without a score or a model output of neither form.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> obj = SF2MObjective(score_weight=0.5)
      >>> model = lambda x, t: (jnp.ones_like(x), jnp.zeros_like(x))   # v = x1 - x0, s = 0
      >>> loss, aux = obj(model, jax.random.key(0), jnp.zeros((4, 2)), jnp.ones((4, 2)),
      ...                 path=fm.paths.GaussianPath(sigma=0.1),
      ...                 time_sampler=fm.time_sampling.UniformTime())
      >>> sorted(aux), float(aux["mse"].max())
      (['mse', 'per_example', 'score', 't'], 0.0)

    References:
      Tong et al. 2024, Simulation-Free Schrodinger Bridges via Score and Flow Matching.
    """

    score_weight: float = 1.0
    weighting: str = static_field(default="lambda")
    two_time: ClassVar[bool] = False

    def __post_init__(self):
        check_real("score_weight", self.score_weight, 0.0)
        check_choice("weighting", self.weighting, SCORE_WEIGHTINGS)

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        _check_parts(vector_field=field, time_sampler=time_sampler, weight=weight)
        _check_path(path)
        sample = _draw_on_path(key, x0, x1, path, time_sampler, index, cond)
        v, s = split_flow_score(call_field(field, sample.x_t, sample.t, sample.cond), sample.x_t)
        flow = _mean_sq(v - sample.u_t)
        score = _score_terms(s, sample, path, self.weighting)
        per_example = flow + self.score_weight * score
        return _finish(per_example, sample.t, weight, {"mse": flow, "score": score})
