"""Entropic OT couplings of large batches: the cost is never stored, the plan never formed."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_bool, check_choice, check_int, check_real, fail_if, is_int, is_traced
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings._base import (
    AbstractCoupling,
    Pairing,
    check_batch,
    check_cond_weight,
    split_cond,
)

__all__ = ["LargeSinkhornCoupling"]

_MODES = ("rows", "pairs")


def _shown(value) -> str:
    """A hyperparameter as an error message quotes it (a traced one cannot be read)."""
    if is_traced(value):
        return "<traced>"
    v = np.asarray(value)
    return f"{float(v):.3g}" if v.ndim == 0 else f"<array of shape {v.shape}>"


def _block_cost(a: jax.Array, b: jax.Array) -> jax.Array:
    r"""``(n, c)`` squared distances :math:`\|a_i\|^2 + \|b_j\|^2 - 2 a_i \cdot b_j` (>= 0)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


def _blocks(b: jax.Array, g: jax.Array, chunk: int):
    """Columns in ``ceil(m / chunk)`` blocks: points ``(k, chunk, d)``, potentials (padding
    ``-inf``: a padded column has no mass) and column indices ``(k, chunk)``."""
    m = b.shape[0]
    k = -(-m // chunk)
    pad = k * chunk - m
    b = jnp.pad(b, ((0, pad), (0, 0)))
    g = jnp.pad(g, (0, pad), constant_values=-jnp.inf)
    cols = jnp.arange(k * chunk, dtype=jnp.int32)
    return b.reshape(k, chunk, -1), g.reshape(k, chunk), cols.reshape(k, chunk)


def plan_marginals(a, b, f, g, eps, chunk: int):
    r"""Row and column sums of :math:`P_{ij} = \exp((f_i + g_j - C_{ij}) / \varepsilon)`,
    one block of ``chunk`` columns at a time (memory ``O(n \cdot chunk)``)."""
    m = b.shape[0]
    b_blk, g_blk, _ = _blocks(b, g, chunk)

    def body(rows, xs):
        bb, gb = xs
        p = jnp.exp((f[:, None] + gb[None, :] - _block_cost(a, bb)) / eps)
        return rows + p.sum(1), p.sum(0)

    rows, cols = jax.lax.scan(body, jnp.zeros_like(f), (b_blk, g_blk))
    return rows, cols.reshape(-1)[:m]


def gumbel_argmax(key, a, b, g, eps, chunk: int):
    r"""For every row ``i`` of ``a``, a column ``j`` drawn with probability
    :math:`\propto \exp((g_j - C_{ij}) / \varepsilon)` by the Gumbel-max trick over blocks.

    The noise of cell ``(i, j)`` is entry ``i`` of ``gumbel(fold_in(key, j), (n,))``: it depends
    on the row and the column only, so every ``chunk`` draws the same columns (up to the
    rounding of the cost of a near-tie). A running maximum and its index per row are the
    whole state: memory ``O(n \cdot chunk)``.
    """
    n = a.shape[0]
    b_blk, g_blk, c_blk = _blocks(b, g, chunk)
    noise = jax.vmap(lambda j: jax.random.gumbel(jax.random.fold_in(key, j), (n,), a.dtype))

    def body(carry, xs):
        best, arg = carry
        bb, gb, cb = xs
        score = (gb[None, :] - _block_cost(a, bb)) / eps + noise(cb).T
        score = jnp.where(jnp.isnan(score), -jnp.inf, score)
        j = jnp.argmax(score, axis=1)
        top = jnp.take_along_axis(score, j[:, None], axis=1)[:, 0]
        better = top > best  # strict: the first column wins a tie, whatever the blocks
        return (jnp.where(better, top, best), jnp.where(better, cb[j], arg)), None

    init = (jnp.full((n,), -jnp.inf, a.dtype), jnp.zeros((n,), jnp.int32))
    (_, arg), _ = jax.lax.scan(body, init, (b_blk, g_blk, c_blk))
    return arg


def _online_lse(x_out, x_sum, pot_out, pot_sum, eps, vec, chunk: int):
    r"""For every point ``k`` of ``x_out``, :math:`\varepsilon \log \sum_l v_l
    \exp((p_k + q_l - C_{kl})/\varepsilon)` (and its sign), over blocks of ``chunk`` points
    of ``x_out``: the cost is recomputed, ``O(len(x_sum) * chunk)`` memory."""
    m = x_out.shape[0]
    out_blk, pot_blk, _ = _blocks(x_out, pot_out, chunk)
    weights = None if vec is None else vec[:, None]

    def block(xs):
        xb, pb = xs
        z = (pot_sum[:, None] + pb[None, :] - _block_cost(x_sum, xb)) / eps
        return jax.nn.logsumexp(z, axis=0, b=weights, return_sign=True)

    res, sign = jax.lax.map(block, (out_blk, pot_blk))
    return eps * res.reshape(-1)[:m], sign.reshape(-1)[:m]


@functools.cache
def _online_point_cloud():
    """An ott-jax ``PointCloud`` class whose log-kernel products run by blocks of points.

    ott-jax 0.6's own online mode (``PointCloud(batch_size=...)``) calls a JAX internal that
    JAX 0.10 removed (``batching.is_vmappable``). Its Sinkhorn needs one thing of the
    geometry, ``apply_lse_kernel`` (the updates, the convergence check, the final cost), which
    this subclass computes with :func:`_online_lse`: the same reduction, by ``lax.map`` over
    blocks of ``batch_size`` points. The cost is the squared Euclidean one (``cost_fn`` and
    ``scale_cost`` are left at their defaults).
    """
    from ott.geometry import pointcloud

    @jax.tree_util.register_pytree_node_class
    class OnlinePointCloud(pointcloud.PointCloud):
        def apply_lse_kernel(self, f, g, eps, vec=None, axis=0):
            if axis == 0:  # one value per column j: a sum over the rows i
                res, sign = _online_lse(self.y, self.x, g, f, eps, vec, self.batch_size)
                remove = g
            else:  # one value per row i: a sum over the columns j
                res, sign = _online_lse(self.x, self.y, f, g, eps, vec, self.batch_size)
                remove = f
            return res - jnp.where(jnp.isfinite(remove), remove, 0.0), sign

    return OnlinePointCloud


def _draw_rows(key, weights, num: int):
    """``num`` i.i.d. indices drawn with probability proportional to ``weights`` (inverse CDF)."""
    cdf = jnp.cumsum(jnp.maximum(jnp.nan_to_num(weights, nan=0.0), 0.0))
    u = jax.random.uniform(key, (num,), cdf.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), weights.shape[0] - 1).astype(jnp.int32)


@pytree_dataclass
class LargeSinkhornCoupling(AbstractCoupling):
    r"""Entropic OT coupling of large batches (16k points and more): no ``B x B`` array, ever.

    The plan is the one of :class:`~flowjax_fm.couplings.SinkhornCoupling` (balanced),

    .. math::
       P^\star = \arg\min_{P \in U(\frac1B \mathbb{1}, \frac1B \mathbb{1})}
       \langle P, C \rangle - \varepsilon H(P), \qquad C_{ij} = \|x_0^i - x_1^j\|^2,

    held as its two potentials, :math:`P^\star_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`.
    ott-jax's Sinkhorn solves for ``f, g`` on a ``PointCloud`` of the points whose log-kernel
    products run online (recomputing the cost ``chunk`` points at a time, as ott-jax's own
    ``batch_size`` mode would, which JAX 0.10 broke), so memory is ``O(B * chunk)`` instead of
    the ``4 B^2`` bytes of the cost matrix (1 GB at ``B = 16,384``, 17 GB at 65,536); time is
    still ``O(B^2)`` per iteration. Pairs are then drawn from :math:`P^\star` without forming
    it:

    * ``"rows"`` (default): every source row once, its partner from the row's conditional,
      :math:`j \sim P^\star_{i\cdot} / \sum_k P^\star_{ik}`, by the Gumbel-max trick,

      .. math:: j_i = \arg\max_j\ (g_j - C_{ij})/\varepsilon + G_{ij}, \qquad
         G_{ij} \sim \mathrm{Gumbel}(0, 1) \text{ i.i.d.},

      over blocks of ``chunk`` columns, keeping a running maximum per row. :math:`G_{ij}` is
      keyed by ``(i, j)`` alone (entry ``i`` of a draw keyed ``fold_in(key, j)``), so any
      ``chunk`` gives the same pairs for the same ``key`` (up to float rounding of the cost of
      near-ties). This is the large-batch use (Zhang et al.): each noise point used once.
    * ``"pairs"``: ``B`` i.i.d. pairs, a row from the row marginal (inverse CDF) and then a
      partner as above (the noise keyed by draw and column, so repeated rows draw anew).

    With ``relative_epsilon="mean"`` the given ``epsilon`` multiplies the mean cost, computed
    without the matrix,

    .. math:: \tfrac{1}{B^2}\textstyle\sum_{ij} C_{ij} = \overline{\|x_0\|^2} +
       \overline{\|x_1\|^2} - 2\,\bar x_0 \cdot \bar x_1 .

    **The plan is checked** like :class:`~flowjax_fm.couplings.SinkhornCoupling`'s: its row
    and column sums, computed by blocks too, give the relative L1 marginal error
    :math:`e = \max(\sum_i |r_i - \frac1B|, \sum_j |c_j - \frac1B|)`; a plan passes
    when ``e`` is finite and at most ``marginal_tol``. With ``throw=True`` (default) a failed
    plan raises (:func:`flowjax_fm._checks.fail_if`); with ``throw=False`` the pairs are
    drawn from the plan as it is and :class:`~flowjax_fm.couplings.Pairing` reports
    ``converged`` and ``marginal_error``. A call costs the Sinkhorn iterations plus two passes
    over the ``B^2`` cells, the check and the draws; the draws' ``B^2`` Gumbel variables
    (threefry) make the second the dearer, several iterations' worth on a CPU.

    Conditions: floating conditions enter the cost with weight ``cond_weight``,
    :math:`C_{ij} = \|x_0^i - x_1^j\|^2 + w\,\|c_i - c_j\|^2` (C2OT), exactly and at no extra
    memory: each point is extended by :math:`\sqrt{w}\,c`. Integer labels are refused (the
    dense coupling masks a ``B x B`` plan for them): pair each label's rows by a separate call.

    Args:
      epsilon: entropic regularisation, in ``(0, inf)`` (a pytree leaf), absolute, or relative
        to the mean cost with ``relative_epsilon="mean"``.
      threshold: Sinkhorn stopping rule, in ``(0, inf)`` (ott-jax's: the L1 error of the
        marginal it does not fit exactly; a leaf).
      relative_epsilon: ``None`` (absolute) or ``"mean"`` (static).
      sampling: ``"rows"`` or ``"pairs"`` (static).
      chunk: an int ``>= 1``, columns per block, both in the solve and in the draws (static;
        capped at ``B``). Memory is a few ``B x chunk`` float32 arrays: 64 MB each at
        ``B = 16,384``, ``chunk = 1,024``.
      max_iterations: an int ``>= 1``, the iteration budget (static).
      inner_iterations: an int ``>= 1``, iterations between two convergence checks (static).
      anderson: Anderson acceleration memory, ``0`` (off) or an int ``>= 2`` (static).
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a leaf); ``None`` (default)
        refuses them.
      marginal_tol: the largest marginal error ``e`` that passes, in ``(0, inf]`` (a leaf).
      throw: ``True`` raises on a failed plan; ``False`` reports it (static).

    Raises:
      ValueError: at construction, a value outside the ranges above; at call time, integer
        labels, a floating condition with ``cond_weight=None``, or ill-shaped inputs (see
        :func:`~flowjax_fm.couplings.check_batch`).
      RuntimeError: with ``throw=True``, at run time, a plan that fails the check (the message
        names ``epsilon``, the error and what to change).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jnp.array([[0.0], [10.0]]); x1 = jnp.array([[9.0], [1.0]])
      >>> p = jax.jit(LargeSinkhornCoupling(epsilon=0.1))(jax.random.key(0), x0, x1)
      >>> p.target.tolist(), bool(p.converged)
      ([1, 0], True)
      >>> x0, x1 = jax.random.normal(jax.random.key(1), (2, 50, 2))
      >>> blocks_of_8, one_block = (jax.jit(LargeSinkhornCoupling(chunk=c)) for c in (8, 50))
      >>> key = jax.random.key(2)
      >>> bool((blocks_of_8(key, x0, x1).target == one_block(key, x0, x1).target).all())
      True

    References:
      Cuturi 2013, Sinkhorn Distances; Zhang et al. 2025, On Fitting Flow Models with Large
      Sinkhorn Couplings; Feydy et al. 2019 (online kernel reductions, KeOps).
    """

    epsilon: float = 0.05
    threshold: float = 1e-3
    relative_epsilon: str | None = static_field(default=None)
    sampling: str = static_field(default="rows")
    chunk: int = static_field(default=1024)
    max_iterations: int = static_field(default=2000)
    inner_iterations: int = static_field(default=10)
    anderson: int = static_field(default=0)
    cond_weight: float | None = None
    marginal_tol: float = 1e-2
    throw: bool = static_field(default=True)

    def __post_init__(self):
        check_real("epsilon", self.epsilon, 0.0, low_open=True)
        check_real("threshold", self.threshold, 0.0, low_open=True)
        for name in ("chunk", "max_iterations", "inner_iterations"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1))
        if not is_int(self.anderson) or self.anderson < 0 or self.anderson == 1:
            raise ValueError(f"anderson must be 0 (off) or an int >= 2 (a memory), got {self.anderson!r}")
        object.__setattr__(self, "anderson", int(self.anderson))
        check_choice("sampling", self.sampling, _MODES)
        check_choice("relative_epsilon", self.relative_epsilon, (None, "mean"))
        check_cond_weight(self.cond_weight)
        check_real("marginal_tol", self.marginal_tol, 0.0, low_open=True, finite=False)
        object.__setattr__(self, "throw", check_bool("throw", self.throw))

    # -- the points the cost is taken on --------------------------------------------------

    def _points(self, x0, x1, cond0, cond1):
        """Flattened, centred float points (extended by ``sqrt(w) c``) and the absolute epsilon."""
        n = x0.shape[0]
        dtype = jnp.promote_types(x0.dtype, jnp.float32)
        a = jax.lax.stop_gradient(x0).reshape(n, -1).astype(dtype)
        b = jax.lax.stop_gradient(x1).reshape(n, -1).astype(dtype)
        centre = 0.5 * (a.mean(0) + b.mean(0))  # distances are translation invariant
        a, b = a - centre, b - centre
        eps = self.epsilon
        if self.relative_epsilon == "mean":  # on x alone, as SinkhornCoupling
            mean = (a * a).sum(1).mean() + (b * b).sum(1).mean() - 2.0 * a.mean(0) @ b.mean(0)
            eps = eps * jnp.where(mean > 0, mean, 1.0)
        if cond0 is not None:
            labels, floats0 = split_cond(cond0)
            if labels:
                shapes = [tuple(c.shape) for c in labels]
                raise ValueError(
                    f"LargeSinkhornCoupling does not take integer labels (label leaves of shapes "
                    f"{shapes}): pair the rows of each label by a separate call, or use "
                    "SinkhornCoupling / ExactOTCoupling, which keep pairs within labels"
                )
            if self.cond_weight is None:
                shapes = [tuple(c.shape) for c in floats0]
                raise ValueError(
                    f"LargeSinkhornCoupling got a floating (continuous) condition, leaf shapes "
                    f"{shapes}, but cond_weight is None: give cond_weight=w to add "
                    "w * |c_i - c_j|^2 to the cost (C2OT)"
                )
            _, floats1 = split_cond(cond1)
            root = jnp.sqrt(jnp.asarray(self.cond_weight, dtype))
            flat = lambda cs: [root * jax.lax.stop_gradient(c).reshape(n, -1).astype(dtype) for c in cs]
            c0, c1 = flat(floats0), flat(floats1)
            mid = [0.5 * (u.mean(0) + v.mean(0)) for u, v in zip(c0, c1, strict=True)]
            a = jnp.concatenate([a, *(u - m for u, m in zip(c0, mid, strict=True))], axis=1)
            b = jnp.concatenate([b, *(v - m for v, m in zip(c1, mid, strict=True))], axis=1)
        return a, b, jnp.asarray(eps, dtype)

    def _solve(self, a, b, eps):
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import acceleration
        from ott.solvers.linear import sinkhorn as sinkhorn_lib

        geom = _online_point_cloud()(a, b, epsilon=eps, batch_size=min(self.chunk, a.shape[0]))
        solver = sinkhorn_lib.Sinkhorn(
            threshold=self.threshold,
            max_iterations=self.max_iterations,
            inner_iterations=self.inner_iterations,
            anderson=acceleration.AndersonAcceleration(memory=self.anderson) if self.anderson else None,
        )
        out = solver(linear_problem.LinearProblem(geom))
        return out.f, out.g, out.n_iters

    def potentials(self, x0, x1, cond0=None, cond1=None):
        r"""The Sinkhorn potentials ``(f, g)``, each ``(B,)``, and the absolute ``epsilon``:
        :math:`P^\star_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)` (unchecked)."""
        check_batch(x0, x1, cond0, cond1)
        a, b, eps = self._points(x0, x1, cond0, cond1)
        f, g, _ = self._solve(a, b, eps)
        return f, g, eps

    def _failure_message(self) -> str:
        scale = " x the mean cost (relative_epsilon='mean')" if self.relative_epsilon else ""
        return (
            "LargeSinkhornCoupling: the Sinkhorn plan failed its check: its marginal error "
            f"(relative L1) is above marginal_tol={_shown(self.marginal_tol)}, or it is not "
            f"finite, after up to max_iterations={self.max_iterations} iterations at "
            f"epsilon={_shown(self.epsilon)}{scale}. Raise epsilon (it is in units of the "
            "squared distances), use relative_epsilon='mean', or raise max_iterations; "
            "throw=False returns the pairs with pairing.converged / pairing.marginal_error "
            "reporting it"
        )

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        return self._pair(key, x0, x1, cond0, cond1)[0]

    def _pair(self, key, x0, x1, cond0, cond1):
        """The pairing and ott-jax's iteration count (for the benchmarks)."""
        n = x0.shape[0]
        chunk = min(self.chunk, n)
        a, b, eps = self._points(x0, x1, cond0, cond1)
        f, g, iterations = self._solve(a, b, eps)
        rows_sum, cols_sum = plan_marginals(a, b, f, g, eps, chunk)
        error = jnp.maximum(jnp.abs(rows_sum - 1.0 / n).sum(), jnp.abs(cols_sum - 1.0 / n).sum())
        ok = jnp.isfinite(error) & (error <= self.marginal_tol)
        k_rows, k_cols = jax.random.split(key)
        if self.sampling == "rows":
            rows = jnp.arange(n, dtype=jnp.int32)
        else:
            rows = _draw_rows(k_rows, rows_sum, n)
        cols = gumbel_argmax(k_cols, a[rows], b, g, eps, chunk)
        rows, cols = fail_if((rows, cols), ~ok, self._failure_message(), self.throw)
        return Pairing(rows, cols, ok, error), iterations
