"""Exact assignment on the device: a pure-JAX forward auction with epsilon scaling.

:func:`auction_assignment` solves one ``(n, n)`` problem with ``jax.lax`` loops only (no host
callback), so it runs inside ``jit`` on CPU, GPU and TPU and batches with ``jax.vmap``
(per-shard OT: one problem per device or per group).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from flowjax_fm._checks import check_bool, check_int, check_real, fail_if
from flowjax_fm._pytree import pytree_dataclass

__all__ = ["AuctionResult", "auction_assignment"]

# Integer grid: the quantised costs span R <= 2**(BITS + 1) units. Prices are shifted to min 0
# at every phase start; a held column's price then stays within R + eps of every other price
# (its holder's slackness when it bid; prices only rise) and a free column keeps its phase-start
# price (<= R + eps_prev), so every price stays below 3.75 R and every net value a_ij - p_j and
# bid inside [-4.75 R, 4.75 R]: within the integer type (int32: 1.3e9 < 2.1e9; int64: 5.5e18 <
# 9.2e18). Integer sums wrap, so an intermediate outside the range would still end right.
_BITS = {jnp.dtype(jnp.int32): 27, jnp.dtype(jnp.int64): 59}
SCALE = 5  # epsilon shrinks by this factor from one phase to the next
_BLOCK_ELEMENTS = 2**24  # a bidding block holds at most this many cost entries (64 MB of int32)
_MIN_BLOCK = 4  # the fewest rows gathered for a round
_LADDER = 4  # block sizes n, n/4, n/16, ... down to _MIN_BLOCK
_LADDER_FROM = 128  # no ladder (nor chain) below this n: one block, what vmap runs best
_CHAIN = 32  # the most rounds of a single free row run in one step of the loop


@pytree_dataclass
class AuctionResult:
    r"""The outcome of :func:`auction_assignment`.

    Args:
      perm: ``(n,)`` int32, row ``i`` is assigned column ``perm[i]``; always a permutation.
      converged: ``()`` bool, ``True`` when the auction finished within ``max_rounds`` on a
        finite cost, so that ``gap_bound`` holds.
      gap_bound: ``()`` float, a certified bound on
        :math:`\sum_i C_{i, perm(i)} - \min_\sigma \sum_i C_{i\sigma(i)}` in cost units (the
        duality gap of the final prices plus the rounding of the costs to the integer grid;
        ``inf`` when not converged).
      rounds: ``()`` int32, bidding rounds run, every phase together.
      phases: ``()`` int32, epsilon phases run.
    """

    perm: jax.Array
    converged: jax.Array
    gap_bound: jax.Array
    rounds: jax.Array
    phases: jax.Array


def _quantise(cost: jax.Array):
    """Exact integer costs on a power-of-two grid: ``cost = base + unit * (q + r)``.

    ``q`` is an integer ``(n, n)`` with ``min q = 0`` and ``max q <= 2**(BITS + 1)``; the unit
    is ``2**-e``, the smallest power of two with ``max |cost| * 2**e <= 2**BITS``, so scaling
    is exact and the only error is rounding to the grid: ``|r| <= 1/2`` (``rho`` is the largest
    ``|r|``, in units; 0 when the costs already lie on the grid, e.g. float32 costs with an
    offset, or integers).
    """
    int_dtype = jnp.int64 if cost.dtype == jnp.float64 else jnp.int32
    _, top = jnp.frexp(jnp.max(jnp.abs(cost)))  # max |cost| < 2**top
    e = _BITS[jnp.dtype(int_dtype)] - top
    scaled = jnp.ldexp(cost, e)
    grid = jnp.round(scaled)
    rho = jnp.max(jnp.abs(scaled - grid))
    q = grid.astype(int_dtype)
    return q - jnp.min(q), e, rho


def _block_sizes(n: int) -> list[int]:
    top = max(1, min(n, _BLOCK_ELEMENTS // n))
    sizes = [top]
    if n >= _LADDER_FROM:
        while sizes[-1] // _LADDER >= _MIN_BLOCK:
            sizes.append(sizes[-1] // _LADDER)
    return sizes


def _best_two(net, rows, n):
    """Per row of ``net`` (``(k, n)`` integers): the best value, its column and the second best.

    Ties for the best are broken by a rotation: row ``i`` takes the first best column at or
    after column ``i`` (mod n), so rows with equal preferences spread over distinct columns
    (an all-equal cost is solved in one round) instead of all bidding for column 0. One
    variadic reduction finds (best, its offset), a second the best of the other columns.
    """
    low = jnp.iinfo(net.dtype).min
    offset = jnp.arange(n, dtype=jnp.int32)[None, :] - rows[:, None]
    offset = jnp.where(offset < 0, offset + n, offset)

    def better(a, b):
        take_a = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return jnp.where(take_a, a[0], b[0]), jnp.where(take_a, a[1], b[1])

    init = (jnp.array(low, net.dtype), jnp.array(n, jnp.int32))
    v1, first = lax.reduce((net, offset), init, better, (1,))
    v2 = jnp.max(jnp.where(offset == first[:, None], low, net), axis=1)
    j1 = rows + first
    return v1, jnp.where(j1 >= n, j1 - n, j1), v2


def _bid_round(q, prices, owner, eps, k):
    """One Jacobi round: the (first ``k``) unassigned rows bid at once; each column that gets a
    bid goes to its highest bidder (the lowest row among equal bids) at that bid's price."""
    n = q.shape[0]
    rows_all = jnp.arange(n, dtype=jnp.int32)
    owned = jnp.zeros(n, bool).at[owner].set(True, mode="drop")  # owner = n: free column
    if k == n:
        rows, valid, block = rows_all, ~owned, q
    else:
        rows = jnp.nonzero(~owned, size=k, fill_value=0)[0].astype(jnp.int32)
        valid = jnp.arange(k) < jnp.sum(~owned)
        block = q[rows]
    v1, j1, v2 = _best_two(-block - prices[None, :], rows, n)
    # the bid a_ij1 - v2 + eps, i.e. the price at which j1 is worth v2 - eps to the bidder
    bid = jnp.where(valid, (v1 + prices[j1]) - v2 + eps, -1)  # > price >= 0 when valid
    col_bid = jnp.full(n, -1, q.dtype).at[j1].max(bid)
    won = valid & (bid == col_bid[j1])
    winner = jnp.full(n, n, jnp.int32).at[j1].min(jnp.where(won, rows, n))
    got = col_bid >= 0
    return jnp.where(got, col_bid, prices), jnp.where(got, winner, owner)


def _solve(cost, tol, max_rounds):
    """The auction on a finite ``(n, n)`` cost, ``n >= 2``.

    Returns ``(owner, converged, gap_bound, rounds, phases)``; ``owner[j]`` is the row holding
    column ``j`` (``n``: none).
    """
    n = cost.shape[0]
    q, e, rho = _quantise(cost)
    int_dtype = q.dtype
    span = jnp.max(q)
    # eps_final: the most units with n * (eps + 1) <= tol * span (slightly under, against the
    # rounding of this float product), at least one unit
    budget = tol.astype(cost.dtype) * span.astype(cost.dtype) / n * (1 - 1e-6)
    eps_final = jnp.clip(jnp.floor(budget) - 1, 1, jnp.maximum(span, 1)).astype(int_dtype)
    eps_start = jnp.maximum(span // 4, eps_final)
    cols = jnp.arange(n, dtype=jnp.int32)

    def next_phase(prices, owner, eps, done, rounds):
        """Every row holds a column: stop after the final phase, else shrink eps, shift the
        prices to min 0 (a common shift changes nothing) and free the pairs that break the
        new eps-complementary slackness."""
        done = eps <= eps_final
        eps = jnp.where(done, eps, jnp.maximum(eps // SCALE, eps_final))
        prices = prices - jnp.min(prices)
        profit = jnp.max(-q - prices[None, :], axis=1)
        i = jnp.where(owner < n, owner, 0)
        keep = done | (-q[i, cols] - prices >= profit[i] - eps)
        return prices, jnp.where(keep, owner, n), eps, done, rounds

    def bid(k):
        def branch(prices, owner, eps, done, rounds):
            return (*_bid_round(q, prices, owner, eps, k), eps, done, rounds + 1)

        return branch

    def chain(prices, owner, eps, done, rounds):
        """One row is free: its rounds are a chain (it takes a column, whose holder is then the
        one free row, ...); run up to _CHAIN of them without the per-round bookkeeping."""
        owned = jnp.zeros(n, bool).at[owner].set(True, mode="drop")
        limit = jnp.minimum(rounds + _CHAIN, max_rounds)

        def link(c):
            row, prices, owner, rounds = c
            v1, j1, v2 = (x[0] for x in _best_two(-q[row][None, :] - prices[None, :], row[None], n))
            prices = prices.at[j1].set((v1 + prices[j1]) - v2 + eps)
            return owner[j1], prices, owner.at[j1].set(row), rounds + 1

        start = jnp.argmin(owned).astype(jnp.int32)
        _, prices, owner, rounds = lax.while_loop(
            lambda c: (c[0] < n) & (c[3] < limit), link, (start, prices, owner, rounds)
        )
        return prices, owner, eps, done, rounds

    # one loop for every phase: under vmap each problem moves through its phases on its own
    sizes = _block_sizes(n)
    branches = [next_phase] + [bid(k) for k in sizes] + ([chain] if len(sizes) > 1 else [])
    smaller = jnp.asarray(sizes[1:], jnp.int32)

    def step(carry):
        prices, owner, eps, done, rounds, phases = carry
        free = jnp.sum(owner >= n, dtype=jnp.int32)
        # 0: the phase is over; else the smallest block of rows that holds every bidder, or
        # the chain of a single free row
        index = jnp.where(free == 0, 0, 1 + jnp.sum(free <= smaller, dtype=jnp.int32))
        index = jnp.where(free == 1, len(branches) - 1, index)
        prices, owner, eps, done, rounds = lax.switch(index, branches, prices, owner, eps, done, rounds)
        return prices, owner, eps, done, rounds, phases + (index == 0)

    init = (
        jnp.zeros(n, int_dtype),
        jnp.full(n, n, jnp.int32),
        eps_start,
        jnp.bool_(False),
        jnp.int32(0),
        jnp.int32(0),
    )
    prices, owner, _, done, rounds, phases = lax.while_loop(lambda c: ~c[3] & (c[4] < max_rounds), step, init)
    converged = done
    # certificate: the duality gap of the final prices (exact, in units) plus the grid rounding
    held = owner < n
    i = jnp.where(held, owner, 0)
    profit = jnp.max(-q - prices[None, :], axis=1)
    slack = jnp.where(held, profit[i] - (-q[i, cols] - prices), 0)
    gap = jnp.sum(slack).astype(cost.dtype) + 2 * n * rho
    return owner, converged, jnp.where(converged, jnp.ldexp(gap, -e), jnp.inf), rounds, phases


def _permutation(owner: jax.Array) -> jax.Array:
    """Row -> column from column -> row (``n``: free); free rows take the free columns in order
    (only after a failure: a permutation to index with, never reported as a solution)."""
    n = owner.shape[0]
    cols = jnp.arange(n, dtype=jnp.int32)
    perm = jnp.full(n, -1, jnp.int32).at[owner].set(cols, mode="drop")
    free_rows = jnp.nonzero(perm < 0, size=n, fill_value=n)[0]
    free_cols = jnp.nonzero(owner >= n, size=n, fill_value=0)[0].astype(jnp.int32)
    return perm.at[free_rows].set(free_cols, mode="drop")


_NON_FINITE = (
    "auction_assignment: the cost matrix has a non-finite entry (nan or inf), so it has no "
    "optimal assignment; check the data (or the cost) for nan / inf"
)


def _check_cost(cost) -> jax.Array:
    if not isinstance(cost, jax.Array | jax.core.Tracer):
        try:
            cost = jnp.asarray(cost)
        except (TypeError, ValueError) as err:
            raise ValueError(f"cost must be a real (n, n) array, got {type(cost).__name__}: {err}") from None
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square 2D array (n, n), got shape {cost.shape}")
    if jnp.issubdtype(cost.dtype, jnp.complexfloating) or cost.dtype == jnp.bool_:
        raise ValueError(f"cost must have a real dtype, got {cost.dtype} (shape {cost.shape})")
    if not jnp.issubdtype(cost.dtype, jnp.floating):
        return cost.astype(jnp.result_type(float))  # integers: the default float dtype
    if jnp.finfo(cost.dtype).bits < 32:
        return cost.astype(jnp.float32)  # float16 / bfloat16: solved in float32
    return cost


def auction_assignment(cost, *, tol=1e-6, max_rounds: int | None = None, throw: bool = True) -> AuctionResult:
    r"""Exact (to a stated tolerance) linear assignment on the device: a forward auction.

    Finds a permutation that pairs each row with one column at least total cost,

    .. math:: \sigma^\star = \arg\min_{\sigma \in S_n} \sum_{i=1}^n C_{i \sigma(i)},

    with ``jax.lax`` loops only: no host callback, so it runs inside ``jit`` on any backend
    and batches with :func:`jax.vmap` (many small problems at once: per-shard OT).

    **Algorithm** (Bertsekas 1988). Rows bid for columns with benefits :math:`a_{ij} = -C_{ij}`
    against column prices :math:`p_j`. In a round every unassigned row :math:`i` finds its best
    column :math:`j^\star = \arg\max_j a_{ij} - p_j` (value :math:`v_i`, second best
    :math:`w_i`) and bids :math:`p_{j^\star} + (v_i - w_i) + \varepsilon`; all rows bid at once
    (Jacobi), each column goes to its highest bidder (ties to the lowest row) at that price and
    its previous holder is freed. Every assignment made keeps
    :math:`\varepsilon`-complementary slackness,

    .. math:: a_{i\sigma(i)} - p_{\sigma(i)} \ge \max_j (a_{ij} - p_j) - \varepsilon ,

    so once every row holds a column the total cost is within :math:`n \varepsilon` of the
    optimum. Epsilon scaling (Bertsekas and Castanon 1989): phases with
    :math:`\varepsilon` from a quarter of the cost range down to :math:`\varepsilon_{final}`,
    5x smaller each time, prices kept; at a phase start the pairs that satisfy the new
    slackness stay, the others bid again. When few rows are left only they are gathered
    (blocks of ``n, n/4, n/16, ...`` rows), so a round costs in proportion to its bidders.

    **Arithmetic.** Prices are integers: the costs are put on a power-of-two grid,
    :math:`C = c_0 + u\,(Q + r)` with integer :math:`Q \in [0, 2^{28}]` (``int32``; under
    ``jax.enable_x64`` a float64 cost gets ``int64`` and :math:`2^{60}`), unit
    :math:`u = 2^{\lfloor \log_2 \max|C| \rfloor - 26}` (resp. ``- 58``) and rounding
    :math:`|r| \le 1/2` (zero when the costs lie on the grid: integers, or float32 costs
    whose spread is small next to their size). Bids and comparisons are then exact
    (deterministic ties, no stalled bids below a float's resolution) and every price stays
    below :math:`3.75 \cdot 2^{28}`. The grid is 8 times finer than float32's spacing at
    :math:`\max|C|`; it follows :math:`\max|C|`, so one huge entry coarsens it for all
    (clip such costs first; the label penalty of :func:`~flowjax_fm.couplings.label_penalty`
    widens the range n-fold).

    **Guarantee.** With :math:`\varepsilon_{final} = \max(1, \lfloor tol \cdot S / n
    \rfloor - 1)` units, where :math:`S u` is the cost range on the grid (within one unit of
    :math:`\max C - \min C`), a converged result satisfies

    .. math:: \sum_i C_{i\,perm(i)} \le \min_\sigma \sum_i C_{i\sigma(i)}
       + \max(tol \cdot S,\; 2n)\, u ,

    i.e. ``tol`` times the cost range, down to a floor of ``2 n`` grid units (at most
    :math:`2^{-25} n \max|C|` in float32, :math:`2^{-57} n \max|C|` in float64).
    ``gap_bound`` is the certificate of the solve itself (duality gap of the final prices
    plus the rounding), usually far below.
    Integer costs with :math:`n \max|C| < 2^{26}` and ``tol=0`` are solved exactly (the
    excess is an integer below 1). This is the statement to rely on; for exact optima of
    arbitrary float costs use :func:`solve_assignment` with ``method="c"``.

    **Cost.** A round reads the bidders' rows of the cost (all ``n^2`` entries while many
    rows bid); geometric costs (squared distances of point clouds) took 5 to 30 ``n`` rounds
    over 11 or 12 phases, uniform random costs fewer; under :func:`jax.vmap` the loop runs
    until the slowest problem is done. On one CPU core that is far slower than the compiled
    solver behind :func:`solve_assignment` (see ``benchmarks/bench_auction.py``); this
    solver is for accelerators and for programs that must not call back to the host.

    Args:
      cost: cost matrix ``(n, n)``, real. float32 (default) or float64 (under
        ``jax.enable_x64``, solved on the ``int64`` grid); float16 / bfloat16 are solved in
        float32, integers in the default float dtype. Batch it with :func:`jax.vmap`.
      tol: accepted excess over the optimum, relative to the cost range, in ``[0, 1]``
        (default ``1e-6``; ``0``: the finest the grid allows, one unit per row). May be traced.
      max_rounds: the most bidding rounds, all phases together (static int >= 1; default
        ``100 n + 1000``, several times what the slowest problem measured needed).
      throw: when the result cannot be trusted (non-finite cost, or ``max_rounds`` reached),
        raise (``True``, default) or return it with ``converged=False`` (``perm`` is then
        still a permutation, not a solution).

    Returns:
      :class:`AuctionResult` with ``perm`` (``(n,)`` int32), ``converged``, ``gap_bound``,
      ``rounds`` and ``phases``.

    Raises:
      ValueError: ``cost`` not a square 2D real array, ``tol`` outside ``[0, 1]``, a bad
        ``max_rounds`` or ``throw``.
      RuntimeError: at run time with ``throw=True``: a non-finite entry in ``cost``, or
        ``max_rounds`` reached (through :func:`equinox.error_if`).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
      >>> res = jax.jit(auction_assignment)(cost)
      >>> res.perm.tolist(), bool(res.converged), float(cost[jnp.arange(3), res.perm].sum())
      ([1, 0, 2], True, 5.0)
      >>> jax.vmap(auction_assignment)(jnp.stack([cost, cost.T])).perm.tolist()
      [[1, 0, 2], [1, 0, 2]]

    References:
      Bertsekas 1988, The auction algorithm: a distributed relaxation method for the
      assignment problem. Bertsekas and Castanon 1989, The auction algorithm for the
      transportation problem (epsilon scaling).
    """
    cost = _check_cost(cost)
    check_real("tol", tol, 0.0, 1.0)
    n = cost.shape[0]
    max_rounds = 100 * n + 1000 if max_rounds is None else max_rounds
    max_rounds = check_int("max_rounds", max_rounds, 1, 2**31 - 1)
    throw = check_bool("throw", throw)
    finite = jnp.all(jnp.isfinite(cost))
    if n <= 1:
        perm, converged = jnp.zeros(n, jnp.int32), finite
        gap_bound, rounds, phases = jnp.zeros((), cost.dtype), jnp.int32(0), jnp.int32(0)
    else:
        owner, converged, gap_bound, rounds, phases = _solve(
            jnp.where(finite, cost, 0), jnp.asarray(tol, jnp.float32), max_rounds
        )
        perm, converged = _permutation(owner), converged & finite
    stopped = (
        f"auction_assignment did not finish within max_rounds={max_rounds} bidding "
        "rounds; raise max_rounds (or tol), or pass throw=False to get the result with "
        "converged=False"
    )
    perm = fail_if(perm, ~finite, _NON_FINITE, throw)
    perm = fail_if(perm, finite & ~converged, stopped, throw)
    gap_bound = jnp.where(converged, gap_bound, jnp.inf)
    return AuctionResult(perm, converged, gap_bound, rounds, phases)
