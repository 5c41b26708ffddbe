"""Train state and the pure train step (one body for every driver)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.losses import pair_batch, paired_cfm_loss
from flowjax_fm.losses._cfm import _is_labels
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime

__all__ = [
    "TrainState",
    "TrainStep",
    "init_state",
    "make_train_step",
    "make_vector_field",
    "split_model",
]


@pytree_dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    Args:
      params: the model's ``nnx.Param`` state.
      opt_state: the optax optimiser state.
      ema: exponential moving average of ``params`` (a copy of them at initialisation).
      step: number of completed steps, int32 scalar.
    """

    params: Any
    opt_state: Any
    ema: Any
    step: jax.Array


def split_model(model: nnx.Module):
    """Split a model into ``(graphdef, params, rest)`` (``rest`` is non-parameter state)."""
    return nnx.split(model, nnx.Param, ...)


def make_vector_field(model: nnx.Module, params=None):
    """A plain function ``v(x, t, cond=None)`` evaluating ``model`` with ``params``.

    Uses split/merge and no ``nnx.jit``, so the result composes with ``jax.jit``, ``vmap`` and
    diffrax like any pure function.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(2, (8,), rngs=nnx.Rngs(0))
      >>> field = make_vector_field(model)
      >>> field(jnp.zeros((3, 2)), jnp.zeros(3)).shape
      (3, 2)
    """
    graphdef, own_params, rest = split_model(model)
    params = own_params if params is None else params

    def field(x, t, cond=None):
        module = nnx.merge(graphdef, params, rest)
        return module(x, t) if cond is None else module(x, t, cond=cond)

    return field


def init_state(model: nnx.Module, optimizer: optax.GradientTransformation) -> TrainState:
    """Initial :class:`TrainState` for ``model`` and ``optimizer`` (EMA starts at the params).

    Examples:
      >>> import optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> state = init_state(fm.models.MLP(2, (8,), rngs=nnx.Rngs(0)), optax.adam(1e-3))
      >>> int(state.step)
      0
    """
    _, params, _ = split_model(model)
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        ema=jax.tree.map(jnp.copy, params),
        step=jnp.zeros((), jnp.int32),
    )


_SCOPES = ("global", "per_shard")
_MODES = (None, "pmap", "shard_map")


class TrainStep:
    """The pure train step returned by :func:`make_train_step`.

    Call it as ``step(state, key, x0, x1, cond=None) -> (state, metrics)``. It is a plain
    callable (not a pytree): ``jax.jit(step)`` compiles it; :func:`pmap_step` and
    :func:`shard_step` run the same body on many devices through :meth:`for_axis`.
    """

    def __init__(self, apply, optimizer, path, coupling, time_sampler, weight, ema_decay,
                 axis_name, mode, coupling_scope, accumulate):
        if coupling_scope not in _SCOPES:
            raise ValueError(f"coupling_scope must be one of {_SCOPES}, got {coupling_scope!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"accumulate must be a positive int, got {accumulate!r}")
        self.apply = apply
        self.optimizer = optimizer
        self.path = path
        self.coupling = coupling
        self.time_sampler = time_sampler
        self.weight = weight
        self.ema_decay = ema_decay
        self.axis_name = axis_name
        self.mode = mode if axis_name is not None else None
        if axis_name is not None and mode is None:
            self.mode = "pmap"  # ``make_train_step(axis_name=...)`` inside the user's own pmap
        self.coupling_scope = coupling_scope
        self.accumulate = accumulate

    def for_axis(self, axis_name: str, mode: str) -> TrainStep:
        """The same step, to be run under a mapped axis (``mode``: ``"pmap"`` or ``"shard_map"``)."""
        return TrainStep(self.apply, self.optimizer, self.path, self.coupling, self.time_sampler,
                         self.weight, self.ema_decay, axis_name, mode, self.coupling_scope,
                         self.accumulate)

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
        labels = condg if _is_labels(condg, x0g.shape[0]) else None
        pairing = self.coupling(key, x0g, x1g, cond0=labels, cond1=labels)
        src = jax.lax.dynamic_slice_in_dim(pairing.source, offset, b)
        tgt = jax.lax.dynamic_slice_in_dim(pairing.target, offset, b)
        take = lambda idx: lambda a: jnp.take(a, idx, axis=0)
        cond_p = None if condg is None else jax.tree.map(take(tgt), condg)
        return take(src)(x0g), take(tgt)(x1g), cond_p

    def _loss(self, params, key, x0, x1, cond, index):
        field = lambda x, t, cond=None: self.apply(params, x, t, cond)
        loss, _ = paired_cfm_loss(
            field, key, x0, x1, path=self.path, time_sampler=self.time_sampler,
            weight=self.weight, cond=cond, index=index,
        )
        return loss

    def _grads(self, params, key, x0, x1, cond, index):
        grad_fn = jax.value_and_grad(self._loss)
        if self.accumulate == 1:
            return grad_fn(params, key, x0, x1, cond, index)
        b = x0.shape[0]
        if b % self.accumulate:
            raise ValueError(
                f"the (per-device) batch {b} is not divisible by accumulate={self.accumulate}"
            )
        split = lambda a: a.reshape(self.accumulate, b // self.accumulate, *a.shape[1:])
        micro = (split(x0), split(x1), jax.tree.map(split, cond), split(index))
        first = jax.tree.map(lambda a: a[0], micro)
        rest = jax.tree.map(lambda a: a[1:], micro)

        def body(carry, mb):
            loss, grads = grad_fn(params, key, *mb)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        # the carry starts from the first micro-batch (not zeros) so that its types, including
        # shard_map's varying/invariant axes, are those of the body's output
        total, _ = jax.lax.scan(body, grad_fn(params, key, *first), rest)
        return jax.tree.map(lambda a: a / self.accumulate, total)

    def pair_global(self, key, x0, x1, cond=None):
        """Pair a global batch with this step's coupling, drawing from the step's pairing key.

        The data-parallel drivers call this on the global view (inside ``jit``, before the
        batch is split over devices) for ``coupling_scope="global"``: the problem is solved
        once, not once per device, and the gather is part of the compiled program. The body
        is then called with ``paired=True``.
        """
        k_pair, _ = jax.random.split(key)
        return pair_batch(k_pair, x0, x1, coupling=self.coupling, cond=cond)

    def __call__(self, state: TrainState, key, x0, x1, cond=None, *, paired: bool = False):
        check_batch(x0, x1)
        b = x0.shape[0]
        offset, n_shards = self._shard_info(b)
        k_pair, k_loss = jax.random.split(key)
        if not paired:
            x0, x1, cond = self._pair(k_pair, x0, x1, cond, offset)
        index = offset + jnp.arange(b, dtype=jnp.int32)
        loss, grads = self._grads(state.params, k_loss, x0, x1, cond, index)
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
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_train_step(
    model: nnx.Module,
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
) -> TrainStep:
    r"""Build the pure train step ``step(state, key, x0, x1, cond=None) -> (state, metrics)``.

    One step pairs the batch with ``coupling`` (key ``k_pair``), draws each example's time and
    noise from ``fold_in(k_loss, global example index)``, takes the gradient of the CFM loss
    (:func:`~flowjax_fm.losses.paired_cfm_loss`), applies ``optimizer`` and, with
    ``ema_decay``, updates :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta`.
    ``metrics`` holds ``loss`` and ``grad_norm`` (global L2 norm of the averaged gradient).

    The body never mentions devices: :func:`pmap_step` and :func:`shard_step` wrap it. With
    ``axis_name`` (for use inside your own ``jax.pmap``) loss and gradients are averaged over
    that axis exactly once.

    Args:
      model: a Flax NNX model ``model(x, t[, cond])``; only its ``nnx.Param`` s are trained.
      optimizer: an optax transformation (chain clipping and schedules into it).
      path, coupling, time_sampler, weight: as in :func:`~flowjax_fm.losses.cfm_loss`.
      ema_decay: decay of the parameter EMA kept in ``state.ema`` (``None``: not updated).
      axis_name: mapped axis name when the step runs inside the caller's ``pmap``.
      coupling_scope: on several devices, ``"global"`` solves one coupling on the gathered
        global batch (the gather is part of the compiled program; the result does not depend
        on the device count; cost: an all-gather of both batches and the full ``B x B``
        problem on every device) or ``"per_shard"`` (each device pairs its own slice: cheaper,
        ``(B/n)^2`` per device and no gather, but the pairing, and so training, depends on
        the number of devices).
      accumulate: split the (per-device) batch into this many micro-batches and average their
        gradients (same result as the full batch, less memory). The coupling is still solved
        on the whole batch.

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
    graphdef, _, rest = split_model(model)

    def apply(params, x, t, cond=None):
        module = nnx.merge(graphdef, params, rest)
        return module(x, t) if cond is None else module(x, t, cond=cond)

    return TrainStep(apply, optimizer, path, coupling, time_sampler, weight, ema_decay,
                     axis_name, None, coupling_scope, accumulate)
