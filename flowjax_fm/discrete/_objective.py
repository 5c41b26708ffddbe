r"""Discrete flow matching as a train-step objective: tokens through ``make_train_step`` / ``fit``."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_choice
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.discrete._loss import LOSS_KINDS, mixture_kl_loss
from flowjax_fm.discrete._path import MixtureDiscretePath, check_tokens
from flowjax_fm.losses._cfm import call_field, per_example_keys
from flowjax_fm.losses._few_step import AbstractObjective

__all__ = ["DiscreteObjective"]


@pytree_dataclass
class DiscreteObjective(AbstractObjective):
    r"""Discrete flow matching on integer tokens, as an objective of
    :func:`~flowjax_fm.training.make_train_step`.

    With ``path`` a :class:`MixtureDiscretePath`, each example draws ``t`` from the step's
    time sampler and its noisy tokens :math:`x_t` (each token is :math:`x_1` with
    probability :math:`\kappa_t`, else :math:`x_0`) from ``fold_in(key, index)``, so the
    batch is split over devices without changing a draw; the model's logits
    ``model(x_t, t[, cond=c]) -> (B, L, V)`` are scored with :func:`mixture_kl_loss`
    (``kind``), averaged over the example's tokens and then over the batch (times the
    step's ``weight(t)`` if given). There is no coupling: the step's coupling must be the
    independent one. Source and data are integer token arrays or samplers
    (:func:`uniform_source`, :func:`mask_source`); ``fit`` accepts integer arrays for a
    step with this objective.

    Args:
      kind: ``"generalized_kl"`` (default) or ``"cross_entropy"`` (static).

    Raises:
      ValueError: an unknown ``kind``; when called, tokens or logits of the wrong shape or
        dtype (quoted).

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.TokenMLP(8, 2, hidden=(16,), rngs=nnx.Rngs(0))
      >>> step = fm.training.make_train_step(
      ...     model, optimizer=optax.adam(1e-3),
      ...     path=fm.discrete.MixtureDiscretePath(fm.paths.CondOTSchedule()),
      ...     objective=fm.discrete.DiscreteObjective())
      >>> x0 = fm.discrete.uniform_source(jax.random.key(0), (4, 2), 8)
      >>> state, m = step(fm.training.init_state(model, optax.adam(1e-3)), jax.random.key(1),
      ...                 x0, jnp.ones((4, 2), jnp.int32))
      >>> int(state.step), bool(jnp.isfinite(m["loss"]))
      (1, True)

    References:
      Gat et al. 2024, Discrete Flow Matching.
    """

    kind: str = static_field(default="generalized_kl")
    discrete: ClassVar[bool] = True

    def __post_init__(self):
        check_choice("kind", self.kind, LOSS_KINDS)

    @staticmethod
    def check_path(path) -> None:
        if not isinstance(path, MixtureDiscretePath):
            raise TypeError(
                "a DiscreteObjective trains on fm.discrete.MixtureDiscretePath (e.g. "
                f"MixtureDiscretePath(fm.paths.CondOTSchedule())), got {type(path).__name__}"
            )

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        self.check_path(path)
        check_tokens("x0", x0)
        check_tokens("x1", x1, shape=jnp.shape(x0))
        batch = x0.shape[0]
        if index is None:
            index = jnp.arange(batch, dtype=jnp.int32)
        k_t, k_x = jax.random.split(key)
        t = jax.vmap(lambda k: time_sampler(k, 1, jnp.float32)[0])(per_example_keys(k_t, index))
        keys = per_example_keys(k_x, index)
        x_t = jax.vmap(lambda k, a, b, s: path.sample(k, a[None], b[None], s[None])[0])(
            keys, x0, x1, t)
        logits = call_field(field, x_t, t, cond)
        per_example = jax.vmap(
            lambda lg, a, b, s: mixture_kl_loss(lg[None], a[None], b[None], s[None], path=path,
                                                kind=self.kind)
        )(logits, x1, x_t, t)
        if weight is not None:
            w = weight(t)
            if jnp.shape(w) != t.shape:
                raise ValueError(f"weight(t) must return shape {t.shape}, got {jnp.shape(w)}")
            per_example = w * per_example
        return per_example.mean(), {"per_example": per_example, "t": t}
