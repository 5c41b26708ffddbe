"""The independent coupling, optionally within labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings._base import AbstractCoupling, Pairing

__all__ = ["IndependentCoupling"]


@pytree_dataclass
class IndependentCoupling(AbstractCoupling):
    r"""Independent coupling :math:`\pi(x_0, x_1) = p_0(x_0)\, p_1(x_1)` (I-CFM).

    The two batches are already independent draws, so row ``i`` is paired with row ``i``.
    With labels, each label's source rows are paired with that label's data rows in a
    random order (a permutation; the label counts of both sides must agree).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> p = IndependentCoupling()(jax.random.key(0), jnp.zeros((3, 2)), jnp.ones((3, 2)))
      >>> p.source.tolist(), p.target.tolist()
      ([0, 1, 2], [0, 1, 2])
    """

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        n = x0.shape[0]
        if cond0 is None:
            idx = jnp.arange(n, dtype=jnp.int32)
            return Pairing(idx, idx)
        k0, k1 = jax.random.split(key)
        # sort each side by (label, random tie-break): equal ranks share a label
        src = jnp.lexsort((jax.random.uniform(k0, (n,)), cond0)).astype(jnp.int32)
        tgt = jnp.lexsort((jax.random.uniform(k1, (n,)), cond1)).astype(jnp.int32)
        return Pairing(src, tgt)
