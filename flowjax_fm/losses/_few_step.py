r"""Training objectives: plain flow matching and the few-step family (MeanFlow, shortcut,
continuous-time consistency).

An objective is a frozen pytree: its float hyperparameters are leaves, so a training step
that holds one (``fm.training.make_train_step(..., objective=...)``) keeps its compiled
program when they change. It is called on rows that are already paired,

``objective(field, key, x0, x1, *, path, time_sampler, weight, cond, index, drop) -> (loss, aux)``,

and the public ``*_loss`` functions pair a batch first (as :func:`~flowjax_fm.losses.cfm_loss`
does) and then call it.

Times: ``t = 0`` is the source (noise) end, ``t = 1`` the data end. A model of two times
represents the **average velocity** over ``[t, r]`` (``r`` the end of the jump, ``r >= t``):

.. math:: u(x_t, t, r) = \frac{1}{r - t} \int_t^r v(x_s, s)\, ds, \qquad
   x_r = x_t + (r - t)\, u(x_t, t, r),

so ``u(x, t, t) = v(x, t)``, the instantaneous velocity. Papers written with ``t = 1`` at the
noise end (MeanFlow's ``u(z, r, t)`` with ``r < t``) read the same after ``t -> 1 - t``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice, check_int, check_real
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.losses._cfm import (
    _check_index,
    _check_parts,
    _describe,
    call_field,
    pair_batch,
    paired_cfm_loss,
    per_example_keys,
)
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime

__all__ = [
    "AbstractObjective",
    "CFMObjective",
    "CondDrop",
    "ConsistencyObjective",
    "MeanFlowObjective",
    "OBJECTIVES",
    "ShortcutObjective",
    "call_two_time",
    "condition_drop",
    "consistency_loss",
    "get_objective",
    "meanflow_loss",
    "shortcut_loss",
]


class CondDrop(NamedTuple):
    """Which examples had their condition dropped for classifier-free guidance.

    Attributes:
      dropped: ``(B,)`` bools, True where the network sees the null condition.
      null: the null condition broadcast to the batch (``cond``'s structure).
    """

    dropped: jax.Array
    null: Any


def condition_drop(key, cond, p, null_cond, index=None):
    """``(dropped_cond, CondDrop)``: :func:`~flowjax_fm.training.drop_condition` and which
    examples it dropped (with the null condition broadcast to the batch).

    Raises:
      ValueError: as :func:`~flowjax_fm.training.drop_condition`.
    """
    check_real("p", p, 0.0, 1.0)
    leaves = jax.tree.leaves(cond)
    if not leaves:
        raise ValueError("drop_condition: cond has no arrays")
    shapes = [jnp.shape(leaf) for leaf in leaves]
    if any(len(sh) == 0 for sh in shapes) or len({sh[0] for sh in shapes}) != 1:
        raise ValueError(
            f"drop_condition: every leaf of cond needs the same leading (batch) axis, got shapes {shapes}"
        )
    batch = shapes[0][0]
    if index is None:
        index = jnp.arange(batch, dtype=jnp.int32)
    elif jnp.shape(index) != (batch,) or not jnp.issubdtype(jnp.result_type(index), jnp.integer):
        raise ValueError(
            f"index must be integer example indices of shape ({batch},), got dtype "
            f"{jnp.result_type(index)} and shape {jnp.shape(index)}"
        )
    u = jax.vmap(lambda k: jax.random.uniform(k, ()))(per_example_keys(key, index))
    drop = u < p
    try:
        null_tree = jax.tree.map(lambda _, n: n, cond, null_cond)
    except ValueError as err:
        raise ValueError(
            f"null_cond must have the structure of cond: {jax.tree.structure(cond)} vs "
            f"{jax.tree.structure(null_cond)}"
        ) from err

    def mix(c, n):
        n = jnp.broadcast_to(jnp.asarray(n, jnp.result_type(c)), jnp.shape(c))
        mask = drop.reshape((batch,) + (1,) * (jnp.ndim(c) - 1))
        return jnp.where(mask, n, c)

    null_batch = jax.tree.map(
        lambda c, n: jnp.broadcast_to(jnp.asarray(n, jnp.result_type(c)), jnp.shape(c)),
        cond, null_tree)
    return jax.tree.map(mix, cond, null_tree), CondDrop(drop, null_batch)


def _takes_r(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return "r" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def call_two_time(u: Callable, x, t, r, cond=None):
    """Call a two-time field: ``u(x, t, r=r)`` when it has a parameter named ``r`` (or takes
    ``**kwargs``), else ``u(x, t, r)``; ``cond=`` only when a condition is given.

    Raises:
      TypeError: if ``u`` is not callable.
    """
    if not callable(u):
        raise TypeError(f"u must be a two-time field u(x, t, r[, cond=c]), got {_describe(u)}")
    kwargs = {} if cond is None else {"cond": cond}
    if _takes_r(u):
        return u(x, t, r=r, **kwargs)
    return u(x, t, r, **kwargs)


def _col(a, like):
    """``(B,)`` -> ``(B, 1, ..., 1)`` to broadcast against ``like`` ``(B, *event)``."""
    return a.reshape(a.shape + (1,) * (like.ndim - 1))


def _mean_sq(a):
    return jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)


def _check_out(out, like, what):
    if jnp.shape(out) != jnp.shape(like):
        raise ValueError(f"the {what} returned shape {jnp.shape(out)}, expected {jnp.shape(like)}")


def _prepare(key, x0, x1, path, time_sampler, index, cond, weight):
    """Checked batch, per-example keys (times / noise / extra) and the batch size."""
    _check_parts(path=path, time_sampler=time_sampler, weight=weight)
    batch = check_batch(x0, x1, cond, cond)
    if index is None:
        index = jnp.arange(batch, dtype=jnp.int32)
    else:
        _check_index(index, batch)
    k_t, k_noise, k_extra = jax.random.split(key, 3)
    keys = (per_example_keys(k_t, index), per_example_keys(k_noise, index),
            per_example_keys(k_extra, index))
    return batch, keys


def _on_path(path, x0, x1, t, noise_keys):
    noise = None
    if path.stochastic:
        noise = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(noise_keys)
    return jax.vmap(path.sample_and_target)(x0, x1, t, noise)


def _finish(per_example, t, weight, aux):
    if weight is not None:
        w = weight(t)
        if jnp.shape(w) != t.shape:
            raise ValueError(f"weight(t) must return shape {t.shape}, got {jnp.shape(w)}")
        per_example = w * per_example
    return per_example.mean(), {"per_example": per_example, "t": t, **aux}


def _adaptive(sq, power, eps):
    r"""MeanFlow's adaptive weight :math:`\mathrm{sg}(1 / (\|\Delta\|^2 + c)^p)` times ``sq``."""
    if power is None:
        return sq
    w = jax.lax.stop_gradient(1.0 / jnp.power(sq + eps, power))
    return w * sq


class AbstractObjective(abc.ABC):
    """A training objective on paired rows; see the module docstring for the call.

    ``two_time`` says whether it trains a model of two times (called with ``r=``);
    ``discrete`` whether it trains on integer tokens (no coupling; the step's ``path`` is
    then a :class:`~flowjax_fm.discrete.MixtureDiscretePath`, checked by ``check_path``).
    """

    two_time: ClassVar[bool] = False
    discrete: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop: CondDrop | None = None): ...


@pytree_dataclass
class CFMObjective(AbstractObjective):
    r"""Plain conditional flow matching (:func:`~flowjax_fm.losses.paired_cfm_loss`).

    .. math:: \mathcal L = \mathbb E\, w(t) \| v_\theta(x_t, t) - u_t(x_0, x_1) \|^2

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> loss, _ = CFMObjective()(lambda x, t: 0 * x, jax.random.key(0), jnp.zeros((4, 2)),
      ...                          jnp.ones((4, 2)), path=fm.paths.CondOTPath(),
      ...                          time_sampler=fm.time_sampling.UniformTime())
      >>> float(loss)
      1.0
    """

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        return paired_cfm_loss(field, key, x0, x1, path=path, time_sampler=time_sampler,
                               weight=weight, cond=cond, index=index)


@pytree_dataclass
class MeanFlowObjective(AbstractObjective):
    r"""MeanFlow: regress the average velocity onto the MeanFlow identity.

    Differentiating :math:`(r - t)\, u(x_t, t, r) = \int_t^r v(x_s, s)\, ds` in ``t`` along
    the flow gives the identity (Geng et al. 2025, eq. 6, in our time direction)

    .. math:: u(x_t, t, r) = v(x_t, t) + (r - t)\, \frac{d}{dt} u(x_t, t, r), \qquad
       \frac{d}{dt} u = v \cdot \partial_x u + \partial_t u,

    whose total derivative is one ``jax.jvp`` of the network with tangents ``(v, 1, 0)`` for
    ``(x, t, r)``. With the conditional velocity :math:`u_t(x_0, x_1)` in place of
    :math:`v` (an unbiased estimate, as the target is linear in it):

    .. math:: \mathcal L = \mathbb E\, \mathrm{sg}(\omega)\, \big\| u_\theta(x_t, t, r)
       - \mathrm{sg}\big(u_t + (r - t)\, \tfrac{d}{dt} u_\theta\big) \big\|^2,
       \qquad \omega = (\|\Delta\|^2 + c)^{-p}

    (:math:`\|\Delta\|^2` is the mean squared error over the event, :math:`p` = ``power``,
    :math:`c` = ``eps``; ``power=None`` turns the adaptive weight off). Times: ``t`` and
    ``r`` are two draws of ``time_sampler``, sorted so that ``t <= r``; a fraction
    ``1 - ratio`` of the examples then gets ``r = t`` (plain flow matching; the paper's best
    is ``ratio = 0.25``).

    Classifier-free guidance folded into training (MeanFlow section 4.2): with
    ``guidance_scale`` :math:`w` and ``guidance_mix`` :math:`\kappa`, the examples that kept
    their condition use the guided field

    .. math:: \tilde v = w\, u_t + \kappa\, u_\theta(x_t, t, t \mid c)
       + (1 - w - \kappa)\, u_\theta(x_t, t, t \mid \varnothing)

    (stop-gradient) in place of :math:`u_t`, both as the target's velocity and as the JVP
    tangent; examples whose condition was dropped use :math:`u_t`. One evaluation of the
    trained model then samples the guided flow. It needs condition dropout (``drop``).

    Args:
      ratio: fraction of examples with ``r != t``, in ``[0, 1]``.
      power: the adaptive weight's exponent ``p >= 0`` (``None``: no adaptive weight).
      eps: its ``c > 0``.
      guidance_scale: ``w`` (``None``: no guidance in training).
      guidance_mix: ``kappa`` in ``[0, 1)`` (only with ``guidance_scale``; ``None``, the
        default, is ``kappa = 0`` without the extra evaluation).

    Raises:
      ValueError: a value out of its range (when concrete); when called, a field of the wrong
        output shape, or ``guidance_scale`` without condition dropout.

    References:
      Geng, Deng, Bai, Kolter, He 2025, Mean Flows for One-step Generative Modeling.
    """

    ratio: float = 0.25
    power: float | None = 1.0
    eps: float = 1e-3
    guidance_scale: float | None = None
    guidance_mix: float | None = None
    two_time: ClassVar[bool] = True

    def __post_init__(self):
        check_real("ratio", self.ratio, 0.0, 1.0)
        check_real("power", self.power, 0.0, none_ok=True)
        check_real("eps", self.eps, 0.0, low_open=True)
        check_real("guidance_scale", self.guidance_scale, none_ok=True)
        check_real("guidance_mix", self.guidance_mix, 0.0, 1.0, high_open=True, none_ok=True)

    def times(self, time_sampler, k_t, k_extra, dtype):
        """Per-example ``(t, r)``: two draws of ``time_sampler`` from ``k_t`` sorted, and
        ``r = t`` unless a uniform draw from ``k_extra`` falls below ``ratio``."""

        def one(kt, ke):
            pair = time_sampler(kt, 2, dtype)
            t, r = jnp.min(pair), jnp.max(pair)
            return t, jnp.where(jax.random.uniform(ke, (), dtype) < self.ratio, r, t)

        return jax.vmap(one)(k_t, k_extra)

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        _, (k_t, k_noise, k_extra) = _prepare(key, x0, x1, path, time_sampler, index, cond,
                                              weight)
        t, r = self.times(time_sampler, k_t, k_extra, x0.dtype)
        x_t, v = _on_path(path, x0, x1, t, k_noise)
        if self.guidance_scale is not None:
            v = self._guided(field, x_t, t, v, cond, drop)
        tangent_t = jnp.ones_like(t)
        u, dudt = jax.jvp(lambda x, a, b: call_two_time(field, x, a, b, cond),
                          (x_t, t, r), (v, tangent_t, jnp.zeros_like(r)))
        _check_out(u, x_t, "two-time field")
        target = jax.lax.stop_gradient(v + _col(r - t, x_t) * dudt)
        sq = _mean_sq(u - target)
        return _finish(_adaptive(sq, self.power, self.eps), t, weight,
                       {"r": r, "mse": sq})

    def _guided(self, field, x_t, t, v, cond, drop):
        if drop is None or cond is None:
            raise ValueError(
                "MeanFlow guidance (guidance_scale) trains with condition dropout: use "
                "make_train_step(..., cond_dropout=0.1) or meanflow_loss(..., cond_dropout=0.1) "
                "with conditions"
            )
        w = jnp.asarray(self.guidance_scale, v.dtype)
        sg = jax.lax.stop_gradient
        u_null = sg(call_two_time(field, x_t, t, t, drop.null))
        guided = w * v + (1.0 - w) * u_null
        if self.guidance_mix is not None:  # None (not 0.0) skips the conditional evaluation
            kappa = jnp.asarray(self.guidance_mix, v.dtype)
            guided = guided + kappa * (sg(call_two_time(field, x_t, t, t, cond)) - u_null)
        return jnp.where(_col(drop.dropped, v), v, guided)


@pytree_dataclass
class ShortcutObjective(AbstractObjective):
    r"""Shortcut models: flow matching at step 0, self-consistency for larger steps.

    The model of two times is read as ``s(x_t, t, d) = u(x_t, t, t + d)``, the step from
    ``t`` to ``t + d``. A fraction ``1 - bootstrap`` of the examples regress
    ``u(x_t, t, t)`` onto the conditional velocity (``t`` from ``time_sampler``); the others
    draw a step ``2d = 2^{-k}``, :math:`k \in \{0, \dots, \log_2 M - 1\}` uniformly
    (``M = max_steps``), a time ``t`` on the grid of multiples of ``d`` with
    ``t + 2d <= 1``, and regress the double step onto two half steps of the model itself
    (Frans et al. 2024, eq. 5):

    .. math:: s_1 = u(x_t, t, t + d), \quad s_2 = u(x_t + d\, s_1, t + d, t + 2d), \quad
       \mathcal L_b = \big\| u(x_t, t, t + 2d) - \mathrm{sg}\big(\tfrac{s_1 + s_2}{2}\big)
       \big\|^2.

    At the finest level (``d = 1/M``) the half steps use the instantaneous velocity
    ``u(x, t, t)``. The targets use the current parameters (the paper's default; it also
    tries an EMA). All examples are evaluated in both branches and one is kept, so the
    choice per example depends only on its global index (the same on any device count).

    Args:
      bootstrap: fraction of self-consistency examples, in ``[0, 1]``.
      max_steps: ``M``, the finest number of steps, a power of two ``>= 2`` (static).

    Raises:
      ValueError: a value out of its range.

    References:
      Frans, Hafner, Levine, Abbeel 2024, One Step Diffusion via Shortcut Models.
    """

    bootstrap: float = 0.25
    max_steps: int = static_field(default=128)
    two_time: ClassVar[bool] = True

    def __post_init__(self):
        check_real("bootstrap", self.bootstrap, 0.0, 1.0)
        m = check_int("max_steps", self.max_steps, 2)
        if m & (m - 1):
            raise ValueError(f"max_steps must be a power of two >= 2, got {m}")

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        _, (k_t, k_noise, k_extra) = _prepare(key, x0, x1, path, time_sampler, index, cond,
                                              weight)
        dtype = x0.dtype
        levels = self.max_steps.bit_length() - 1  # log2 M

        def draw(kt, ke):
            k_boot, k_level, k_grid = jax.random.split(ke, 3)
            t_fm = time_sampler(kt, 1, dtype)[0]
            level = jax.random.randint(k_level, (), 0, levels)
            big = jnp.exp2(-level.astype(dtype))  # 2d
            d = big / 2
            j = jax.random.randint(k_grid, (), 0, 2 ** (level + 1) - 1)  # t + 2d <= 1
            boot = jax.random.uniform(k_boot, (), dtype) < self.bootstrap
            t = jnp.where(boot, j.astype(dtype) * d, t_fm)
            return t, jnp.where(boot, d, 0.0), boot

        t, d, boot = jax.vmap(draw)(k_t, k_extra)
        x_t, v = _on_path(path, x0, x1, t, k_noise)
        finest = d <= 1.0 / self.max_steps
        half_end = jnp.where(finest, t, t + d)
        sg = jax.lax.stop_gradient
        s1 = sg(call_two_time(field, x_t, t, half_end, cond))
        mid = x_t + _col(d, x_t) * s1
        s2 = sg(call_two_time(field, mid, t + d, jnp.where(finest, t + d, t + 2 * d), cond))
        target = jnp.where(_col(boot, v), (s1 + s2) / 2, v)
        u = call_two_time(field, x_t, t, t + 2 * d, cond)
        _check_out(u, x_t, "two-time field")
        sq = _mean_sq(u - target)
        return _finish(sq, t, weight, {"r": t + 2 * d, "mse": sq})


@pytree_dataclass
class ConsistencyObjective(AbstractObjective):
    r"""Continuous-time consistency training in flow-matching form (one time input).

    The consistency function maps any point of a trajectory to its data end,
    :math:`f_\theta(x_t, t) = x_t + (1 - t)\, F_\theta(x_t, t)`, so :math:`F_\theta` is the
    average velocity from ``t`` to ``1``. Consistency asks :math:`\frac{d}{dt} f_\theta = 0`
    along the flow, :math:`g = \frac{d}{dt} f_\theta = v + (1 - t)\frac{d}{dt}F_\theta -
    F_\theta`, with the total derivative from one ``jax.jvp`` (tangents ``(v, 1)``), and
    the loss moves :math:`F_\theta` along :math:`g` (the continuous-time consistency
    gradient of Lu and Song 2024, sCM, with :math:`\theta^- = \mathrm{sg}(\theta)`):

    .. math:: \mathcal L = \mathbb E\, \big\| F_\theta(x_t, t) - \mathrm{sg}\big(F_\theta
       + g / (\|g\| + c)\big) \big\|^2

    with sCM's tangent normalisation :math:`c` = ``normalize`` (``None``: none, then the
    target is :math:`\mathrm{sg}(v + (1 - t)\frac{d}{dt} F_\theta)`, unbiased with the
    conditional velocity in place of :math:`v`). It is the MeanFlow identity at ``r = 1``.
    Sample with :func:`~flowjax_fm.sampling.sample_few_step` on ``lambda x, t, r: F(x, t)``:
    each step moves along the predicted endpoint (the deterministic multistep consistency
    sampler).

    Args:
      normalize: ``c > 0`` of the tangent normalisation, or ``None``.
      power, eps: the adaptive weight of :class:`MeanFlowObjective` (default off).

    Raises:
      ValueError: a value out of its range.

    References:
      Lu and Song 2024, Simplifying, Stabilizing and Scaling Continuous-Time Consistency
      Models; Song, Dhariwal, Chen, Sutskever 2023, Consistency Models.
    """

    normalize: float | None = None
    power: float | None = None
    eps: float = 1e-3
    two_time: ClassVar[bool] = False

    def __post_init__(self):
        check_real("normalize", self.normalize, 0.0, low_open=True, none_ok=True)
        check_real("power", self.power, 0.0, none_ok=True)
        check_real("eps", self.eps, 0.0, low_open=True)

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        _, (k_t, k_noise, _) = _prepare(key, x0, x1, path, time_sampler, index, cond, weight)
        t = jax.vmap(lambda k: time_sampler(k, 1, x0.dtype)[0])(k_t)
        x_t, v = _on_path(path, x0, x1, t, k_noise)
        F, dFdt = jax.jvp(lambda x, a: call_field(field, x, a, cond), (x_t, t),
                          (v, jnp.ones_like(t)))
        _check_out(F, x_t, "vector field")
        g = v + _col(1.0 - t, x_t) * dFdt - F
        if self.normalize is not None:
            norm = jnp.sqrt(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1))
            g = g / _col(norm + self.normalize, g)
        target = jax.lax.stop_gradient(F + g)
        sq = _mean_sq(F - target)
        return _finish(_adaptive(sq, self.power, self.eps), t, weight, {"mse": sq})


OBJECTIVES = {
    "cfm": CFMObjective,
    "meanflow": MeanFlowObjective,
    "shortcut": ShortcutObjective,
    "consistency": ConsistencyObjective,
}


def get_objective(name: str, **kwargs) -> AbstractObjective:
    """Build an objective from its command-line name (``cfm``, ``meanflow``, ``shortcut``,
    ``consistency``).

    Raises:
      ValueError: an unknown name (the message lists the valid ones) or a bad value.

    Examples:
      >>> get_objective("meanflow", ratio=0.5).ratio
      0.5
    """
    check_choice("objective", name, sorted(OBJECTIVES))
    return OBJECTIVES[name](**kwargs)


def _paired_then(objective, field, key, x0, x1, *, path, coupling, time_sampler, weight, cond,
                 cond_dropout=None, null_cond=None):
    _check_parts(path=path, coupling=coupling, time_sampler=time_sampler, weight=weight)
    k_pair, k_loss, k_drop = jax.random.split(key, 3)
    x0, x1, cond = pair_batch(k_pair, x0, x1, coupling=coupling, cond=cond)
    drop = None
    if cond_dropout is not None:
        if cond is None or null_cond is None:
            raise ValueError("cond_dropout needs cond=... and null_cond=...")
        cond, drop = condition_drop(k_drop, cond, cond_dropout, null_cond)
    return objective(field, k_loss, x0, x1, path=path, time_sampler=time_sampler,
                     weight=weight, cond=cond, drop=drop)


def meanflow_loss(
    u: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    ratio: float = 0.25,
    power: float | None = 1.0,
    eps: float = 1e-3,
    weight: Callable | None = None,
    cond=None,
    guidance_scale: float | None = None,
    guidance_mix: float | None = None,
    cond_dropout: float | None = None,
    null_cond=None,
):
    r"""The MeanFlow loss on one minibatch (see :class:`MeanFlowObjective` for the math).

    Pairs the batch with ``coupling`` (OT pairs straighten the average velocity and help
    one-step samples most), draws ``(t, r)``, and regresses the two-time field ``u`` onto
    the MeanFlow identity through ``jax.jvp``.

    Args:
      u: the two-time field ``u(x, t, r[, cond=c]) -> (B, *event)``, ``t, r`` of shape
        ``(B,)`` (called with ``r=`` by keyword when it has a parameter named ``r``).
      key: a ``jax.random.key``.
      x0, x1: source and data batches ``(B, *event)``.
      path, coupling, time_sampler, weight, cond: as :func:`~flowjax_fm.losses.cfm_loss`.
      ratio, power, eps, guidance_scale, guidance_mix: as :class:`MeanFlowObjective`.
      cond_dropout: probability of giving the network ``null_cond`` (needed for guidance).
      null_cond: one example's null condition.

    Returns:
      ``(loss, aux)`` with ``aux["per_example"]``, ``aux["t"]``, ``aux["r"]`` and
      ``aux["mse"]`` (the unweighted per-example error).

    Raises:
      TypeError: a part of the wrong kind (as :func:`~flowjax_fm.losses.cfm_loss`).
      ValueError: shapes as :func:`~flowjax_fm.losses.cfm_loss`; a field output of the
        wrong shape; a hyperparameter out of range; guidance without dropout.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> u = lambda x, t, r: jnp.ones_like(x)          # the exact average velocity here
      >>> x0 = jnp.zeros((8, 2)); x1 = jnp.ones((8, 2))
      >>> loss, aux = fm.losses.meanflow_loss(u, jax.random.key(0), x0, x1,
      ...                                     path=fm.paths.CondOTPath())
      >>> float(loss), aux["r"].shape
      (0.0, (8,))

    References:
      Geng, Deng, Bai, Kolter, He 2025, Mean Flows for One-step Generative Modeling.
    """
    objective = MeanFlowObjective(ratio=ratio, power=power, eps=eps,
                                  guidance_scale=guidance_scale, guidance_mix=guidance_mix)
    return _paired_then(objective, u, key, x0, x1, path=path, coupling=coupling,
                        time_sampler=time_sampler, weight=weight, cond=cond,
                        cond_dropout=cond_dropout, null_cond=null_cond)


def shortcut_loss(
    u: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    bootstrap: float = 0.25,
    max_steps: int = 128,
    weight: Callable | None = None,
    cond=None,
):
    r"""The shortcut-model loss on one minibatch (see :class:`ShortcutObjective`).

    Args:
      u: the two-time field ``u(x, t, r[, cond=c])``; the step size is ``d = r - t``.
      key, x0, x1, path, coupling, time_sampler, weight, cond: as
        :func:`~flowjax_fm.losses.cfm_loss`.
      bootstrap, max_steps: as :class:`ShortcutObjective`.

    Returns:
      ``(loss, aux)`` with ``per_example``, ``t``, ``r`` and ``mse``.

    Raises:
      TypeError, ValueError: as :func:`meanflow_loss`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> u = lambda x, t, r: jnp.ones_like(x)
      >>> x0 = jnp.zeros((8, 2)); x1 = jnp.ones((8, 2))
      >>> float(fm.losses.shortcut_loss(u, jax.random.key(0), x0, x1,
      ...                               path=fm.paths.CondOTPath())[0])
      0.0

    References:
      Frans, Hafner, Levine, Abbeel 2024, One Step Diffusion via Shortcut Models.
    """
    objective = ShortcutObjective(bootstrap=bootstrap, max_steps=max_steps)
    return _paired_then(objective, u, key, x0, x1, path=path, coupling=coupling,
                        time_sampler=time_sampler, weight=weight, cond=cond)


def consistency_loss(
    field: Callable,
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    *,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    normalize: float | None = None,
    power: float | None = None,
    eps: float = 1e-3,
    weight: Callable | None = None,
    cond=None,
):
    r"""Continuous-time consistency loss on one minibatch (see :class:`ConsistencyObjective`).

    Args:
      field: ``F(x, t[, cond=c])``, the average velocity from ``t`` to ``1``.
      key, x0, x1, path, coupling, time_sampler, weight, cond: as
        :func:`~flowjax_fm.losses.cfm_loss`.
      normalize, power, eps: as :class:`ConsistencyObjective`.

    Returns:
      ``(loss, aux)`` with ``per_example``, ``t`` and ``mse``.

    Raises:
      TypeError, ValueError: as :func:`meanflow_loss`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> F = lambda x, t: jnp.ones_like(x)
      >>> x0 = jnp.zeros((8, 2)); x1 = jnp.ones((8, 2))
      >>> float(fm.losses.consistency_loss(F, jax.random.key(0), x0, x1,
      ...                                  path=fm.paths.CondOTPath())[0])
      0.0

    References:
      Lu and Song 2024, Simplifying, Stabilizing and Scaling Continuous-Time Consistency
      Models.
    """
    objective = ConsistencyObjective(normalize=normalize, power=power, eps=eps)
    return _paired_then(objective, field, key, x0, x1, path=path, coupling=coupling,
                        time_sampler=time_sampler, weight=weight, cond=cond)
