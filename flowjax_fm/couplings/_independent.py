"""The independent coupling, optionally within labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings._base import AbstractCoupling, Pairing, split_cond

__all__ = ["IndependentCoupling"]


@pytree_dataclass
class IndependentCoupling(AbstractCoupling):
    r"""Independent coupling :math:`\pi(x_0, x_1) = p_0(x_0)\, p_1(x_1)` (I-CFM).

    The two batches are already independent draws, so row ``i`` is paired with row ``i``.
    With integer labels (the integer leaves of ``cond0`` / ``cond1``), each label's source
    rows are paired with that label's data rows in a random order: a permutation of each side,
    sorted by (labels, random tie-break), so that equal ranks share all labels (the label
    counts of both sides must agree). Floating conditions are accepted and need no use here:
    a condition follows its data row (``pairing.apply_target(cond)``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> p = IndependentCoupling()(jax.random.key(0), jnp.zeros((3, 2)), jnp.ones((3, 2)))
      >>> p.source.tolist(), p.target.tolist()
      ([0, 1, 2], [0, 1, 2])
      >>> y = jnp.array([1, 0, 1])
      >>> p = IndependentCoupling()(jax.random.key(0), jnp.zeros((3, 2)), jnp.ones((3, 2)), y, y)
      >>> bool((y[p.source] == y[p.target]).all())
      True
    """

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        n = x0.shape[0]
        labels0, _ = split_cond(cond0)
        labels1, _ = split_cond(cond1)
        if not labels0:
            idx = jnp.arange(n, dtype=jnp.int32)
            return Pairing(idx, idx)
        k0, k1 = jax.random.split(key)
        # lexsort: the last key is the primary one; the random draw breaks ties last
        as_keys = lambda labels: tuple(
            lab.astype(jnp.int32) if lab.dtype == jnp.bool_ else lab for lab in reversed(labels)
        )
        src = jnp.lexsort((jax.random.uniform(k0, (n,)), *as_keys(labels0))).astype(jnp.int32)
        tgt = jnp.lexsort((jax.random.uniform(k1, (n,)), *as_keys(labels1))).astype(jnp.int32)
        return Pairing(src, tgt)
