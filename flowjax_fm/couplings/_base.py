r"""Couplings :math:`\pi(x_0, x_1)` on a minibatch: which source row goes with which data row."""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass

__all__ = ["AbstractCoupling", "Pairing", "check_batch", "squared_distances", "label_penalty"]


@pytree_dataclass
class Pairing:
    r"""Index pairs drawn from a coupling: pair ``k`` is ``(x0[source[k]], x1[target[k]])``.

    Args:
      source: ``(B,)`` int32 row indices into the source batch.
      target: ``(B,)`` int32 row indices into the data batch.

    Examples:
      >>> import jax.numpy as jnp
      >>> p = Pairing(source=jnp.array([0, 1]), target=jnp.array([1, 0]))
      >>> x0p, x1p = p.apply(jnp.array([10, 11]), jnp.array([20, 21]))
      >>> x0p.tolist(), x1p.tolist()
      ([10, 11], [21, 20])
    """

    source: jax.Array
    target: jax.Array

    def apply(self, x0, x1):
        """Gather paired rows of ``x0`` and ``x1`` (arrays or pytrees of arrays, e.g. labels)."""
        take = lambda idx: lambda a: jnp.take(a, idx, axis=0)
        return jax.tree.map(take(self.source), x0), jax.tree.map(take(self.target), x1)

    def apply_source(self, a):
        """Gather the source side only (for example the source's conditions)."""
        return jax.tree.map(lambda v: jnp.take(v, self.source, axis=0), a)

    def apply_target(self, a):
        """Gather the data side only (for example the data labels)."""
        return jax.tree.map(lambda v: jnp.take(v, self.target, axis=0), a)


def check_batch(x0, x1, cond0=None, cond1=None) -> int:
    """Validate a coupling's inputs at trace time and return the batch size."""
    s0, s1 = jnp.shape(x0), jnp.shape(x1)
    if len(s0) < 2 or len(s1) < 2:
        raise ValueError(
            f"couplings take batches shaped (B, *event) with a non-empty event, got {s0} and {s1}"
        )
    if s0 != s1:
        raise ValueError(f"x0 and x1 must have the same shape, got {s0} and {s1}")
    if s0[0] == 0:
        raise ValueError(f"the batch is empty: x0 has shape {s0}")
    for name, x in (("x0", x0), ("x1", x1)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"{name} must be floating point, got dtype {jnp.result_type(x)}")
    if (cond0 is None) != (cond1 is None):
        raise ValueError("label-aware pairing needs both cond0 and cond1 (or neither)")
    if cond0 is not None:
        for name, c in (("cond0", cond0), ("cond1", cond1)):
            if jnp.shape(c) != (s0[0],):
                raise ValueError(
                    f"{name} must be integer labels of shape ({s0[0]},), got shape {jnp.shape(c)}"
                )
            if not jnp.issubdtype(jnp.result_type(c), jnp.integer):
                raise ValueError(f"{name} must hold integer labels, got dtype {jnp.result_type(c)}")
    return s0[0]


def squared_distances(x0: jax.Array, x1: jax.Array) -> jax.Array:
    r"""Cost matrix :math:`C_{ij} = \|x_0^i - x_1^j\|^2` over flattened events, shape ``(B, B)``."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


def label_penalty(cost: jax.Array, cond0: jax.Array, cond1: jax.Array) -> jax.Array:
    r"""Add a penalty to the cost of every cross-label pair.

    The penalty :math:`B (\max C - \min C) + 1` exceeds what any within-label matching costs in
    total, so an exact solver crosses labels only where the label counts of the two sides
    differ and a crossing is unavoidable.
    """
    n = cost.shape[0]
    penalty = n * (cost.max() - cost.min()) + 1.0
    return jnp.where(cond0[:, None] == cond1[None, :], cost, cost + penalty)


class AbstractCoupling(abc.ABC):
    r"""A minibatch coupling: ``coupling(key, x0, x1, cond0=None, cond1=None) -> Pairing``.

    Couplings compare samples with each other, so they are batched by nature: ``x0`` and
    ``x1`` are ``(B, *event)``. Given integer labels ``cond0`` / ``cond1`` of shape ``(B,)``,
    pairs are made only within equal labels (label-aware coupling); with a permutation
    coupling this needs the same label counts on both sides (the usual case: give the
    noise the labels of the data).
    """

    @abc.abstractmethod
    def pair(self, key, x0, x1, cond0=None, cond1=None) -> Pairing:
        """Return the pairing (inputs already validated)."""

    def __call__(self, key, x0, x1, cond0=None, cond1=None) -> Pairing:
        check_batch(x0, x1, cond0, cond1)
        return self.pair(key, x0, x1, cond0, cond1)
