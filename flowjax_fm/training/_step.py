"""Train state and the pure train step (one body for every driver)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from flowjax_fm._checks import (
    check_choice,
    check_labels,
    check_positive_int,
    check_real,
    is_int,
)
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling, Pairing
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.losses import pair_batch
from flowjax_fm.losses._few_step import AbstractObjective, CFMObjective, condition_drop
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime
from flowjax_fm.training._model import ModelApply, as_model, params_of

__all__ = [
    "TrainState",
    "TrainStep",
    "drop_condition",
    "init_state",
    "make_conditional_train_step",
    "make_train_step",
    "make_vector_field",
    "split_model",
]


@pytree_dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    Args:
      params: the trained parameters (an NNX model's ``nnx.Param`` state, an equinox
        model's float arrays, or the params pytree of a plain apply function).
      opt_state: the optax optimiser state.
      ema: exponential moving average of ``params`` (a copy of them at initialisation).
      step: number of completed steps, int32 scalar.

    Raises:
      ValueError: ``step`` not an integer scalar (an int, or a 0-d integer array).
    """

    params: Any
    opt_state: Any
    ema: Any
    step: jax.Array

    def __post_init__(self):
        step = self.step
        if is_int(step):
            if step < 0:
                raise ValueError(f"TrainState.step must be an int >= 0, got {step!r}")
            return
        dtype = getattr(step, "dtype", None)
        if dtype is None or jnp.ndim(step) != 0 or not jnp.issubdtype(dtype, jnp.integer):
            shape = jnp.shape(step) if dtype is not None else None
            raise ValueError(
                "TrainState.step must be an integer scalar (the count of completed steps), got "
                + (f"dtype {dtype} and shape {shape}" if dtype is not None else repr(step))
            )


def split_model(model: nnx.Module):
    """Split an NNX model into ``(graphdef, params, rest)`` (``rest`` is non-parameter state).

    Raises:
      TypeError: if ``model`` is not an ``nnx.Module``.

    Examples:
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> graphdef, params, rest = split_model(fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)))
      >>> params["out"]["kernel"].shape
      (8, 2)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(
            f"split_model takes a Flax NNX module (nnx.Module), got {type(model).__name__}; "
            "for an equinox module use eqx.partition(model, eqx.is_inexact_array)"
        )
    return nnx.split(model, nnx.Param, ...)


def make_vector_field(model, params=None):
    """A plain function ``v(x, t, cond=None)`` evaluating ``model`` with ``params``.

    For a model of two times (``two_time=True``) it is ``u(x, t, cond=None, r=None)``: the
    average velocity over ``[t, r]`` for :func:`~flowjax_fm.sampling.sample_few_step`, and
    with ``r`` left out the instantaneous velocity ``u(x, t, t)``, an ODE field for
    :func:`~flowjax_fm.sampling.sample`.

    ``model`` is an NNX module, an equinox module (``params`` default: their own) or a plain
    function ``apply(params, x, t, cond=None)`` (``params`` required). No ``nnx.jit``: the
    result composes with ``jax.jit``, ``vmap`` and diffrax like any pure function.

    Raises:
      TypeError: for any other kind of model, or a plain function without ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0))
      >>> field = make_vector_field(model)
      >>> field(jnp.zeros((3, 2)), jnp.zeros(3)).shape
      (3, 2)
      >>> linear = make_vector_field(lambda p, x, t: x @ p, jnp.eye(2))  # a plain apply
      >>> linear(jnp.ones((3, 2)), jnp.zeros(3)).tolist()[0]
      [1.0, 1.0]
    """
    apply, own = as_model(model)
    params = own if params is None else params
    if params is None:
        raise TypeError("make_vector_field(apply, params): a plain-function model needs its params")

    if apply.two_time:
        # a model of two times: r defaults to t, the instantaneous velocity u(x, t, t) = v(x, t)
        def two(x, t, cond=None, r=None):
            return apply(params, x, t, cond, t if r is None else r)

        return two

    def field(x, t, cond=None):
        return apply(params, x, t, cond)

    return field


def init_state(model_or_params, optimizer: optax.GradientTransformation) -> TrainState:
    """Initial :class:`TrainState` for a model's parameters and ``optimizer`` (EMA = params).

    Args:
      model_or_params: an NNX module, an equinox module, or the params pytree of a plain
        ``apply(params, x, t, cond=None)`` (for Flax Linen: ``net.init(key, x, t)``).
      optimizer: an optax transformation.

    Raises:
      TypeError: for a function, a class, a Linen module, or a pytree with non-array leaves;
        or an ``optimizer`` that is not an optax ``GradientTransformation``.

    Examples:
      >>> import optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> state = init_state(fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)), optax.adam(1e-3))
      >>> int(state.step)
      0
    """
    _check_optimizer(optimizer)
    params = params_of(model_or_params)
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        ema=jax.tree.map(jnp.copy, params),
        step=jnp.zeros((), jnp.int32),
    )


def drop_condition(key: jax.Array, cond, p, null_cond, index: jax.Array | None = None):
    r"""Replace each example's condition by ``null_cond`` with probability ``p`` (CFG training).

    .. math:: \tilde c_i = \begin{cases} c_\varnothing & u_i < p \\ c_i & \text{else}\end{cases},
       \qquad u_i \sim U[0, 1)

    ``cond`` is any pytree with leading axis ``B`` (labels ``(B,)``, vectors ``(B, k)``,
    dicts); ``null_cond`` has the same structure and holds one example's null condition (or
    a batched one). ``u_i`` is drawn from ``fold_in(key, index[i])`` (default ``arange(B)``),
    so the mask does not depend on how the batch is split over devices.

    Args:
      key: a ``jax.random.key``.
      cond: the conditions, a pytree of arrays with leading axis ``B``.
      p: drop probability in ``[0, 1]`` (a traced ``p`` is not checked).
      null_cond: the null condition, of ``cond``'s structure.
      index: optional global example indices ``(B,)`` (integers).

    Raises:
      ValueError: ``p`` outside ``[0, 1]``, a ``cond`` without arrays or whose leaves do not
        share one leading size, ``index`` not of shape ``(B,)``, or a ``null_cond`` of
        another structure.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> drop_condition(jax.random.key(0), jnp.arange(4), 1.0, 10).tolist()
      [10, 10, 10, 10]
      >>> drop_condition(jax.random.key(0), jnp.ones((2, 3)), 1.0, jnp.zeros(3)).sum().item()
      0.0
    """
    return condition_drop(key, cond, p, null_cond, index)[0]


_SCOPES = ("global", "per_shard")
_MODES = (None, "pmap", "shard_map")


@pytree_dataclass
class TrainStep:
    r"""The pure train step returned by :func:`make_train_step`: a frozen pytree.

    Call it as ``step(state, key, x0, x1, cond=None) -> (state, metrics)``. Its path,
    coupling, time sampler, EMA decay and condition dropout are pytree children, so their
    float hyperparameters are leaves: :func:`fit` passes the step into its compiled chunk as
    an argument, and a new ``sigma`` or ``epsilon`` reuses the compiled program. The model
    (an :class:`~flowjax_fm.training.ModelApply`), the optimizer, ``weight`` and the
    device options are static. :func:`pmap_step` and :func:`shard_step` run the same body on
    many devices through :meth:`for_axis`.

    Fields are those of :func:`make_train_step`; build it through that function.
    """

    model: ModelApply
    path: AbstractPath
    coupling: AbstractCoupling
    time_sampler: AbstractTime
    ema_decay: Any
    cond_dropout: Any
    null_cond: Any
    optimizer: optax.GradientTransformation = static_field()
    weight: Any = static_field(default=None)
    axis_name: str | None = static_field(default=None)
    mode: str | None = static_field(default=None)
    coupling_scope: str = static_field(default="global")
    accumulate: int = static_field(default=1)
    objective: AbstractObjective = CFMObjective()

    def __post_init__(self):
        if not isinstance(self.model, ModelApply):
            raise TypeError(
                f"TrainStep.model must be a ModelApply (build the step with make_train_step), got "
                f"{type(self.model).__name__}"
            )
        discrete = getattr(self.objective, "discrete", False)
        if discrete:
            self.objective.check_path(self.path)
            if not isinstance(self.coupling, IndependentCoupling):
                raise ValueError(
                    "a discrete objective pairs nothing (tokens have no transport cost): use the "
                    f"independent coupling, got {type(self.coupling).__name__}"
                )
        for name, value, base in (
            ("path", self.path, AbstractPath),
            ("coupling", self.coupling, AbstractCoupling),
            ("time_sampler", self.time_sampler, AbstractTime),
        ):
            if discrete and name == "path":
                continue
            if not isinstance(value, base):
                accepted, example = _ACCEPTED[name]
                raise TypeError(
                    f"{name} must be an instance of {accepted} (e.g. {example}), got "
                    f"{_describe(value)}"
                )
        _check_optimizer(self.optimizer)
        if self.weight is not None and not callable(self.weight):
            raise TypeError(
                f"weight must be None or a function t -> (B,) weights, got {_describe(self.weight)}"
            )
        if self.axis_name is not None and not isinstance(self.axis_name, str):
            raise TypeError(f"axis_name must be None or a str, got {_describe(self.axis_name)}")
        if not isinstance(self.objective, AbstractObjective):
            raise TypeError(
                "objective must be an fm.losses.AbstractObjective (fm.losses.CFMObjective(), "
                f"fm.losses.MeanFlowObjective(), ...), got {_describe(self.objective)}"
            )
        two_time = self.model.two_time
        if two_time is not None and two_time != self.objective.two_time:
            need = "two times (build it with two_time=True)" if self.objective.two_time else "one time"
            raise ValueError(
                f"{type(self.objective).__name__} trains a model of {need}; the model has "
                f"two_time={two_time}"
            )
        check_choice("coupling_scope", self.coupling_scope, _SCOPES)
        check_choice("mode", self.mode, _MODES)
        check_positive_int("accumulate", self.accumulate)
        check_real("ema_decay", self.ema_decay, 0.0, 1.0, none_ok=True)
        check_real("cond_dropout", self.cond_dropout, 0.0, 1.0, none_ok=True)
        if self.cond_dropout is not None and self.null_cond is None:
            raise ValueError(
                "condition dropout needs a null condition: pass null_cond=... (for labels, the "
                "null class; for a model with num_classes it is num_classes)"
            )

    def __hash__(self):
        return hash(jax.tree.structure(self))

    def __eq__(self, other):
        return self is other

    @property
    def apply(self):
        """The model as ``apply(params, x, t, cond=None)``."""
        return self.model

    def for_axis(self, axis_name: str, mode: str) -> TrainStep:
        """The same step, to be run under a mapped axis (``mode``: ``"pmap"`` or ``"shard_map"``)."""
        return dataclasses.replace(self, axis_name=axis_name, mode=mode)

    # -- pieces -------------------------------------------------------------------------
    def _shard_info(self, local_batch: int):
        if self.axis_name is None:
            return jnp.zeros((), jnp.int32), 1
        shard = jax.lax.axis_index(self.axis_name)
        n_shards = jax.lax.psum(1, self.axis_name)
        return shard * local_batch, n_shards

    def _pair(self, key, x0, x1, cond, offset):
        """Pair the batch: on the global batch (gathered) or within this shard."""
        b = x0.shape[0]
        if self.axis_name is None or self.coupling_scope == "per_shard":
            if self.axis_name is not None:
                key = jax.random.fold_in(key, jax.lax.axis_index(self.axis_name))
            return pair_batch(key, x0, x1, coupling=self.coupling, cond=cond)
        gather = lambda a: jax.lax.all_gather(a, self.axis_name, axis=0, tiled=True)
        x0g, x1g = gather(x0), gather(x1)
        condg = None if cond is None else jax.tree.map(gather, cond)
        if condg is None:
            pairing = self.coupling(key, x0g, x1g)
        else:
            pairing = self.coupling(key, x0g, x1g, cond0=condg, cond1=condg)
        src = jax.lax.dynamic_slice_in_dim(pairing.source, offset, b)
        tgt = jax.lax.dynamic_slice_in_dim(pairing.target, offset, b)
        take = lambda idx: lambda a: jnp.take(a, idx, axis=0)
        cond_p = None if condg is None else jax.tree.map(take(tgt), condg)
        return take(src)(x0g), take(tgt)(x1g), cond_p

    def _loss(self, params, key, x0, x1, cond, index, drop):
        if self.objective.two_time:
            field = lambda x, t, cond=None, r=None: self.model(params, x, t, cond, r)
        else:
            field = lambda x, t, cond=None: self.model(params, x, t, cond)
        loss, aux = self.objective(
            field, key, x0, x1, path=self.path, time_sampler=self.time_sampler,
            weight=self.weight, cond=cond, index=index, drop=drop,
        )
        extra = {"mse": jnp.mean(aux["mse"])} if "mse" in aux else {}
        return loss, extra

    def _grads(self, params, key, x0, x1, cond, index, drop):
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        if self.accumulate == 1:
            return grad_fn(params, key, x0, x1, cond, index, drop)
        b = x0.shape[0]
        if b % self.accumulate:
            raise ValueError(
                f"the (per-device) batch {b} is not divisible by accumulate={self.accumulate}"
            )
        split = lambda a: a.reshape(self.accumulate, b // self.accumulate, *a.shape[1:])
        micro = (split(x0), split(x1), jax.tree.map(split, cond), split(index),
                 jax.tree.map(split, drop))
        first = jax.tree.map(lambda a: a[0], micro)
        rest = jax.tree.map(lambda a: a[1:], micro)

        def body(carry, mb):
            out = grad_fn(params, key, *mb)
            return jax.tree.map(jnp.add, carry, out), None

        # the carry starts from the first micro-batch (not zeros) so that its types, including
        # shard_map's varying/invariant axes, are those of the body's output
        total, _ = jax.lax.scan(body, grad_fn(params, key, *first), rest)
        return jax.tree.map(lambda a: a / self.accumulate, total)

    def pairing(self, key, x0, x1, cond=None, *, shards: int = 1):
        """The :class:`~flowjax_fm.couplings.Pairing` this step draws for a global batch.

        ``key`` is the step's key (the one passed to ``__call__``); the coupling gets its
        pairing half, exactly as inside the step. With ``shards = n > 1`` (the pairing of
        ``coupling_scope="per_shard"`` on ``n`` devices) the batch is cut into ``n`` equal
        slices, slice ``i`` is paired within itself with ``fold_in(k_pair, i)`` as on device
        ``i``, and the indices are global. The drivers and
        :func:`~flowjax_fm.training.fit` (``pairing="prefetch"``) call this outside the
        step's program and then run the step with ``paired=True`` on the re-ordered batch.
        """
        check_positive_int("shards", shards)
        if getattr(self.objective, "discrete", False):  # tokens: the rows as they come
            rows = jnp.arange(jnp.shape(x0)[0], dtype=jnp.int32)
            return Pairing(rows, rows, None, None)
        check_batch(x0, x1, cond, cond)
        k_pair, _ = jax.random.split(key)
        if shards == 1:
            return self._couple(k_pair, x0, x1, cond)
        b = x0.shape[0]
        if b % shards:
            raise ValueError(f"the global batch {b} is not divisible by the device count {shards}")
        split = lambda a: a.reshape(shards, b // shards, *a.shape[1:])
        index = jnp.arange(shards, dtype=jnp.int32)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(k_pair, index)
        per = jax.vmap(self._couple)(keys, split(x0), split(x1), jax.tree.map(split, cond))
        offset = (index * (b // shards))[:, None]
        return Pairing(
            (per.source + offset).reshape(b).astype(jnp.int32),
            (per.target + offset).reshape(b).astype(jnp.int32),
            None if per.converged is None else jnp.all(per.converged),
            None if per.marginal_error is None else jnp.max(per.marginal_error),
        )

    def _couple(self, key, x0, x1, cond):
        if cond is None:
            return self.coupling(key, x0, x1)
        return self.coupling(key, x0, x1, cond0=cond, cond1=cond)

    def __call__(self, state: TrainState, key, x0, x1, cond=None, *, paired: bool = False):
        discrete = getattr(self.objective, "discrete", False)
        if discrete:
            paired = True  # independent pairs: the rows as they come (checked by the objective)
        else:
            check_batch(x0, x1)
        b = x0.shape[0]
        if cond is not None and self.model.num_classes is not None:
            # trace time only (dtype and shape); the model checks the range of traced labels
            check_labels("labels", cond, batch=b)
        offset, n_shards = self._shard_info(b)
        k_pair, k_loss = jax.random.split(key)
        if not paired:
            x0, x1, cond = self._pair(k_pair, x0, x1, cond, offset)
        index = offset + jnp.arange(b, dtype=jnp.int32)
        drop = None
        if self.cond_dropout is not None:
            if cond is None:
                raise ValueError("this step drops conditions for guidance: call it with cond=...")
            # the pairing used the true conditions; only the network sees the dropped ones
            k_drop = jax.random.fold_in(key, 2)
            cond, drop = condition_drop(k_drop, cond, self.cond_dropout, self.null_cond, index)
        (loss, extra), grads = self._grads(state.params, k_loss, x0, x1, cond, index, drop)
        if self.mode is not None:
            extra = jax.lax.pmean(extra, self.axis_name)
        if self.mode == "pmap":
            loss = jax.lax.pmean(loss, self.axis_name)
            grads = jax.lax.pmean(grads, self.axis_name)
        elif self.mode == "shard_map":
            # Under shard_map the gradient of replicated parameters comes back already summed
            # over the axis (the transpose of their implicit broadcast is a psum): divide by
            # the number of shards to get the global mean. A pmean here would over-count.
            loss = jax.lax.pmean(loss, self.axis_name)
            grads = jax.tree.map(lambda g: g / n_shards, grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if self.ema_decay is not None:
            ema = optax.incremental_update(params, state.ema, 1.0 - self.ema_decay)
        new_state = TrainState(params=params, opt_state=opt_state, ema=ema, step=state.step + 1)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **extra}


def apply_pairing(pairing, x0, x1, cond=None):
    """``(x0, x1, cond)`` re-ordered by ``pairing`` (conditions follow the data rows)."""
    x0, x1 = pairing.apply(x0, x1)
    return x0, x1, None if cond is None else pairing.apply_target(cond)


_ACCEPTED = {
    "path": ("fm.paths.AbstractPath", "fm.paths.CondOTPath()"),
    "coupling": ("fm.couplings.AbstractCoupling", "fm.couplings.ExactOTCoupling()"),
    "time_sampler": ("fm.time_sampling.AbstractTime", "fm.time_sampling.UniformTime()"),
}


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_optimizer(optimizer) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax GradientTransformation (optax.adam(1e-3), "
            f"fm.training.make_optimizer(...)), got {_describe(optimizer)}"
        )


def _default_null(model, cond_dropout, null_cond):
    """The null condition of ``model`` when the caller gave none (its null class or null_cond)."""
    if cond_dropout is None or null_cond is not None:
        return null_cond
    own = getattr(model, "null_cond", None)
    if callable(own):
        return jax.tree.map(lambda a: a[0], own(1))
    if own is not None:
        return own
    classes = getattr(model, "num_classes", None)
    if classes is not None:
        return jnp.asarray(classes, jnp.int32)
    return None


def make_train_step(
    model,
    *,
    optimizer: optax.GradientTransformation,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    ema_decay: float | None = None,
    axis_name: str | None = None,
    weight=None,
    coupling_scope: str = "global",
    accumulate: int = 1,
    cond_dropout: float | None = None,
    null_cond=None,
    objective: AbstractObjective = CFMObjective(),
) -> TrainStep:
    r"""Build the pure train step ``step(state, key, x0, x1, cond=None) -> (state, metrics)``.

    One step pairs the batch with ``coupling`` (key ``k_pair``; the data rows' conditions
    ride along: labels keep pairs within a label, float conditions enter an OT cost through
    ``cond_weight``), draws each example's time and noise from ``fold_in(k_loss, global
    example index)``, takes the gradient of the CFM loss
    (:func:`~flowjax_fm.losses.paired_cfm_loss`), applies ``optimizer`` and, with
    ``ema_decay``, updates :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta`.
    ``metrics`` holds ``loss`` and ``grad_norm`` (global L2 norm of the averaged gradient),
    and ``mse`` (the unweighted squared error) for objectives that report it.

    ``objective`` chooses what is regressed on the paired batch: plain flow matching
    (:class:`~flowjax_fm.losses.CFMObjective`, the default) or a few-step objective
    (:class:`~flowjax_fm.losses.MeanFlowObjective`,
    :class:`~flowjax_fm.losses.ShortcutObjective` for a model of two times,
    :class:`~flowjax_fm.losses.ConsistencyObjective`). Couplings, conditions, dropout,
    accumulation and the multi-device drivers work the same for all of them.

    With ``cond_dropout = p`` (classifier-free guidance training) each example's condition
    is replaced by ``null_cond`` with probability ``p`` *after* the pairing: the coupling
    sees the true conditions, the network the dropped ones.

    The body never mentions devices: :func:`pmap_step` and :func:`shard_step` wrap it. With
    ``axis_name`` (for use inside your own ``jax.pmap``) loss and gradients are averaged over
    that axis exactly once.

    Args:
      model: an NNX module or an equinox module called as ``model(x, t[, cond=c])`` on
        batches, or a plain function ``apply(params, x, t, cond=None)`` (Flax Linen:
        ``lambda p, x, t: net.apply(p, x, t)``; start from ``init_state(params, optimizer)``).
        Only an NNX model's ``nnx.Param`` s, or an equinox model's float arrays, are trained.
      optimizer: an optax transformation (chain clipping and schedules into it).
      path, coupling, time_sampler, weight: as in :func:`~flowjax_fm.losses.cfm_loss`.
      ema_decay: decay in ``[0, 1]`` of the parameter EMA kept in ``state.ema`` (``None``:
        not updated; ``1`` keeps the initial parameters).
      axis_name: mapped axis name when the step runs inside the caller's ``pmap``.
      coupling_scope: on several devices, ``"global"`` solves one coupling on the gathered
        global batch (the result does not depend on the device count) or ``"per_shard"``
        (each device pairs its own slice: cheaper, but the pairing depends on the number of
        devices).
      accumulate: split the (per-device) batch into this many micro-batches (an int
        ``>= 1``) and average their gradients (same result as the full batch, less memory).
        The coupling is still solved on the whole batch.
      cond_dropout: probability in ``[0, 1]`` of replacing a condition by ``null_cond``.
      null_cond: one example's null condition (same pytree structure as a condition; default
        the model's ``null_cond`` or, for a model with ``num_classes``, that null class).
      objective: an :class:`~flowjax_fm.losses.AbstractObjective` (a pytree: its float
        hyperparameters are leaves).

    Raises:
      TypeError: for a model of another kind (see :func:`~flowjax_fm.training.as_model`);
        a ``path``, ``coupling`` or ``time_sampler`` that is not an instance of
        :class:`~flowjax_fm.paths.AbstractPath`, :class:`~flowjax_fm.couplings.AbstractCoupling`
        or :class:`~flowjax_fm.time_sampling.AbstractTime`; an ``optimizer`` that is not an
        optax ``GradientTransformation``; a ``weight`` that is not callable; an
        ``objective`` that is not an :class:`~flowjax_fm.losses.AbstractObjective`.
      ValueError: ``coupling_scope`` not ``"global"`` / ``"per_shard"``, ``accumulate`` not
        an int ``>= 1``, ``ema_decay`` or ``cond_dropout`` not ``None`` or a finite number
        in ``[0, 1]`` (traced values pass unchecked), ``cond_dropout`` without a null
        condition, an objective of two times for a model whose ``two_time`` is False (or
        the reverse). When called, for a class-conditional model (``num_classes``), labels
        that are not integers of shape ``(B,)`` (at trace time).

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (16,), rngs=nnx.Rngs(0))
      >>> opt = optax.adam(1e-3)
      >>> step = jax.jit(make_train_step(model, optimizer=opt, path=fm.paths.CondOTPath()))
      >>> x0 = jax.random.normal(jax.random.key(1), (8, 2))
      >>> state, metrics = step(init_state(model, opt), jax.random.key(2), x0, x0 + 3.0)
      >>> int(state.step), sorted(metrics)
      (1, ['grad_norm', 'loss'])
    """
    apply, _ = as_model(model)
    mode = "pmap" if axis_name is not None else None  # inside the caller's own pmap
    return TrainStep(
        model=apply,
        path=path,
        coupling=coupling,
        time_sampler=time_sampler,
        ema_decay=ema_decay,
        cond_dropout=cond_dropout,
        null_cond=_default_null(model, cond_dropout, null_cond),
        optimizer=optimizer,
        weight=weight,
        axis_name=axis_name,
        mode=mode,
        coupling_scope=coupling_scope,
        accumulate=accumulate,
        objective=objective,
    )


def make_conditional_train_step(
    model,
    *,
    optimizer: optax.GradientTransformation,
    path: AbstractPath,
    coupling: AbstractCoupling = IndependentCoupling(),
    time_sampler: AbstractTime = UniformTime(),
    ema_decay: float | None = None,
    axis_name: str | None = None,
    weight=None,
    dropout: float = 0.1,
    null_label=None,
) -> TrainStep:
    r"""A train step with per-example condition dropout for classifier-free guidance.

    :func:`make_train_step` with ``cond_dropout=dropout`` and ``null_cond=null_label``
    (default: the model's null condition, ``num_classes`` for a class-conditional model).
    The loss is

    .. math:: \mathbb E\, \| v_\theta(x_t, t, \tilde c) - u_t(x_0, x_1) \|^2,
       \quad (x_0, x_1) \sim \pi_c, \quad \tilde c = \varnothing \text{ w.p. } p

    Raises:
      ValueError: if there is no null condition to drop to, or ``dropout`` is outside
        ``[0, 1]``.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (16,), num_classes=3, rngs=nnx.Rngs(0))
      >>> opt = optax.adam(1e-3)
      >>> step = make_conditional_train_step(model, optimizer=opt, path=fm.paths.CondOTPath(),
      ...                                    dropout=0.2)
      >>> x1 = jax.random.normal(jax.random.key(1), (6, 2)); y = jax.numpy.arange(6) % 3
      >>> state, m = step(fm.training.init_state(model, opt), jax.random.key(2), x1 * 0, x1,
      ...                 cond=y)
      >>> int(state.step)
      1
    """
    if null_label is None:
        null_label = _default_null(model, dropout, None)
        if null_label is None:
            raise ValueError("the model has no null condition: pass null_label=... explicitly")
    return make_train_step(
        model, optimizer=optimizer, path=path, coupling=coupling, time_sampler=time_sampler,
        ema_decay=ema_decay, axis_name=axis_name, weight=weight, cond_dropout=dropout,
        null_cond=null_label,
    )
