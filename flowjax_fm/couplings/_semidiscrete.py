r"""Semidiscrete OT against the whole data set (SD-FM): one dual potential, learned once.

Minibatch OT pairs the ``B`` noise rows of a batch with its ``B`` data rows. The semidiscrete
coupling instead pairs each noise row with the whole data set :math:`\{y_j\}_{j=1}^N`, through
a dual potential :math:`g \in \mathbb{R}^N` learned once, before training (by ott-jax's
stochastic solver, :func:`fit_semidiscrete`); after that a pairing costs one scan over the
data per batch (a maximum inner product search), and no OT solve.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import (
    as_floating,
    check_batched,
    check_finite,
    check_int,
    check_positive_int,
    check_real,
    is_traced,
)
from flowjax_fm._pytree import pytree_dataclass, static_field

__all__ = ["SemidiscreteCoupling", "SemidiscreteInfo", "fit_semidiscrete"]


@dataclasses.dataclass(frozen=True)
class SemidiscreteInfo:
    r"""How well a learned potential solves the semidiscrete problem (from :func:`fit_semidiscrete`).

    Every figure except ``solver_chi2`` is measured after the solve, on ``num_check`` fresh
    source points :math:`x_1..x_M` assigned by :meth:`SemidiscreteCoupling.assign` (the very
    function training uses), with counts :math:`c_j = \#\{m : j(x_m) = j\}`:

    * ``marginal_tv``: :math:`\tfrac12 \sum_j |c_j/M - 1/N|`, the total variation between the
      histogram of assigned rows and the uniform data measure. Even an exact potential shows
      ``marginal_tv_floor`` here (multinomial noise of :math:`M` draws in :math:`N` cells,
      :math:`\approx \sqrt{N / (2\pi M)}` for :math:`M \gg N`): compare the two.
    * ``marginal_max``: :math:`\max_j |N c_j / M - 1|`, the worst relative error of a row's
      share (same noise caveat: about :math:`\sqrt{2 N \log N / M}` at the optimum).
    * ``marginal_chi2``: the unbiased estimate :math:`N \sum_j c_j (c_j - 1) / (M (M - 1)) - 1`
      of :math:`\chi^2(p \,\|\, \mathrm{unif}) = N \sum_j p_j^2 - 1`, :math:`p_j` the true share
      of row :math:`j`: the mean squared relative error of the shares. Zero in expectation at
      the optimum whatever :math:`M` (its noise: about :math:`\sqrt{2N}/M`).
    * ``dual``: the semi-dual objective :math:`D(g)` (see :func:`fit_semidiscrete`) at the
      returned potential, a Monte-Carlo estimate; by weak duality its expectation is at most
      the (entropic, when ``epsilon > 0``) OT cost between the source and the data, with
      equality at the optimum.
    * ``transport_cost``: :math:`\tfrac1M \sum_m \|x_m - y_{j(x_m)}\|^2`, the mean squared
      distance of the pairs the coupling draws.
    * ``solver_chi2``: ott-jax's own :math:`\chi^2` estimate at its last check (on its
      batches; ``nan`` when it made none).
    * ``num_steps``: the SGD steps run (fewer than asked when ``threshold`` stopped it),
      ``fit_s`` the wall time of the solve (compilation included), ``check_s`` of the check.
    """

    num_steps: int
    batch_size: int
    learning_rate: float
    epsilon: float
    num_check: int
    dual: float
    transport_cost: float
    marginal_tv: float
    marginal_tv_floor: float
    marginal_max: float
    marginal_chi2: float
    solver_chi2: float
    fit_s: float
    check_s: float


def _inverse_cdf(logits: jax.Array, u: jax.Array) -> jax.Array:
    r"""One index per row of ``logits`` ``(B, K)``, drawn with probability
    :math:`\operatorname{softmax}` of the row, by inverting its cumulative sum at ``u`` ``(B,)``
    in ``[0, 1)``: the first :math:`k` with :math:`\sum_{i \le k} w_i > u \sum_i w_i`.

    Two uniforms a row instead of ``K`` Gumbel draws (``jax.random.categorical``). A weight
    that is zero (a ``-inf`` logit) is never drawn: a rounding past the last positive weight is
    clamped to it.
    """
    top = jnp.max(logits, axis=1, keepdims=True)
    w = jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0))
    cdf = jnp.cumsum(w, axis=1)
    idx = jnp.sum(cdf <= (u * cdf[:, -1])[:, None], axis=1)
    last = logits.shape[1] - 1 - jnp.argmax(w[:, ::-1] > 0, axis=1)
    return jnp.minimum(idx, last)


def _check_cond_rows(cond, n: int):
    """``cond`` as a pytree of arrays whose leaves all have leading size ``n`` (or ``None``)."""
    if cond is None:
        return None
    cond = jax.tree.map(lambda c: c if is_traced(c) else jnp.asarray(c), cond)
    leaves = jax.tree.leaves(cond)
    if not leaves:
        raise ValueError("cond has no arrays: give None, or a pytree of arrays (N, ...)")
    for leaf in leaves:
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
            raise ValueError(
                f"every leaf of cond must have the data's leading size {n} (one condition per data "
                f"row), got a leaf of shape {jnp.shape(leaf)}"
            )
    return cond


@pytree_dataclass
class SemidiscreteCoupling:
    r"""Semidiscrete OT coupling: each noise row is paired with a row of the whole data set.

    With the data :math:`y_1..y_N` (uniform weights :math:`1/N`) and a dual potential
    :math:`g \in \mathbb{R}^N`, a source point :math:`x` is paired with

    .. math::
       j^\star(x) = \arg\min_j\ \|x - y_j\|^2 - g_j \qquad (\varepsilon = 0),

    or, with entropic regularisation :math:`\varepsilon > 0`, with a row drawn from

    .. math::
       P(j \mid x) = \operatorname{softmax}_j\big((g_j - \|x - y_j\|^2) / \varepsilon\big).

    For any :math:`g`, the hard map :math:`x \mapsto y_{j^\star(x)}` is the exact OT map (for
    the squared distance) from the source to its own image :math:`\sum_j p_j \delta_{y_j}`,
    :math:`p_j` the source mass of the Laguerre cell of :math:`y_j`; the potential that
    :func:`fit_semidiscrete` learns makes :math:`p_j \approx 1/N`, so the pairing is
    (approximately) the OT plan between the source and the data. Its ``info`` says how close.

    The search runs over the data in chunks of ``chunk_size`` rows (memory ``B x chunk_size``
    for a batch of ``B``, so ``N`` can be ~1e6) and in blocks of ``block_size`` rows: per
    block only a maximum (or a log-sum-exp) is kept, a block is chosen, then a row inside it.
    Both are exact: the block with the largest maximum holds the argmax; drawing a block by its
    total weight and then a row by its weight within the block draws the row by its weight.
    (On XLA:CPU an ``argmax`` over a large array is far slower than a maximum or a sum over
    it; the two levels keep the argmax small.)

    Args:
      data: the data rows :math:`y_j`, ``(N, *event)`` floating.
      potential: the dual potential :math:`g`, ``(N,)``, finite (from
        :func:`fit_semidiscrete`; zeros give the nearest data row).
      epsilon: :math:`\varepsilon \ge 0`, in the units of squared distances (a pytree leaf;
        ``0`` = hard argmin). Use the value the potential was learned with.
      cond: optional pytree of arrays with leading size ``N``: the conditions of the data rows,
        which follow their rows in :meth:`transform`.
      chunk_size: data rows scored at once, an int ``>= 1`` (static).
      block_size: rows per block, an int ``>= 1`` (static); a batch gathers ``B x block_size``
        data rows for the second level.
      info: the :class:`SemidiscreteInfo` of the fit (static; ``None`` when built by hand).

    Raises:
      ValueError: at construction, ``data`` not floating ``(N, *event)`` or holding NaN / inf,
        ``potential`` not ``(N,)`` or not finite, ``epsilon`` negative or not finite, a
        ``cond`` leaf without leading size ``N``, ``chunk_size`` / ``block_size`` not ints
        ``>= 1`` (traced values pass: they cannot be read).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> data = jnp.array([[0.0], [1.0], [3.0]])
      >>> sd = SemidiscreteCoupling(data, jnp.zeros(3))  # g = 0: nearest data row
      >>> sd.assign(jax.random.key(0), jnp.array([[-5.0], [0.9], [2.1]])).tolist()
      [0, 1, 2]
      >>> sd = SemidiscreteCoupling(data, jnp.array([0.0, 0.0, 5.0]))  # row 2 pulls harder
      >>> sd.assign(jax.random.key(0), jnp.array([[-5.0], [0.9], [2.1]])).tolist()
      [0, 2, 2]

    References:
      Mousavi-Hosseini, Zhang, Klein, Cuturi 2026, Flow Matching with Semidiscrete Couplings
      (ICLR); Genevay, Cuturi, Peyré, Bach 2016, Stochastic Optimization for Large-scale
      Optimal Transport.
    """

    data: jax.Array
    potential: jax.Array
    epsilon: float = 0.0
    cond: Any = None
    chunk_size: int = static_field(default=2048)
    block_size: int = static_field(default=64)
    info: SemidiscreteInfo | None = static_field(default=None)

    def __post_init__(self):
        data = as_floating("data", self.data)
        shape = check_batched("data", data, what="(N, *event)")
        potential = as_floating("potential", self.potential)
        if jnp.shape(potential) != (shape[0],):
            raise ValueError(
                f"potential must have shape ({shape[0]},), one value per data row; got potential of "
                f"shape {jnp.shape(potential)} for data of shape {shape}"
            )
        check_finite("data", data)
        check_finite("potential", potential)
        check_real("epsilon", self.epsilon, 0.0)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "potential", potential)
        object.__setattr__(self, "cond", _check_cond_rows(self.cond, shape[0]))
        for name in ("chunk_size", "block_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.info is not None and not isinstance(self.info, SemidiscreteInfo):
            raise TypeError(f"info must be None or a SemidiscreteInfo, got {type(self.info).__name__}")

    @property
    def num_rows(self) -> int:
        """``N``, the number of data rows."""
        return self.data.shape[0]

    @property
    def _num_blocks(self) -> int:
        n = self.data.shape[0]
        return -(-n // min(self.block_size, n))

    # -- the search ---------------------------------------------------------------------
    def _layout(self, x0):
        """Centred flat query rows ``(B, D)``, data blocks ``(K, C, D)``, ``h`` blocks ``(K, C)``
        and the chunking ``(chunks, blocks per chunk)``.

        Scores are :math:`s_j = g_j - \\|y_j\\|^2 + 2 x \\cdot y_j = g_j - \\|x - y_j\\|^2 +
        \\|x\\|^2` (a constant per row, which changes neither the argmax nor the softmax), on
        points centred at the data mean (distances are translation invariant; centring keeps
        float32 digits). Padding rows get :math:`h = -\\infty` and are never chosen.
        """
        n = self.data.shape[0]
        d = math.prod(self.data.shape[1:])
        y = self.data.reshape(n, d).astype(jnp.float32)
        centre = jnp.mean(y, axis=0)
        y = y - centre
        x = x0.reshape(x0.shape[0], d).astype(jnp.float32) - centre
        h = self.potential.astype(jnp.float32) - jnp.sum(y * y, axis=1)
        c = min(self.block_size, n)
        blocks = -(-n // c)
        per_chunk = max(1, min(self.chunk_size // c, blocks))
        chunks = -(-blocks // per_chunk)
        total = chunks * per_chunk * c
        y = jnp.pad(y, ((0, total - n), (0, 0)))
        h = jnp.pad(h, (0, total - n), constant_values=-jnp.inf)
        return x, y.reshape(-1, c, d), h.reshape(-1, c), chunks, per_chunk

    def _block_stats(self, x, y_blocks, h_blocks, chunks, per_chunk, eps, soft: bool):
        """Per query row and block: the block's maximum score (hard) or its
        ``eps * log sum exp(s / eps)`` (soft), ``(B, K)``, one chunk of blocks at a time."""
        c, d = y_blocks.shape[1], y_blocks.shape[2]
        y_chunks = y_blocks.reshape(chunks, per_chunk * c, d)
        h_chunks = h_blocks.reshape(chunks, per_chunk * c)

        def one_chunk(args):
            y, h = args
            s = (h[None, :] + 2.0 * (x @ y.T)).reshape(x.shape[0], per_chunk, c)
            top = jnp.max(s, axis=-1)
            if not soft:
                return top
            safe = jnp.where(jnp.isfinite(top), top, 0.0)
            total = jnp.sum(jnp.exp((s - safe[..., None]) / eps), axis=-1)
            return safe + eps * jnp.log(total)

        if chunks == 1:
            return one_chunk((y_chunks[0], h_chunks[0]))
        stats = jax.lax.map(one_chunk, (y_chunks, h_chunks))  # (chunks, B, per_chunk)
        return jnp.moveaxis(stats, 0, 1).reshape(x.shape[0], chunks * per_chunk)

    def _within(self, x, y_blocks, h_blocks, block):
        """Scores ``(B, C)`` of the rows of each query's chosen block."""
        y = jnp.take(y_blocks, block, axis=0)  # (B, C, D)
        h = jnp.take(h_blocks, block, axis=0)  # (B, C)
        return h + 2.0 * jnp.einsum("bd,bcd->bc", x, y)

    def _assign_hard(self, x, layout):
        """Indices ``(B,)`` and the block maxima ``(B, K)``."""
        y_blocks, h_blocks, chunks, per_chunk = layout
        stats = self._block_stats(x, y_blocks, h_blocks, chunks, per_chunk, None, soft=False)
        stats = stats[:, : self._num_blocks]
        block = jnp.argmax(stats, axis=1)
        inner = jnp.argmax(self._within(x, y_blocks, h_blocks, block), axis=1)
        return block * y_blocks.shape[1] + inner, stats

    def _assign_soft(self, key, x, layout, eps):
        """Drawn indices ``(B,)`` and the blocks' ``eps log sum exp(s / eps)`` ``(B, K)``."""
        y_blocks, h_blocks, chunks, per_chunk = layout
        stats = self._block_stats(x, y_blocks, h_blocks, chunks, per_chunk, eps, soft=True)
        # only the blocks that hold data: the draws do not depend on the chunking
        stats = stats[:, : self._num_blocks]
        u = jax.random.uniform(key, (x.shape[0], 2), jnp.float32)
        block = _inverse_cdf(stats / eps, u[:, 0])
        inner = _inverse_cdf(self._within(x, y_blocks, h_blocks, block) / eps, u[:, 1])
        return block * y_blocks.shape[1] + inner, stats

    def _checked_x0(self, x0) -> jax.Array:
        x0 = as_floating("x0", x0)
        event = tuple(self.data.shape[1:])
        if x0.ndim != 1 + len(event) or tuple(x0.shape[1:]) != event:
            raise ValueError(
                f"x0 must be a batch (B, *event) with the data's event shape {event}; got x0 of "
                f"shape {tuple(x0.shape)} for data of shape {tuple(self.data.shape)}"
            )
        if x0.shape[0] == 0:
            raise ValueError(f"x0 is an empty batch: shape {tuple(x0.shape)}")
        return x0

    def assign(self, key: jax.Array, x0: jax.Array) -> jax.Array:
        r"""The data row paired with each source row: :math:`j^\star(x_0^i)`, or a draw from
        :math:`\operatorname{softmax}_j((g_j - \|x_0^i - y_j\|^2)/\varepsilon)`.

        Args:
          key: a ``jax.random.key`` (used only when ``epsilon > 0``).
          x0: source rows ``(B, *event)``, the data's event shape.

        Returns:
          ``(B,)`` int32 indices into ``data``.

        Raises:
          ValueError: at trace time, ``x0`` not floating, not ``(B, *event)`` with the data's
            event shape, or empty (the message quotes both shapes).

        Examples:
          >>> import jax, jax.numpy as jnp
          >>> sd = SemidiscreteCoupling(jnp.array([[0.0, 0.0], [4.0, 0.0]]), jnp.zeros(2))
          >>> sd.assign(jax.random.key(0), jnp.array([[1.0, 1.0], [3.5, -2.0]])).tolist()
          [0, 1]
        """
        x0 = self._checked_x0(x0)
        x, y_blocks, h_blocks, chunks, per_chunk = self._layout(x0)
        layout = (y_blocks, h_blocks, chunks, per_chunk)
        eps = self.epsilon
        if is_traced(eps):
            eps = jnp.asarray(eps, jnp.float32)
            idx = jax.lax.cond(
                eps > 0,
                lambda: self._assign_soft(key, x, layout, jnp.where(eps > 0, eps, 1.0))[0],
                lambda: self._assign_hard(x, layout)[0],
            )
        elif float(np.asarray(eps)) > 0:
            idx, _ = self._assign_soft(key, x, layout, jnp.asarray(eps, jnp.float32))
        else:
            idx, _ = self._assign_hard(x, layout)
        return jnp.minimum(idx, self.data.shape[0] - 1).astype(jnp.int32)

    def pair(self, key: jax.Array, x0: jax.Array):
        """``(x1, cond)``: the data rows (and their conditions, or ``None``) paired with ``x0``.

        Examples:
          >>> import jax, jax.numpy as jnp
          >>> sd = SemidiscreteCoupling(jnp.array([[0.0], [9.0]]), jnp.zeros(2),
          ...                           cond=jnp.array([7, 8]))
          >>> x1, c = sd.pair(jax.random.key(0), jnp.array([[8.0], [1.0]]))
          >>> x1.tolist(), c.tolist()
          ([[9.0], [0.0]], [8, 7])
        """
        idx = self.assign(key, x0)
        x1 = jnp.take(self.data, idx, axis=0)
        cond = None if self.cond is None else jax.tree.map(lambda a: jnp.take(a, idx, axis=0), self.cond)
        return x1, cond

    def transform(self, key: jax.Array, batch):
        r"""``fit``'s batch hook: replace ``batch.x1`` (and ``batch.cond``) by the rows paired
        with ``batch.x0``.

        Pass it as ``fm.training.fit(..., transform=coupling.transform)`` with ``target`` the
        data (``coupling.data``, or ``(coupling.data, coupling.cond)``): the data rows ``fit``
        draws are replaced, so only their shape matters. ``source`` must be the distribution
        the potential was learned for (``None``, standard normal noise, by default). The
        compiled training chunk holds ``data`` and ``potential`` as constants, and a new
        coupling object compiles anew.

        Raises:
          ValueError: at trace time, ``batch.x0`` of another event shape than the data, or a
            batch carrying conditions when the coupling holds none (they would no longer
            belong to the new rows; build the coupling with ``cond=``).

        Examples:
          >>> import jax, jax.numpy as jnp, optax
          >>> from flax import nnx
          >>> import flowjax_fm as fm
          >>> data = jax.random.normal(jax.random.key(1), (64, 2)) + 3.0
          >>> sd = fm.couplings.SemidiscreteCoupling(data, jnp.zeros(64))  # or fit_semidiscrete
          >>> model = fm.models.MLP(2, (16,), rngs=nnx.Rngs(0))
          >>> step = fm.training.make_train_step(model, optimizer=optax.adam(1e-3),
          ...                                    path=fm.paths.CondOTPath())
          >>> state, hist = fm.training.fit(step, fm.training.init_state(model, optax.adam(1e-3)),
          ...                               jax.random.key(2), None, data, num_steps=5,
          ...                               batch_size=8, progress=False, transform=sd.transform)
          >>> hist["loss"].shape
          (5,)
        """
        x0 = batch.x0
        if tuple(jnp.shape(x0)[1:]) != tuple(self.data.shape[1:]):
            raise ValueError(
                f"SemidiscreteCoupling.transform: batch.x0 of shape {tuple(jnp.shape(x0))} does not "
                f"match the data rows of shape {tuple(self.data.shape)} (event shapes must agree)"
            )
        if self.cond is None and batch.cond is not None:
            raise ValueError(
                "SemidiscreteCoupling.transform: the batch carries conditions but the coupling "
                "holds none; they would not belong to the paired rows. Build the coupling with "
                "cond= (fit_semidiscrete(..., cond=...)) so that conditions follow their rows"
            )
        x1, cond = self.pair(key, x0)
        return batch._replace(x1=x1, cond=cond)

    # -- diagnostics ----------------------------------------------------------------------
    def _assign_and_dual(self, key, x0):
        """:meth:`assign` (concrete ``epsilon``) and, per source row, the c-transform
        :math:`f(x) = \\min_j \\|x - y_j\\|^2 - g_j` (entropic: :math:`-\\varepsilon \\log
        \\frac1N \\sum_j e^{(g_j - \\|x - y_j\\|^2)/\\varepsilon}`), from the same scores."""
        x, y_blocks, h_blocks, chunks, per_chunk = self._layout(x0)
        layout = (y_blocks, h_blocks, chunks, per_chunk)
        eps = float(np.asarray(self.epsilon))
        sq = jnp.sum(x * x, axis=1)
        if eps > 0:
            idx, stats = self._assign_soft(key, x, layout, jnp.float32(eps))
            lse = eps * jax.scipy.special.logsumexp(stats / eps, axis=1)
            f = sq - lse + eps * math.log(self.data.shape[0])
        else:
            idx, stats = self._assign_hard(x, layout)
            f = sq - jnp.max(stats, axis=1)
        return jnp.minimum(idx, self.data.shape[0] - 1), f


# -- learning the potential --------------------------------------------------------------


def _source_sampler(source, event: tuple, key) -> Callable:
    """``source`` as ``(key, n) -> (n, *event)`` float32, probed once with ``jax.eval_shape``."""
    if source is None:
        return lambda k, n: jax.random.normal(k, (n, *event), jnp.float32)
    if not callable(source):
        raise TypeError(
            f"source must be None or a sampler (key, n) -> (n, *event), got {type(source).__name__}"
        )
    probe = jax.eval_shape(lambda k: source(k, 3), key)
    shape = getattr(probe, "shape", None)
    if shape is None or tuple(shape) != (3, *event):
        raise ValueError(
            f"source(key, n) must return an array (n, *event) with the data's event shape {event}; "
            f"source(key, 3) gave {shape if shape is not None else type(probe).__name__}"
        )
    return lambda k, n: jnp.asarray(source(k, n), jnp.float32)


def _binomial_tv_floor(m: int, n: int) -> float:
    r""":math:`E\,\tfrac12 \sum_j |c_j / M - 1/N|` for counts :math:`c \sim \mathrm{Mult}(M, 1/N)`:
    the total variation an exact solution shows with ``m`` check points (de Moivre's mean
    absolute deviation of a binomial, exact)."""
    if n == 1:
        return 0.0
    p = 1.0 / n
    k = math.floor(m * p)
    log_mad = (math.log(2.0) + math.log(k + 1) + math.lgamma(m + 1) - math.lgamma(k + 2)
               - math.lgamma(m - k) + (k + 1) * math.log(p) + (m - k) * math.log1p(-p))
    return 0.5 * n * math.exp(log_mad) / m


def _check(coupling: SemidiscreteCoupling, key, sampler, num_check: int, batch: int):
    """Assign ``num_check`` fresh source points; the marginal error, dual value and cost."""
    n = coupling.num_rows
    steps = -(-num_check // batch)

    @jax.jit
    def run(key):
        def one(i):
            k_x, k_a = jax.random.split(jax.random.fold_in(key, i))
            x = sampler(k_x, batch)
            idx, f = coupling._assign_and_dual(k_a, x)
            y = jnp.take(coupling.data, idx, axis=0).astype(jnp.float32)
            cost = jnp.sum((x - y).reshape(batch, -1) ** 2, axis=1)
            return idx, cost, f

        idx, cost, f = jax.lax.map(one, jnp.arange(steps))
        return idx.reshape(-1), cost.reshape(-1), f.reshape(-1)

    idx, cost, f = jax.device_get(run(key))
    idx, cost, f = idx[:num_check], cost[:num_check], f[:num_check]
    counts = np.bincount(idx, minlength=n).astype(np.float64)
    m = float(num_check)
    share = counts / m
    g_mean = float(np.mean(np.asarray(jax.device_get(coupling.potential), np.float64)))
    return {
        "dual": float(np.mean(f, dtype=np.float64)) + g_mean,
        "transport_cost": float(np.mean(cost, dtype=np.float64)),
        "marginal_tv": float(0.5 * np.abs(share - 1.0 / n).sum()),
        "marginal_tv_floor": _binomial_tv_floor(num_check, n),
        "marginal_max": float(np.max(np.abs(share * n - 1.0))),
        "marginal_chi2": float(n * np.sum(counts * (counts - 1.0)) / (m * (m - 1.0)) - 1.0)
        if num_check > 1 else float("nan"),
    }


def fit_semidiscrete(
    key: jax.Array,
    data,
    *,
    epsilon: float = 0.0,
    num_steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 0.05,
    source: Callable | None = None,
    cond=None,
    threshold: float | None = None,
    num_check: int = 65536,
    chunk_size: int = 2048,
    block_size: int = 64,
) -> SemidiscreteCoupling:
    r"""Learn the dual potential of the semidiscrete OT from a source to the data (ott-jax).

    With source :math:`\mu` (standard normal of the data's event shape unless ``source`` is
    given) and the data measure :math:`\nu = \frac1N \sum_j \delta_{y_j}`, the semi-dual

    .. math::
       D(g) = \mathbb{E}_{x \sim \mu}\Big[\min_j \|x - y_j\|^2 - g_j\Big] + \frac1N \sum_j g_j
       \qquad (\varepsilon = 0),

    with :math:`\min_j` replaced by :math:`-\varepsilon \log \frac1N \sum_j
    \exp((g_j - \|x - y_j\|^2)/\varepsilon)` when :math:`\varepsilon > 0`, is concave in
    :math:`g`, and its supremum is the (entropic) OT cost :math:`W_2^2(\mu, \nu)`. Its
    gradient in :math:`g_j` is :math:`1/N - p_j(g)`, :math:`p_j` the source mass sent to row
    :math:`j`: at the optimum every row receives exactly :math:`1/N`. ott-jax's
    ``SemidiscreteSolver`` ascends it by stochastic gradients (``batch_size`` fresh source
    points a step, Adam with a cosine-decayed ``learning_rate``, an exponential moving
    average of the iterates returned).

    **What is guaranteed.** Nothing at a finite step count: the stochastic gradient ascent
    converges in expectation (at rate :math:`O(1/\sqrt{T})` in the objective for decaying
    steps, Genevay et al. 2016), so the result is measured instead, on ``num_check`` fresh
    source points (:class:`SemidiscreteInfo`, in ``coupling.info``): the marginal error of the
    assignment (total variation against its noise floor, the unbiased :math:`\chi^2`, the
    worst row), the dual value and the transport cost of the pairs. What holds for *any*
    :math:`g` (with :math:`\varepsilon = 0`): the pairing is the exact OT map from the source
    to the measure it actually reaches, :math:`\sum_j p_j \delta_{y_j}`, so the marginal
    error is the whole error; and :math:`D(g) \le W_2^2(\mu, \nu)` (weak duality).

    Cost: each step scores a ``batch_size x N`` matrix (ott-jax builds it whole: memory
    ``4 batch_size N`` bytes). On XLA:CPU ott-jax's step is slower than that matrix product
    suggests (its argmax, for ``epsilon = 0``, and its column sums are XLA:CPU's slow
    reductions); on an accelerator it is a matrix product.

    Args:
      key: a ``jax.random.key``.
      data: ``(N, *event)`` floating rows.
      epsilon: :math:`\varepsilon \ge 0` (absolute, in squared-distance units; 0 = hard).
        With 0 a step's gradient moves only the rows its batch lands on, so for large ``N``
        the marginals balance slowly; a small :math:`\varepsilon` (a few thousandths of the
        typical squared distance) spreads each point over its near rows and balances them
        far faster, at a slightly higher transport cost (measured in
        ``benchmarks/results/semidiscrete.md``).
      num_steps: SGD steps, an int ``>= 1``.
      batch_size: source points per step, an int ``>= 1``.
      learning_rate: Adam's peak step, in ``(0, inf)``, decayed to 0 by a cosine schedule.
        It is in the potential's units, squared distances: scale it with the typical squared
        distance between source and data (0.05 suits unit-scale 2-D data).
      source: ``None`` (standard normal) or a sampler ``(key, n) -> (n, *event)``: the
        distribution the coupling will be used with.
      cond: optional pytree of arrays with leading size ``N`` (the data rows' conditions),
        carried by the coupling.
      threshold: ``None`` (default: run every step) or a :math:`\chi^2` level in ``(0, inf)``
        below which ott-jax stops early; it then checks every ``ceil(num_steps / 20)`` steps
        (16 batches a check) and runs a whole number of such periods.
      num_check: fresh source points of the final check, an int ``>= 2``.
      chunk_size, block_size: the coupling's search layout (see :class:`SemidiscreteCoupling`).

    Returns:
      A :class:`SemidiscreteCoupling` whose ``info`` is the :class:`SemidiscreteInfo`.

    Raises:
      ValueError: a value outside the ranges above, ``data`` not floating ``(N, *event)`` or
        not finite, a ``cond`` leaf without leading size ``N``, a ``source`` returning another
        shape than ``(n, *event)``.
      TypeError: ``source`` not callable.
      RuntimeError: the solver diverged (a non-finite potential).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> data = jnp.array([[-2.0], [0.0], [2.0]])
      >>> sd = fit_semidiscrete(jax.random.key(0), data, num_steps=300, batch_size=256,
      ...                       num_check=16384)
      >>> x0 = jax.random.normal(jax.random.key(1), (16384, 1))
      >>> counts = jnp.bincount(sd.assign(jax.random.key(2), x0), length=3) / 16384
      >>> bool(jnp.all(jnp.abs(counts - 1 / 3) < 0.02)), sd.info.marginal_tv < 0.03
      (True, True)

    References:
      Mousavi-Hosseini, Zhang, Klein, Cuturi 2026, Flow Matching with Semidiscrete Couplings
      (ICLR); Genevay, Cuturi, Peyré, Bach 2016, Stochastic Optimization for Large-scale
      Optimal Transport.
    """
    import optax
    from ott.geometry import semidiscrete_pointcloud
    from ott.problems.linear import semidiscrete_linear_problem
    from ott.solvers.linear import semidiscrete

    data = as_floating("data", data)
    shape = check_batched("data", data, what="(N, *event)")
    check_finite("data", data)
    check_real("epsilon", epsilon, 0.0)
    num_steps = check_positive_int("num_steps", num_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    check_real("learning_rate", learning_rate, 0.0, low_open=True)
    check_real("threshold", threshold, 0.0, low_open=True, none_ok=True)
    num_check = check_int("num_check", num_check, 2)
    cond = _check_cond_rows(cond, shape[0])
    if is_traced(epsilon) or is_traced(learning_rate) or is_traced(data):
        raise ValueError("fit_semidiscrete runs a solver and a check on the host: call it outside jit "
                         "(data, epsilon and learning_rate must be concrete)")
    n, event = shape[0], tuple(shape[1:])
    d = math.prod(event)
    k_solve, k_check, k_probe = jax.random.split(key, 3)
    sampler = _source_sampler(source, event, k_probe)
    eps = float(epsilon)

    def ott_sampler(rng, sample_shape, dtype):
        return sampler(rng, sample_shape[0]).reshape(sample_shape).astype(dtype)

    if threshold is None:
        period, stop = num_steps, -jnp.inf
    else:
        period, stop = -(-num_steps // 20), float(threshold)
    total = -(-num_steps // period) * period
    solver = semidiscrete.SemidiscreteSolver(
        num_iterations=total,
        batch_size=batch_size,
        optimizer=optax.adam(optax.cosine_decay_schedule(float(learning_rate), total)),
        error_eval_every=period,
        threshold=stop,
    )

    @jax.jit
    def solve(rng, y):
        geom = semidiscrete_pointcloud.SemidiscretePointCloud(ott_sampler, y, epsilon=eps)
        out = solver(rng, semidiscrete_linear_problem.SemidiscreteLinearProblem(geom))
        return out.g, out.it, out.errors

    start = time.perf_counter()
    g, steps, errors = jax.block_until_ready(solve(k_solve, data.reshape(n, d).astype(jnp.float32)))
    fit_s = time.perf_counter() - start
    if not np.all(np.isfinite(np.asarray(g))):
        raise RuntimeError(
            f"fit_semidiscrete: the potential is not finite after {int(steps)} SGD steps at "
            f"learning_rate={learning_rate:g} (the solver diverged); lower learning_rate"
        )
    errors = np.asarray(errors)
    finite = errors[np.isfinite(errors)]
    coupling = SemidiscreteCoupling(data, g.astype(data.dtype), eps, cond, chunk_size=chunk_size,
                                    block_size=block_size)
    start = time.perf_counter()
    checked = _check(coupling, k_check, sampler, num_check, min(num_check, 1024))
    info = SemidiscreteInfo(
        num_steps=int(steps), batch_size=batch_size, learning_rate=float(learning_rate), epsilon=eps,
        num_check=num_check, solver_chi2=float(finite[-1]) if finite.size else float("nan"),
        fit_s=fit_s, check_s=time.perf_counter() - start, **checked,
    )
    return dataclasses.replace(coupling, info=info)
