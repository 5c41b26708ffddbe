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
import numpy as np

from flowjax_fm._checks import check_labels, check_real, is_concrete
from flowjax_fm.couplings import AbstractCoupling
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.training._step import drop_condition, make_conditional_train_step

__all__ = ["conditional_batch", "fit_labelled", "label_dropout", "make_conditional_train_step"]


# --------------------------------------------------------------------------------------------
# label dropout and the labelled-array loop: thin forms of the general step and loop


def label_dropout(key: jax.Array, labels: jax.Array, p, null_label: int) -> jax.Array:
    r"""Replace each label by ``null_label`` with probability ``p``: :func:`drop_condition` on labels.

    Args:
      key: a ``jax.random.key``.
      labels: integer labels ``(B,)``.
      p: drop probability in ``[0, 1]`` (a traced ``p`` is not checked).
      null_label: the null class, an int ``>= 0`` (or a 0-d integer array).

    Raises:
      ValueError: ``labels`` not integers of shape ``(B,)``, ``p`` outside ``[0, 1]``, or
        ``null_label`` not an integer ``>= 0``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> label_dropout(jax.random.key(0), jnp.arange(4), 1.0, 10).tolist()
      [10, 10, 10, 10]
    """
    check_labels("labels", labels)
    check_real("p", p, 0.0, 1.0)
    _check_null_label(null_label)
    return drop_condition(key, labels, p, jnp.asarray(null_label, jnp.result_type(labels)))


def _check_null_label(null_label) -> None:
    dtype = jnp.result_type(null_label) if hasattr(null_label, "dtype") or isinstance(
        null_label, int | np.integer) else None
    if (
        isinstance(null_label, bool | np.bool_)
        or dtype is None
        or not jnp.issubdtype(dtype, jnp.integer)
        or jnp.ndim(null_label) != 0
        or (is_concrete(null_label) and int(null_label) < 0)
    ):
        raise ValueError(f"null_label must be an int >= 0 (the null class), got {null_label!r}")


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

    Raises:
      TypeError: ``coupling`` not an instance of :class:`~flowjax_fm.couplings.AbstractCoupling`.
      ValueError: ``labels`` not integers of shape ``(B,)`` (``B`` the batch of ``x0``),
        ``p`` outside ``[0, 1]``, ``null_label`` not an int ``>= 0``, or batches of
        different shapes.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> x0 = jnp.zeros((4, 2)); x1 = jnp.ones((4, 2)); y = jnp.array([0, 1, 0, 1])
      >>> out = conditional_batch(jax.random.key(0), x0, x1, y,
      ...                         coupling=fm.couplings.ExactOTCoupling(), p=0.0, null_label=2)
      >>> bool((out[3] == out[2]).all())
      True
    """
    if not isinstance(coupling, AbstractCoupling):
        raise TypeError(
            "coupling must be an instance of fm.couplings.AbstractCoupling (e.g. "
            f"fm.couplings.ExactOTCoupling()), got {type(coupling).__name__}"
        )
    check_batch(x0, x1)
    check_labels("labels", labels, batch=jnp.shape(x0)[0])
    check_real("p", p, 0.0, 1.0)
    _check_null_label(null_label)
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

    Raises:
      ValueError, TypeError, NonFiniteLossError, RuntimeCheckError: as :func:`fit`
        (``num_steps``, ``batch_size``, ``chunk_size``, ``unroll``, ``progress``; for a
        class-conditional model, labels that are not integers ``(N,)`` in
        ``[0, num_classes]``, quoted with their row).

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
