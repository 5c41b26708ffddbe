r"""Couplings :math:`\pi(x_0, x_1)` on a minibatch: which source row goes with which data row.

Conditions are pytrees. Every leaf has leading dimension ``B`` (the batch). Integer (or
boolean) leaves of shape ``(B,)`` are **labels**: a pair ``(i, j)`` is allowed only when every
label leaf agrees, ``cond0[i] == cond1[j]``. Floating leaves of shape ``(B, *c)`` are
**continuous conditions**: an OT coupling with ``cond_weight = w`` adds
:math:`w \sum_\ell \|c^\ell_{0,i} - c^\ell_{1,j}\|^2` (leaves flattened per row) to its cost.
"""

from __future__ import annotations

import abc
import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_real
from flowjax_fm._pytree import pytree_dataclass

__all__ = [
    "AbstractCoupling",
    "Pairing",
    "check_batch",
    "check_cond_weight",
    "condition_cost",
    "label_penalty",
    "same_label",
    "split_cond",
    "squared_distances",
]


@pytree_dataclass
class Pairing:
    r"""Index pairs drawn from a coupling: pair ``k`` is ``(x0[source[k]], x1[target[k]])``.

    Args:
      source: ``(B,)`` int32 row indices into the source batch.
      target: ``(B,)`` int32 row indices into the data batch.
      converged: the solver's report, where the coupling solves something that can fail
        (:class:`~flowjax_fm.couplings.SinkhornCoupling`): a ``()`` bool, ``True`` when the
        plan passed its check. ``None`` (default) for couplings that cannot fail.
      marginal_error: with ``converged``, the ``()`` float the check measured (the relative
        L1 error of the plan's marginals; ``nan`` when unchecked, for unbalanced plans).

    Examples:
      >>> import jax.numpy as jnp
      >>> p = Pairing(source=jnp.array([0, 1]), target=jnp.array([1, 0]))
      >>> x0p, x1p = p.apply(jnp.array([10, 11]), jnp.array([20, 21]))
      >>> x0p.tolist(), x1p.tolist(), p.converged
      ([10, 11], [21, 20], None)
    """

    source: jax.Array
    target: jax.Array
    converged: jax.Array | None = None
    marginal_error: jax.Array | None = None

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


def _is_label(leaf) -> bool:
    dtype = jnp.result_type(leaf)
    return bool(jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_)


def _check_cond(cond0, cond1, batch: int, x_shape) -> None:
    if (cond0 is None) != (cond1 is None):
        raise ValueError("conditions need both cond0 and cond1 (or neither)")
    if cond0 is None:
        return
    t0, t1 = jax.tree.structure(cond0), jax.tree.structure(cond1)
    if t0 != t1:
        raise ValueError(f"cond0 and cond1 must have the same pytree structure, got {t0} and {t1}")
    for a, b in zip(jax.tree.leaves(cond0), jax.tree.leaves(cond1), strict=True):
        for name, c in (("cond0", a), ("cond1", b)):
            shape, dtype = jnp.shape(c), jnp.result_type(c)
            if not shape or shape[0] != batch:
                raise ValueError(
                    f"every leaf of {name} must have leading dimension {batch} (x0 has shape "
                    f"{tuple(x_shape)}), got a leaf of shape {shape}"
                )
            if not (_is_label(c) or jnp.issubdtype(dtype, jnp.floating)):
                raise ValueError(
                    f"condition leaves must be integer labels or floating vectors, got a leaf "
                    f"of {name} with dtype {dtype} and shape {shape}"
                )
            if _is_label(c) and shape != (batch,):
                raise ValueError(
                    f"integer labels must have shape ({batch},), got a leaf of {name} of shape "
                    f"{shape}: squeeze a label column (labels[:, 0]), or cast it to float to "
                    "use it as a continuous condition"
                )
        if jnp.shape(a) != jnp.shape(b) or _is_label(a) != _is_label(b):
            raise ValueError(
                f"matching leaves of cond0 and cond1 must agree in shape and kind (labels or "
                f"floats), got {jnp.shape(a)} {jnp.result_type(a)} and {jnp.shape(b)} "
                f"{jnp.result_type(b)}"
            )


def check_batch(x0, x1, cond0=None, cond1=None) -> int:
    """Validate a coupling's inputs at trace time and return the batch size.

    Raises:
      ValueError: ``x0`` / ``x1`` not equal-shaped float batches ``(B, *event)``; only one
        of ``cond0`` / ``cond1`` given; conditions of other structures, a leaf without
        leading dimension ``B``, integer labels not of shape ``(B,)``, or a leaf neither
        integer nor floating.
    """
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
    _check_cond(cond0, cond1, s0[0], s0)
    return s0[0]


def split_cond(cond) -> tuple[list, list]:
    """The leaves of a condition pytree split into ``(labels, floats)`` (tree order)."""
    leaves = jax.tree.leaves(cond)
    return [c for c in leaves if _is_label(c)], [c for c in leaves if not _is_label(c)]


def check_cond_weight(value) -> None:
    """Check a concrete ``cond_weight`` (finite and ``>= 0``, or ``None``); traced values pass."""
    check_real("cond_weight", value, 0.0, none_ok=True)


def squared_distances(x0: jax.Array, x1: jax.Array) -> jax.Array:
    r"""Cost matrix :math:`C_{ij} = \|x_0^i - x_1^j\|^2` over flattened events, shape ``(B, B)``.

    Up to 8 dimensions the squared differences are summed directly; above, computed as
    :math:`\|a_i\|^2 + \|b_j\|^2 - 2 a_i \cdot b_j` (one matrix product) on the points centred at
    the mean of both batches (distances are translation invariant): without centring, a
    common offset ``o`` costs float32 its digits (``|o|^2`` swamps the distances; at
    ``o = 1e3`` exact OT was 17% above the optimum), with it only the spread of the points
    matters.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1e4, 0.0], [1e4 + 1.0, 0.0]])
      >>> squared_distances(x, x).tolist()
      [[0.0, 1.0], [1.0, 0.0]]
    """
    s0, s1 = jnp.shape(x0), jnp.shape(x1)
    if len(s0) < 1 or len(s1) < 1 or math.prod(s0[1:]) != math.prod(s1[1:]):
        raise ValueError(
            f"squared_distances needs two batches (B, *event) of the same event size, got "
            f"shapes {s0} and {s1}"
        )
    a = x0.reshape(s0[0], -1)
    b = x1.reshape(s1[0], -1)
    centre = 0.5 * (a.mean(0) + b.mean(0))
    a, b = a - centre, b - centre
    if a.shape[1] <= _DIRECT_DIMS:
        # few dimensions: sum the squared differences directly (as fast as the matmul form
        # there, exact to rounding, and the same bits whether or not the call is vmapped)
        sq = sum((a[:, k, None] - b[None, :, k]) ** 2 for k in range(a.shape[1]))
        return jnp.asarray(sq, a.dtype) if a.shape[1] else jnp.zeros((a.shape[0], b.shape[0]), a.dtype)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


_DIRECT_DIMS = 8  # event sizes up to this use the direct sum of squared differences


def condition_cost(cond0, cond1) -> jax.Array | None:
    r"""Squared distances between the continuous conditions of two batches, ``(B, B)``.

    .. math:: D_{ij} = \sum_{\ell\ \text{float leaf}} \|c^\ell_{0,i} - c^\ell_{1,j}\|^2

    Integer (label) leaves are skipped; ``None`` when there is no floating leaf.

    Examples:
      >>> import jax.numpy as jnp
      >>> c = {"y": jnp.array([0, 1]), "v": jnp.array([[0.0], [2.0]])}
      >>> condition_cost(c, c).tolist()
      [[0.0, 4.0], [4.0, 0.0]]
    """
    _check_pair_structure(cond0, cond1)
    _, floats0 = split_cond(cond0)
    _, floats1 = split_cond(cond1)
    if not floats0:
        return None
    return sum(squared_distances(a, b) for a, b in zip(floats0, floats1, strict=True))


def _check_pair_structure(cond0, cond1) -> None:
    t0, t1 = jax.tree.structure(cond0), jax.tree.structure(cond1)
    if t0 != t1:
        raise ValueError(f"cond0 and cond1 must have the same pytree structure, got {t0} and {t1}")
    for a, b in zip(jax.tree.leaves(cond0), jax.tree.leaves(cond1), strict=True):
        if jnp.ndim(a) < 1 or jnp.shape(a)[1:] != jnp.shape(b)[1:]:
            raise ValueError(
                "matching leaves of cond0 and cond1 must be batches (B, *c) of the same c, got "
                f"shapes {jnp.shape(a)} and {jnp.shape(b)}"
            )


def same_label(cond0, cond1) -> jax.Array | None:
    """``(B, B)`` bool: ``True`` where every label leaf agrees; ``None`` without labels."""
    labels0, _ = split_cond(cond0)
    labels1, _ = split_cond(cond1)
    if not labels0:
        return None
    mask = labels0[0][:, None] == labels1[0][None, :]
    for a, b in zip(labels0[1:], labels1[1:], strict=True):
        mask = mask & (a[:, None] == b[None, :])
    return mask


def label_penalty(cost: jax.Array, cond0, cond1) -> jax.Array:
    r"""Add a penalty to the cost of every cross-label pair.

    The penalty :math:`B (\max C - \min C) + 1` exceeds what any within-label matching costs in
    total, so an exact solver crosses labels only where the label counts of the two sides
    differ and a crossing is unavoidable. ``cond0`` / ``cond1`` are label arrays ``(B,)`` or
    condition pytrees (their integer leaves are the labels; float leaves are ignored here).

    Examples:
      >>> import jax.numpy as jnp
      >>> label_penalty(jnp.zeros((2, 2)), jnp.array([0, 1]), jnp.array([0, 1])).tolist()
      [[0.0, 1.0], [1.0, 0.0]]
    """
    shape = jnp.shape(cost)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"cost must be a square matrix (B, B), got shape {shape}")
    _check_pair_structure(cond0, cond1)
    mask = same_label(cond0, cond1)
    if mask is None:
        return cost
    if mask.shape != shape:
        raise ValueError(
            f"the labels of cond0 / cond1 give a {mask.shape} mask for a cost of shape {shape}"
        )
    n = cost.shape[0]
    penalty = n * (cost.max() - cost.min()) + 1.0
    return jnp.where(mask, cost, cost + penalty)


class AbstractCoupling(abc.ABC):
    r"""A minibatch coupling: ``coupling(key, x0, x1, cond0=None, cond1=None) -> Pairing``.

    Couplings compare samples with each other, so they are batched by nature: ``x0`` and
    ``x1`` are ``(B, *event)``. Conditions ``cond0`` / ``cond1`` are pytrees whose leaves have
    leading dimension ``B``: integer labels ``(B,)`` restrict pairs to equal labels
    (label-aware coupling; with a permutation coupling this needs the same label counts on
    both sides, the usual case: give the noise the labels of the data), floating leaves are
    continuous conditions that OT couplings weigh into the cost through ``cond_weight``.
    """

    @abc.abstractmethod
    def pair(self, key, x0, x1, cond0=None, cond1=None) -> Pairing:
        """Return the pairing (inputs already validated)."""

    def __call__(self, key, x0, x1, cond0=None, cond1=None) -> Pairing:
        check_batch(x0, x1, cond0, cond1)
        if cond0 is not None and not jax.tree.leaves(cond0):
            cond0 = cond1 = None  # an empty pytree is no condition
        return self.pair(key, x0, x1, cond0, cond1)
