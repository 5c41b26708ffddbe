r"""Class-conditional training with label dropout: thin forms of the general step and loop.

Classifier-free guidance needs one network that is both conditional and unconditional: during
training each label is replaced by the null class with probability ``p`` (label dropout), and at
sampling time :func:`flowjax_fm.sampling.guided_field` mixes the two velocities.

Label-aware OT and label dropout must not interfere: the coupling pairs noise and images using
the **true** labels (pairs never cross classes), and only the network sees the dropped labels.
The step of ``make_train_step(..., cond_dropout=p)`` (:func:`make_conditional_train_step`)
therefore pairs the batch first and drops labels second.

The image job (train, evaluate, sample) is :mod:`flowjax_fm.experiments`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from flowjax_fm.couplings import AbstractCoupling
from flowjax_fm.training._step import drop_condition, make_conditional_train_step

__all__ = ["conditional_batch", "fit_labelled", "label_dropout", "make_conditional_train_step"]


# --------------------------------------------------------------------------------------------
# label dropout and the labelled-array loop: thin forms of the general step and loop


def label_dropout(key: jax.Array, labels: jax.Array, p, null_label: int) -> jax.Array:
    r"""Replace each label by ``null_label`` with probability ``p``: :func:`drop_condition` on labels.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> label_dropout(jax.random.key(0), jnp.arange(4), 1.0, 10).tolist()
      [10, 10, 10, 10]
    """
    return drop_condition(key, labels, p, jnp.asarray(null_label, jnp.result_type(labels)))


def conditional_batch(
    key: jax.Array,
    x0: jax.Array,
    x1: jax.Array,
    labels: jax.Array,
    *,
    coupling: AbstractCoupling,
    p,
    null_label: int,
):
    r"""Pair a labelled batch with the true labels, then drop labels for the network.

    Returns ``(x0p, x1p, labels_p, model_labels, pairing)``: the paired rows, the true labels of
    the pairs (``labels[pairing.target]``), the labels the network sees (each replaced by
    ``null_label`` with probability ``p``), and the :class:`~flowjax_fm.couplings.Pairing`.
    This is what the step of ``make_train_step(..., cond_dropout=p)`` does inside.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> x0 = jnp.zeros((4, 2)); x1 = jnp.ones((4, 2)); y = jnp.array([0, 1, 0, 1])
      >>> out = conditional_batch(jax.random.key(0), x0, x1, y,
      ...                         coupling=fm.couplings.ExactOTCoupling(), p=0.0, null_label=2)
      >>> bool((out[3] == out[2]).all())
      True
    """
    k_pair, k_drop = jax.random.split(key)
    pairing = coupling(k_pair, x0, x1, cond0=labels, cond1=labels)
    x0p, x1p = pairing.apply(x0, x1)
    labels_p = pairing.apply_target(labels)
    return x0p, x1p, labels_p, label_dropout(k_drop, labels_p, p, null_label), pairing


def fit_labelled(
    step: Callable,
    state,
    key: jax.Array,
    x,
    y,
    *,
    num_steps: int,
    batch_size: int,
    progress: bool = True,
    chunk_size: int = 250,
    on_chunk: Callable | None = None,
    unroll: int | None = None,
):
    r"""Train on labelled images ``(x, y)`` against Gaussian noise: :func:`fit` with ``source=None``.

    ``fit(step, state, key, None, (x, y), ...)`` (``y=None``: ``fit(..., None, x, ...)``):
    the images are visited in epochs, the noise :math:`x_0 \sim N(0, I)` is drawn per step,
    and the labels (or any condition pytree: float vectors are kept as they are) follow their
    images into ``step(state, k, x0, x1, cond=labels)``.

    Examples:
      >>> import jax, optax
      >>> from flax import nnx
      >>> import flowjax_fm as fm
      >>> model = fm.models.MLP(4, (16,), num_classes=2, rngs=nnx.Rngs(0))
      >>> opt = optax.adam(1e-3)
      >>> step = fm.training.make_conditional_train_step(model, optimizer=opt,
      ...                                                path=fm.paths.CondOTPath())
      >>> x = jax.numpy.ones((10, 2, 2, 1)); y = jax.numpy.arange(10) % 2
      >>> state, hist = fit_labelled(step, fm.training.init_state(model, opt), jax.random.key(0),
      ...                            x, y, num_steps=4, batch_size=4, progress=False)
      >>> hist["loss"].shape
      (4,)
    """
    from flowjax_fm.training._fit import fit

    target = jnp.asarray(x) if y is None else (jnp.asarray(x), jax.tree.map(jnp.asarray, y))
    return fit(step, state, key, None, target, num_steps=num_steps, batch_size=batch_size,
               progress=progress, chunk_size=chunk_size, on_chunk=on_chunk, unroll=unroll)
