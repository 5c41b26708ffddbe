"""Train state and the pure train step (one body for every driver)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings import AbstractCoupling, IndependentCoupling
from flowjax_fm.losses import cfm_loss
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime

__all__ = ["TrainState", "init_state", "make_train_step", "make_vector_field", "split_model"]


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
):
    r"""Build the pure train step ``step(state, key, x0, x1, cond=None) -> (state, metrics)``.

    One step draws the coupling, times and noise from ``key``, takes the gradient of
    :func:`~flowjax_fm.losses.cfm_loss`, applies ``optimizer`` and, with ``ema_decay``, updates
    :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta`. ``metrics`` holds ``loss`` and
    ``grad_norm`` (global L2 norm of the averaged gradient).

    The body never mentions devices. With ``axis_name`` the loss and gradients are averaged
    over that mapped axis exactly once (``pmap`` driver); the ``shard_map`` and ``jit`` drivers
    leave it ``None``.

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

    def step(state: TrainState, key, x0, x1, cond=None):
        def loss_fn(params):
            field = lambda x, t, cond=None: apply(params, x, t, cond)
            return cfm_loss(
                field,
                key,
                x0,
                x1,
                path=path,
                coupling=coupling,
                time_sampler=time_sampler,
                weight=weight,
                cond=cond,
            )

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if axis_name is not None:
            loss = jax.lax.pmean(loss, axis_name)
            grads = jax.lax.pmean(grads, axis_name)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if ema_decay is not None:
            ema = optax.incremental_update(params, state.ema, 1.0 - ema_decay)
        new_state = TrainState(params=params, opt_state=opt_state, ema=ema, step=state.step + 1)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return step
