"""Optimal-transport couplings: exact minibatch OT and entropic OT through ott-jax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import check_bool, check_choice, check_int, check_real, fail_if, is_int, is_traced
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings._assignment import SOLVERS, solve_assignment
from flowjax_fm.couplings._base import (
    AbstractCoupling,
    Pairing,
    check_cond_weight,
    condition_cost,
    label_penalty,
    same_label,
    squared_distances,
)

__all__ = ["ExactOTCoupling", "SinkhornCoupling"]


def _conditioned_cost(name, cond_weight, cost, cond0, cond1):
    r"""``cost + w * D`` (continuous conditions), then the label penalty (integer labels)."""
    if cond0 is None:
        return cost
    dist = condition_cost(cond0, cond1)
    if dist is not None:
        if cond_weight is None:
            shapes = [tuple(c.shape) for c in jax.tree.leaves(cond0)]
            raise ValueError(
                f"{name} got a floating (continuous) condition, leaf shapes {shapes}, but "
                "cond_weight is None: give cond_weight=w to add w * |c_i - c_j|^2 to the cost "
                "(C2OT), or pass integer labels (B,) to pair within labels"
            )
        cost = cost + jnp.asarray(cond_weight, cost.dtype) * dist.astype(cost.dtype)
    return label_penalty(cost, cond0, cond1)


@pytree_dataclass
class ExactOTCoupling(AbstractCoupling):
    r"""Exact minibatch optimal transport (OT-CFM): the assignment of least squared distance.

    .. math::
       \sigma^\star = \arg\min_{\sigma \in S_B} \sum_i \|x_0^i - x_1^{\sigma(i)}\|^2,
       \qquad \text{pairs } (x_0^i, x_1^{\sigma^\star(i)})

    With uniform weights on two batches of equal size the OT plan is a permutation (Birkhoff),
    so the pairing has no duplicates, unlike redrawing pairs from the plan with replacement.
    The solver is chosen by ``method`` (the one solver policy of
    :func:`flowjax_fm.couplings.solve_assignment`, shared with
    :func:`flowjax_fm.metrics.wasserstein`); the default is the compiled solver called from
    inside ``jax.jit`` on any backend, or scipy with one warning when it is not built.

    Conditions (pytrees, see :mod:`flowjax_fm.couplings`): integer labels ``(B,)`` forbid
    cross-label pairs (exactly optimal within each label); floating conditions enter the cost
    with weight ``cond_weight`` (C2OT: source row ``i`` carries the condition of data row
    ``i``, so pass ``cond0 = cond1 = data conditions``),

    .. math:: C_{ij} = \|x_0^i - x_1^j\|^2 + w\,\|c_i - c_j\|^2 .

    Both apply when a condition mixes labels and floats.

    Args:
      method: assignment solver, ``"auto"`` (default), ``"c"``, ``"scipy"`` or ``"jax"``
        (static).
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a pytree leaf: a new value
        does not recompile); ``None`` (default) refuses floating conditions.

    Raises:
      ValueError: at construction, an unknown ``method`` or a concrete ``cond_weight`` that
        is negative or not finite; at call time, a floating condition with
        ``cond_weight=None``, or ill-shaped inputs (see
        :func:`~flowjax_fm.couplings.check_batch`).
      ImportError: at call time, ``method="c"`` without the compiled solver.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jnp.array([[0.0], [10.0]]); x1 = jnp.array([[9.0], [1.0]])
      >>> ExactOTCoupling()(jax.random.key(0), x0, x1).target.tolist()
      [1, 0]
      >>> c = jnp.array([[0.0], [1.0]])  # data row j's condition, also carried by source row j
      >>> ExactOTCoupling(cond_weight=1e3)(jax.random.key(0), x0, x1, c, c).target.tolist()
      [0, 1]

    References:
      Tong et al. 2023; Pooladian et al. 2023, Multisample Flow Matching; Cheng et al. 2025,
      C2OT: Conditional Optimal Transport for Flow Matching.
    """

    method: str = static_field(default="auto")
    cond_weight: float | None = None

    def __post_init__(self):
        check_choice("method", self.method, SOLVERS)
        check_cond_weight(self.cond_weight)

    def cost(self, x0, x1, cond0=None, cond1=None):
        """The cost matrix solved: squared distances, ``+ cond_weight *`` the condition cost,
        plus the label penalty (with labels)."""
        return _conditioned_cost(
            "ExactOTCoupling", self.cond_weight, squared_distances(x0, x1), cond0, cond1
        )

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        del key  # deterministic (ties are broken by the solver)
        cost = self.cost(x0, x1, cond0, cond1)
        # Non-finite data must not crash the solver mid-training: such entries become the
        # largest finite cost, the pairing stays a permutation, and the non-finite loss that
        # the data produce anyway is what stops training (with a message naming the step).
        finite = jnp.isfinite(cost)
        worst = jnp.max(jnp.where(finite, cost, -jnp.inf), initial=0.0)
        cost = jnp.where(finite, cost, worst)
        perm = solve_assignment(cost, method=self.method)
        return Pairing(jnp.arange(x0.shape[0], dtype=jnp.int32), perm.astype(jnp.int32))


_SINKHORN_MODES = ("pairs", "rows", "rounded")


def _shown(value) -> str:
    """A hyperparameter as the error message quotes it (a traced one cannot be read)."""
    if is_traced(value):
        return "<traced>"
    v = np.asarray(value)
    return f"{float(v):.3g}" if v.ndim == 0 else f"<array of shape {v.shape}>"


@pytree_dataclass
class SinkhornCoupling(AbstractCoupling):
    r"""Entropic OT coupling, solved by ott-jax's Sinkhorn; unbalanced when ``tau < 1``.

    .. math::
       P^\star = \arg\min_{P \in U(a, b)} \langle P, C \rangle - \varepsilon H(P),
       \qquad C_{ij} = \|x_0^i - x_1^j\|^2

    (with ``tau_a``/``tau_b`` < 1 the marginal constraints become KL penalties of weight
    :math:`\varepsilon\tau/(1-\tau)`). Pairs are then drawn from :math:`P^\star` by ``sampling``:

    * ``"pairs"`` (default): ``B`` i.i.d. pairs from the plan, drawn as a row from its marginal
      and then a column from that row (by inverse CDF: ``2B`` uniforms, no ``B*B`` Gumbel draws);
    * ``"rows"``: every source row once, its partner drawn from its row of the plan;
    * ``"rounded"``: a permutation (no duplicates, no replacement) maximising
      :math:`\sum_i \log P_{i\sigma(i)}`, solved exactly.

    **The plan is checked** after every solve. A balanced plan (``tau_a = tau_b = 1``) passes
    when it is finite and the relative L1 error of its worse marginal,

    .. math::
       e = \max\big(\textstyle\sum_i |(P\mathbb{1})_i - a_i|,\ \sum_j |(P^\top\mathbb{1})_j
       - b_j|\big) \big/ \textstyle\sum_i a_i, \qquad a = b = \tfrac1B \mathbb{1},

    is at most ``marginal_tol``; an unbalanced plan (marginals relaxed by design) passes when
    it is finite, ott-jax reports convergence (its ``threshold``) and some mass is left (at
    a small ``epsilon`` the KL penalties, of weight :math:`\varepsilon\tau/(1-\tau)`, let
    the plan vanish: all zeros at ``epsilon = 1e-4``, ``tau = 0.5`` on unit clouds, where
    every row would be drawn the same partner). A plan that fails was
    stopped by ``max_iterations`` far from the solution (too small an ``epsilon`` for the
    scale of the costs: at ``epsilon = 2e-4`` on 2D clouds of 256 points ``e = 0.88``, one
    column holding 5 times its mass) or overflowed. With ``throw=True`` (default) that is a
    ``RuntimeError`` (see :func:`flowjax_fm._checks.fail_if`; the same eagerly and under
    ``jit``); with ``throw=False`` the pairs are drawn from the plan as it is and the
    :class:`~flowjax_fm.couplings.Pairing` reports ``converged`` and ``marginal_error``.

    Args:
      epsilon: entropic regularisation, in ``(0, inf)`` (a pytree leaf; a traced value is
        not checked at construction, its consequences are, at run time).
      tau_a, tau_b: marginal relaxation, in ``(0, 1]`` (1.0 = balanced). Static: ott-jax
        picks its balanced or unbalanced algorithm from them, so a new value compiles anew.
      relative_epsilon: ``None`` for an absolute ``epsilon``; ``"mean"`` to multiply it by the
        mean cost (scale-free: the same value works in 2 or 3,072 dimensions).
      sampling: ``"pairs"``, ``"rows"`` or ``"rounded"``.
      threshold: Sinkhorn stopping rule, in ``(0, inf)``: ott-jax stops when the L1 error of
        the marginal it does not fit exactly falls below it (a leaf).
      max_iterations: an int ``>= 1``, the iteration budget (static).
      inner_iterations: an int ``>= 1``, iterations between two convergence checks (ott-jax's
        default 10; in high dimension Sinkhorn often converges in a few, and 5 is then ~1.7x
        faster).
      anderson: Anderson acceleration memory, ``0`` (off) or an int ``>= 2``. 5 halves the
        iterations on 2-D problems at moderate epsilon (2x faster at n = 1,024 and 4,096; 4.5x
        at epsilon 0.05 on the 8-Gaussians) but can take more at a very small relative
        epsilon, hence off by default.
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a pytree leaf): the cost
        becomes :math:`\|x_0^i - x_1^j\|^2 + w\,\|c_i - c_j\|^2` (C2OT; pass ``cond0 =
        cond1 =`` the data conditions). ``None`` (default) refuses floating conditions.
        ``relative_epsilon="mean"`` still scales by the mean squared distance of ``x`` alone.
      marginal_tol: the largest marginal error ``e`` of a balanced plan that passes, in
        ``(0, inf]`` (a leaf; ``inf`` checks finiteness only). The default ``1e-2`` is ten
        times the default ``threshold``, so converged plans pass with a margin (measured
        ``e <= 1e-3``), and so do plans that stopped at ``max_iterations`` just short of it
        (``e = 0.007`` at ``epsilon = 0.01``, 256 points), whose draws are off by under 1% of
        the mass; ``e`` of a plan far from converged is 0.03 to 0.9.
      throw: ``True`` (default) raises on a failed plan; ``False`` reports it in the
        :class:`~flowjax_fm.couplings.Pairing` instead (static).

    With labels (integer leaves of the conditions), the cost of cross-label pairs is penalised
    and those cells of the plan are set to zero before drawing, so pairs never cross labels
    (the check reads the plan before that mask).

    Raises:
      ValueError: at construction, a value outside the ranges above (``epsilon = 0`` would
        give an all-zero plan and the same pair on every row), an unknown ``sampling`` or
        ``relative_epsilon``, a non-bool ``throw``; at call time, a floating condition with
        ``cond_weight=None``.
      RuntimeError: with ``throw=True``, at run time, a plan that fails the check above
        (``equinox.EquinoxRuntimeError`` eagerly, ``jax.errors.JaxRuntimeError`` under
        ``jit``); the message names ``epsilon``, the error and what to change.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jnp.array([[0.0], [10.0]]); x1 = jnp.array([[9.0], [1.0]])
      >>> SinkhornCoupling(epsilon=0.1, sampling="rounded")(jax.random.key(0), x0, x1).target.tolist()
      [1, 0]
      >>> x0, x1 = jax.random.normal(jax.random.key(1), (2, 64, 2))
      >>> p = SinkhornCoupling(epsilon=2e-4, throw=False)(jax.random.key(0), x0, x1)
      >>> bool(p.converged), bool(p.marginal_error > 0.1)
      (False, True)

    References:
      Cuturi 2013; Tong et al. 2024 (SB-CFM uses ``epsilon = 2 sigma**2``).
    """

    epsilon: float = 0.05
    threshold: float = 1e-3
    tau_a: float = static_field(default=1.0)
    tau_b: float = static_field(default=1.0)
    relative_epsilon: str | None = static_field(default=None)
    sampling: str = static_field(default="pairs")
    max_iterations: int = static_field(default=2000)
    inner_iterations: int = static_field(default=10)
    anderson: int = static_field(default=0)
    cond_weight: float | None = None
    marginal_tol: float = 1e-2
    throw: bool = static_field(default=True)

    def __post_init__(self):
        check_real("epsilon", self.epsilon, 0.0, low_open=True)
        check_real("threshold", self.threshold, 0.0, low_open=True)
        for name in ("tau_a", "tau_b"):
            check_real(name, getattr(self, name), 0.0, 1.0, low_open=True)
        for name in ("max_iterations", "inner_iterations"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1))
        if not is_int(self.anderson) or self.anderson < 0 or self.anderson == 1:
            raise ValueError(
                f"anderson must be 0 (off) or an int >= 2 (a memory), got {self.anderson!r}"
            )
        object.__setattr__(self, "anderson", int(self.anderson))
        check_choice("sampling", self.sampling, _SINKHORN_MODES)
        check_choice("relative_epsilon", self.relative_epsilon, (None, "mean"))
        check_cond_weight(self.cond_weight)
        check_real("marginal_tol", self.marginal_tol, 0.0, low_open=True, finite=False)
        object.__setattr__(self, "throw", check_bool("throw", self.throw))

    @property
    def balanced(self) -> bool:
        """Whether both marginals are hard constraints (``tau_a = tau_b = 1``)."""
        return self.tau_a == 1.0 and self.tau_b == 1.0

    def _solve(self, x0, x1, cond0, cond1):
        """The plan (before the label mask), whether it passed the check, its marginal error."""
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import acceleration
        from ott.solvers.linear import sinkhorn as sinkhorn_lib

        sq = squared_distances(x0, x1).astype(jnp.float32)
        cost = _conditioned_cost("SinkhornCoupling", self.cond_weight, sq, cond0, cond1)
        # relative epsilon is taken on the squared distances alone (not on the penalty); all
        # points at one place (mean 0) have a zero cost, where any epsilon is as good
        eps = self.epsilon
        if self.relative_epsilon == "mean":
            mean = jnp.mean(sq)
            eps = eps * jnp.where(mean > 0, mean, 1.0)
        geom = geometry.Geometry(cost_matrix=cost, epsilon=eps)
        solver = sinkhorn_lib.Sinkhorn(
            threshold=self.threshold, max_iterations=self.max_iterations,
            inner_iterations=self.inner_iterations,
            anderson=acceleration.AndersonAcceleration(memory=self.anderson) if self.anderson else None,
        )
        problem = linear_problem.LinearProblem(geom, tau_a=self.tau_a, tau_b=self.tau_b)
        out = solver(problem)
        plan = out.matrix
        n = plan.shape[0]
        rows = jnp.abs(plan.sum(axis=1) - 1.0 / n).sum()
        cols = jnp.abs(plan.sum(axis=0) - 1.0 / n).sum()
        error = jnp.maximum(rows, cols)  # the weights a, b sum to 1
        finite = jnp.isfinite(error)  # a nan / inf entry reaches the sums
        if self.balanced:
            ok = finite & (error <= self.marginal_tol)
        else:  # relaxed marginals: converged, and some mass left to draw pairs from
            ok = finite & out.converged & (plan.sum() > 0)
        return plan, ok, error

    def _failure_message(self) -> str:
        scale = " x the mean cost (relative_epsilon='mean')" if self.relative_epsilon else ""
        if self.balanced:
            what = f"its marginal error (relative L1) is above marginal_tol={_shown(self.marginal_tol)}"
        else:
            what = (
                f"ott-jax did not reach threshold={_shown(self.threshold)} (unbalanced, tau < 1), "
                "or the plan has no mass left"
            )
        return (
            f"SinkhornCoupling: the Sinkhorn plan failed its check: {what}, or it is not finite, "
            f"after up to max_iterations={self.max_iterations} iterations at "
            f"epsilon={_shown(self.epsilon)}{scale}. Raise epsilon (it is in units of the "
            "squared distances), use relative_epsilon='mean', or raise max_iterations; "
            "throw=False returns the pairs with pairing.converged / pairing.marginal_error "
            "reporting it"
        )

    def _masked(self, x0, x1, cond0, cond1):
        plan, ok, error = self._solve(x0, x1, cond0, cond1)
        mask = None if cond0 is None else same_label(cond0, cond1)
        if mask is not None:
            plan = jnp.where(mask, plan, 0.0)
        return plan, ok, error

    def plan(self, x0, x1, cond0=None, cond1=None) -> jax.Array:
        """The entropic transport plan ``(B, B)`` (sums to 1 when balanced), checked as above
        (with ``throw=False`` unchecked: :meth:`__call__` reports the check)."""
        plan, ok, _ = self._masked(x0, x1, cond0, cond1)
        return fail_if(plan, ~ok, self._failure_message(), self.throw)

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        n = x0.shape[0]
        plan, ok, error = jax.lax.stop_gradient(self._masked(x0, x1, cond0, cond1))
        plan = jnp.maximum(jnp.nan_to_num(plan, nan=0.0), 0.0)
        if self.sampling == "rounded":
            log_plan = jnp.log(plan)  # -inf on empty cells
            finite_min = jnp.min(jnp.where(jnp.isfinite(log_plan), log_plan, 0.0))
            cost = -jnp.where(jnp.isfinite(log_plan), log_plan, finite_min - 1e4)
            rows = jnp.arange(n, dtype=jnp.int32)
            cols = solve_assignment(cost).astype(jnp.int32)
        else:
            k_rows, k_cols = jax.random.split(key)
            if self.sampling == "rows":
                rows = jnp.arange(n, dtype=jnp.int32)
            else:
                rows = draw_indices(k_rows, plan.sum(axis=1), num=n).astype(jnp.int32)
            cols = draw_indices(k_cols, plan[rows]).astype(jnp.int32)
        # the check rides on the (B,) indices, not on the (B, B) plan: one small conditional
        rows, cols = fail_if((rows, cols), ~ok, self._failure_message(), self.throw)
        return Pairing(rows, cols, ok, error)


def draw_indices(key: jax.Array, weights: jax.Array, num: int | None = None) -> jax.Array:
    r"""One index per row of ``weights`` ``(m, n)``, drawn with probability proportional to it.

    With a 1-D ``weights`` ``(n,)``, ``num`` i.i.d. indices from it instead.

    By inverting each row's cumulative sum at a uniform draw,

    .. math::
       j = \min\{\,j : \textstyle\sum_{k \le j} w_k > u \sum_k w_k\}, \qquad u \sim U[0, 1),

    which needs ``m`` uniforms instead of the ``m * n`` Gumbel draws of
    ``jax.random.categorical`` (about 10x faster for a 512 x 512 plan on a CPU core). A
    zero-weight index is never drawn: rounding that would land past the last positive weight is
    clamped to it. A row of all zeros returns its last index.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> draw_indices(jax.random.key(0), jnp.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])).tolist()
      [1, 0]
      >>> draw_indices(jax.random.key(0), jnp.array([0.0, 0.0, 3.0]), num=2).tolist()
      [2, 2]
    """
    if weights.ndim not in (1, 2):
        raise ValueError(f"draw_indices: weights must be (n,) or (m, n), got shape {weights.shape}")
    if weights.ndim == 1:
        return _draw_many(key, weights, num)
    n = weights.shape[-1]
    cdf = jnp.cumsum(weights, axis=-1)
    u = jax.random.uniform(key, weights.shape[:-1], dtype=cdf.dtype) * cdf[..., -1]
    idx = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(cdf, u)
    last_positive = n - 1 - jnp.argmax(weights[:, ::-1] > 0, axis=-1)
    return jnp.minimum(idx, last_positive)


def _draw_many(key: jax.Array, weights: jax.Array, num: int | None) -> jax.Array:
    """``num`` i.i.d. indices from one weight vector: one cumulative sum, ``num`` lookups."""
    if num is None:
        raise ValueError("draw_indices: 1-D weights need num, the number of indices to draw")
    n = weights.shape[0]
    cdf = jnp.cumsum(weights)
    idx = jnp.searchsorted(cdf, jax.random.uniform(key, (num,), dtype=cdf.dtype) * cdf[-1], side="right")
    return jnp.minimum(idx, n - 1 - jnp.argmax(weights[::-1] > 0))
