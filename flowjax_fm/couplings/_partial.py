r"""Partial optimal transport: move only a fraction ``m`` of the mass, at least cost.

Between two uniform batches of ``n`` points (weights :math:`a = b = \tfrac1n \mathbb 1`),

.. math::
   \min_{P \ge 0} \langle P, C \rangle \quad \text{s.t.} \quad P \mathbb 1 \le a, \quad
   P^\top \mathbb 1 \le b, \quad \mathbb 1^\top P \mathbb 1 = m, \qquad 0 < m \le 1 .

The mass left behind, ``1 - m`` on each side, is the part of each batch that is hardest to
match (outliers, a mode one side lacks): partial OT ignores it instead of paying to move it.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from flowjax_fm._checks import check_bool, check_choice, check_int, check_real, fail_if
from flowjax_fm._pytree import pytree_dataclass, static_field
from flowjax_fm.couplings._assignment import SOLVERS, solve_assignment
from flowjax_fm.couplings._base import (
    AbstractCoupling,
    Pairing,
    check_batch,
    check_cond_weight,
    same_label,
    squared_distances,
)
from flowjax_fm.couplings._ot import _conditioned_cost, _shown, draw_indices

__all__ = ["PartialOTCoupling"]

_SAMPLING = ("systematic", "pairs")


def _finite_cost(cost: jax.Array) -> jax.Array:
    """Non-finite entries (from non-finite data) become the largest finite cost, as in
    :class:`~flowjax_fm.couplings.ExactOTCoupling`: the solve stays well posed and the
    non-finite loss the data give anyway is what stops training."""
    finite = jnp.isfinite(cost)
    worst = jnp.max(jnp.where(finite, cost, -jnp.inf), initial=0.0)
    return jnp.where(finite, cost, worst)


def split_mass(mass: float, n: int) -> tuple[int, float]:
    r"""``s = m n`` as ``(k, theta)`` with ``s = k + theta``, ``k`` an int in ``[0, n]``.

    ``m n`` within rounding of an integer (``0.3 * 10``) is that integer, so a plan of whole
    pairs carries no stray ``1e-16`` of a further pair.
    """
    s = float(mass) * n
    if abs(s - round(s)) <= 1e-9 * max(n, 1):
        s = float(round(s))
    s = min(max(s, 0.0), float(n))
    k = math.floor(s)
    return k, s - k


def partial_assignment(cost: jax.Array, k: int, method: str = "auto") -> jax.Array:
    r"""The cheapest ``k`` disjoint pairs of ``cost`` ``(n, n)``, as a 0/1 matrix ``(n, n)``.

    One assignment of size ``2n - k`` (Chapel et al. 2020's dummy points, whole ones): the
    real rows and columns, ``n - k`` dummy rows and ``n - k`` dummy columns,

    .. math::
       E = \begin{pmatrix} C & 0 \\ 0 & D\, \mathbb 1 \mathbb 1^\top \end{pmatrix}, \qquad
       D = (\max C - \min C) - \min C .

    A dummy row either takes a real column or a dummy one; with ``d`` dummy-dummy cells the
    real block holds ``k + d`` pairs, and the assignment costs
    :math:`\mathrm{real}'(k + d) + d\,(D + \min C) + k \min C`, where
    :math:`\mathrm{real}'` is the cost of the real pairs under :math:`C - \min C \ge 0`.
    ``k + d`` pairs cost at least the best ``k`` there, and :math:`D + \min C = \max C -
    \min C > 0` (``1`` when ``C`` is constant), so an optimal assignment has ``d = 0`` and
    its real block is the best set of ``k`` pairs, whatever the sign of ``C``. ``D`` keeps the
    cost range of ``C`` (a large penalty such as ``n max C`` slows the auction's
    epsilon-scaling 30 to 60 times at ``n = 512``).
    """
    n = cost.shape[0]
    if k <= 0:
        return jnp.zeros_like(cost)
    if k >= n:  # every row moves: plain exact OT
        perm = solve_assignment(cost, method=method)
        return (perm[:, None] == jnp.arange(n)[None, :]).astype(cost.dtype)
    spread = jnp.max(cost) - jnp.min(cost)
    corner = jnp.where(spread > 0, spread, 1.0) - jnp.min(cost)
    d = n - k
    extended = jnp.block([
        [cost, jnp.zeros((n, d), cost.dtype)],
        [jnp.zeros((d, n), cost.dtype), jnp.full((d, d), corner, cost.dtype)],
    ])
    perm = solve_assignment(extended, method=method)[:n]  # real rows: a real column or a dummy
    return (perm[:, None] == jnp.arange(n)[None, :]).astype(cost.dtype)


@functools.partial(jax.jit, static_argnames=("mass", "method"))
def partial_plan(cost: jax.Array, mass: float, *, method: str = "auto") -> jax.Array:
    r"""The exact partial OT plan ``(n, n)`` between uniform weights ``1/n`` (mass ``m``).

    With :math:`m n = k + \theta` (``k`` whole pairs, :math:`0 \le \theta < 1`),

    .. math:: P = \tfrac1n \big((1 - \theta) Q_k + \theta Q_{k+1}\big),

    :math:`Q_j` the 0/1 matrix of the cheapest ``j`` disjoint pairs
    (:func:`partial_assignment`). This is optimal: the problem is a min-cost flow of value
    :math:`m n` with unit capacities, whose optimal cost is convex and piecewise linear in
    the flow value with breakpoints at the integers (successive shortest paths augment one
    unit at a time), so it is the interpolation of the optima at ``k`` and ``k + 1``, and the
    same mixture of their plans attains it. ``m = 1`` is exact OT (a permutation).
    ``mass`` is a Python number: it sets the sizes of the assignments.
    """
    n = cost.shape[0]
    k, theta = split_mass(mass, n)
    plan = partial_assignment(cost, k, method)
    if theta > 0:
        plan = (1.0 - theta) * plan + theta * partial_assignment(cost, k + 1, method)
    return plan / n


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def entropic_partial_plan(cost, mass, epsilon, *, threshold, max_iterations):
    r"""The entropic partial plan: balanced Sinkhorn (ott-jax) on the problem with one dummy
    point on each side.

    .. math::
       \tilde C = \begin{pmatrix} C & 0 \\ 0 & +\infty \end{pmatrix}, \quad
       \tilde a = \tilde b = \big(\tfrac1n, \dots, \tfrac1n, 1 - m\big), \quad
       \min_{\tilde P \in U(\tilde a, \tilde b)} \langle \tilde P, \tilde C\rangle
       - \varepsilon H(\tilde P), \quad P = \tilde P_{1:n, 1:n} .

    The dummy row takes the ``1 - m`` of the data side that is not transported, the dummy
    column that of the source side, and the infinite corner keeps them from trading with
    each other, so the real block carries mass ``m`` with row and column sums at most
    ``1/n``; as :math:`\varepsilon \to 0` it is the exact partial plan (Chapel et al. 2020,
    whose reduction this is). Its entropy also spreads the dummy mass, so for a given
    :math:`\varepsilon` it is not POT's ``entropic_partial_wasserstein`` (Benamou et al.
    2015's projections, entropy on the real block only), though both tend to the same limit.

    Returns:
      ``(plan (n, n), marginal_error)``: the relative L1 error of the extended plan's
      marginals, ``max(|P~ 1 - a~|_1, |P~^T 1 - b~|_1) / (2 - m)``.
    """
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as sinkhorn_lib

    n = cost.shape[0]
    dtype = cost.dtype
    mass = jnp.asarray(mass, dtype)
    ext = jnp.zeros((n + 1, n + 1), dtype).at[:n, :n].set(cost).at[n, n].set(jnp.inf)
    w = jnp.concatenate([jnp.full((n,), 1.0 / n, dtype), jnp.reshape(1.0 - mass, (1,))])
    solver = sinkhorn_lib.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
    out = solver(linear_problem.LinearProblem(
        geometry.Geometry(cost_matrix=ext, epsilon=epsilon), a=w, b=w))
    plan = out.matrix
    rows = jnp.abs(plan.sum(axis=1) - w).sum()
    cols = jnp.abs(plan.sum(axis=0) - w).sum()
    return plan[:n, :n], jnp.maximum(rows, cols) / (2.0 - mass)


def systematic_indices(key: jax.Array, weights: jax.Array, num: int) -> jax.Array:
    r"""``num`` indices into the 1-D ``weights``, by systematic resampling.

    One uniform :math:`u` and the ``num`` evenly spaced positions
    :math:`(u + i) / \mathrm{num}` on the normalised cumulative weights: index ``j`` is
    drawn :math:`\lfloor \mathrm{num}\, w_j / \sum w \rfloor` or one more times (its expected
    count exactly ``num w_j / sum w``), with far less spread than ``num`` independent draws.
    Indices come out in increasing order; a zero weight is never drawn.
    """
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(key, (), cdf.dtype)
    positions = (u + jnp.arange(num, dtype=cdf.dtype)) / num * cdf[-1]
    idx = jnp.searchsorted(cdf, positions, side="right")
    last_positive = weights.shape[0] - 1 - jnp.argmax(weights[::-1] > 0)
    return jnp.minimum(idx, last_positive)


@pytree_dataclass
class PartialOTCoupling(AbstractCoupling):
    r"""Partial optimal transport: pairs drawn from the best-matched fraction ``mass`` of a batch.

    With the squared distances :math:`C_{ij} = \|x_0^i - x_1^j\|^2` and uniform weights
    :math:`a = b = \tfrac1B \mathbb 1`,

    .. math::
       P^\star = \arg\min_{P \ge 0} \langle P, C\rangle \quad \text{s.t.} \quad
       P\mathbb 1 \le a, \quad P^\top \mathbb 1 \le b, \quad \mathbb 1^\top P \mathbb 1 = m,

    and the ``B`` pairs of the batch are drawn from the transported part :math:`P^\star / m`.
    So a fraction ``1 - m`` of each side, the rows that are hardest to match, is left out of
    this step's pairs, and the matched rows fill the whole batch. With ``epsilon=None`` the
    plan is exact: ``mB = k`` whole pairs give the cheapest ``k`` disjoint pairs (a partial
    permutation; a fractional ``mB`` mixes ``k`` and ``k + 1``), solved as one assignment of
    size ``2B - k`` (Chapel et al. 2020's dummy points; the compiled solver of
    :func:`~flowjax_fm.couplings.solve_assignment`). With ``epsilon`` it is the entropic
    plan of the same problem with one dummy point per side (ott-jax's Sinkhorn).

    **How the batch is filled.** ``sampling="systematic"`` (default) draws the ``B`` pairs
    by systematic resampling of :math:`P^\star / m`: each transported pair appears
    :math:`\lfloor B P_{ij} / m\rfloor` or one more times. For the exact plan with ``mB = k``
    that is every one of the ``k`` matched pairs ``B / k`` times (up to one), so the loss
    is an unbiased estimate of the loss on the matched pairs, with no extra variance from
    picking which of them to keep (dropping the unmatched rows instead would change the
    batch size, and so the shapes, with ``m``). ``sampling="pairs"`` draws ``B`` i.i.d.
    pairs from :math:`P^\star / m`, as torchcfm's plan sampler does with POT's plan.

    What this trains: a flow between the transported parts of the two distributions, each
    renormalised. A generative model whose source must stay all of ``N(0, I)`` wants ``m``
    near 1 (the unmatched noise rows are a different ``1 - m`` each step, but the unmatched
    data rows are the same outliers every time, which is the point: they are not learnt).

    Conditions as for :class:`~flowjax_fm.couplings.ExactOTCoupling`: integer labels
    penalise cross-label pairs (exact) or zero them in the plan (entropic), floating
    conditions enter the cost with ``cond_weight``.

    Args:
      mass: ``m`` in ``(0, 1]``; ``m = 1`` is exact minibatch OT. Static (a new value
        compiles anew): ``mB`` sets the sizes of the exact plan's assignments. A whole
        ``mB`` (``m = 0.75`` at ``B = 256``) needs one assignment, a fractional one two.
      epsilon: ``None`` (default: exact) or the entropic regularisation in ``(0, inf)`` (a
        leaf), in units of the squared distances, or of their mean with
        ``relative_epsilon="mean"``.
      relative_epsilon: ``None`` or ``"mean"`` (static), as for
        :class:`~flowjax_fm.couplings.SinkhornCoupling`.
      sampling: ``"systematic"`` or ``"pairs"`` (static), see above.
      method: the assignment solver of the exact plan (static), as
        :class:`~flowjax_fm.couplings.ExactOTCoupling`'s.
      threshold, max_iterations, marginal_tol, throw: Sinkhorn's stopping rule, iteration
        budget and check of the entropic plan, as for
        :class:`~flowjax_fm.couplings.SinkhornCoupling` (the marginal error is that of the
        extended problem); unused when exact.
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a leaf), or ``None``.

    Raises:
      ValueError: at construction, ``mass`` outside ``(0, 1]``, ``epsilon`` not ``None`` or
        in ``(0, inf)``, an unknown ``sampling``, ``method`` or ``relative_epsilon``
        (``relative_epsilon`` without ``epsilon``), a bad ``threshold``,
        ``max_iterations``, ``marginal_tol``, ``throw`` or ``cond_weight``; at call time,
        ill-shaped inputs (:func:`~flowjax_fm.couplings.check_batch`) or a floating
        condition with ``cond_weight=None``.
      RuntimeError: with ``epsilon`` and ``throw=True``, at run time, an entropic plan that
        fails its marginal check.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jnp.array([[0.0], [1.0], [2.0], [3.0]])
      >>> x1 = jnp.array([[0.1], [1.1], [2.1], [50.0]])  # one outlier in the data
      >>> coupling = PartialOTCoupling(mass=0.75)
      >>> plan = coupling.plan(x0, x1)
      >>> (plan * 4).tolist()  # three pairs moved, the outlier and x0 = 3 left out
      [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
      >>> p = coupling(jax.random.key(0), x0, x1)
      >>> sorted(zip(p.source.tolist(), p.target.tolist()))[:3]  # 4 pairs from the 3 matched
      [(0, 0), (1, 1), (2, 2)]
      >>> bool((p.target < 3).all())
      True
      >>> soft = PartialOTCoupling(mass=0.75, epsilon=0.01).plan(x0, x1)
      >>> round(float(soft.sum()), 2), round(float(soft[:, 3].sum()), 4)
      (0.75, 0.0)

    References:
      Chapel, Alaya and Gasso 2020, Partial Optimal Transport with Applications on
      Positive-Unlabeled Learning (the dummy-point reduction); Figalli 2010, The optimal
      partial transport problem; Benamou et al. 2015 (entropic partial OT); POT's
      ``ot.partial.partial_wasserstein``.
    """

    mass: float = static_field(default=0.9)
    epsilon: float | None = None
    relative_epsilon: str | None = static_field(default=None)
    sampling: str = static_field(default="systematic")
    method: str = static_field(default="auto")
    threshold: float = 1e-3
    max_iterations: int = static_field(default=2000)
    marginal_tol: float = 1e-2
    throw: bool = static_field(default=True)
    cond_weight: float | None = None

    def __post_init__(self):
        check_real("mass", self.mass, 0.0, 1.0, low_open=True)
        object.__setattr__(self, "mass", float(self.mass))
        check_real("epsilon", self.epsilon, 0.0, low_open=True, none_ok=True)
        check_choice("relative_epsilon", self.relative_epsilon, (None, "mean"))
        if self.relative_epsilon is not None and self.epsilon is None:
            raise ValueError(
                f"relative_epsilon={self.relative_epsilon!r} scales epsilon, but epsilon is None "
                "(the exact plan): give epsilon too, or leave relative_epsilon=None"
            )
        check_choice("sampling", self.sampling, _SAMPLING)
        check_choice("method", self.method, SOLVERS)
        check_real("threshold", self.threshold, 0.0, low_open=True)
        object.__setattr__(self, "max_iterations", check_int("max_iterations", self.max_iterations, 1))
        check_real("marginal_tol", self.marginal_tol, 0.0, low_open=True, finite=False)
        object.__setattr__(self, "throw", check_bool("throw", self.throw))
        check_cond_weight(self.cond_weight)

    @property
    def exact(self) -> bool:
        """Whether the plan is the exact one (``epsilon is None``)."""
        return self.epsilon is None

    def cost(self, x0, x1, cond0=None, cond1=None) -> jax.Array:
        """The cost matrix ``(B, B)``: squared distances, ``+ cond_weight *`` the condition
        cost, plus the label penalty (with labels); non-finite entries made finite."""
        sq = squared_distances(x0, x1).astype(jnp.float32)
        cost = _conditioned_cost("PartialOTCoupling", self.cond_weight, sq, cond0, cond1)
        return _finite_cost(cost)

    def _solve(self, x0, x1, cond0, cond1):
        """``(plan, ok, error)``: ``ok`` / ``error`` are ``None`` for the exact plan."""
        cost = self.cost(x0, x1, cond0, cond1)
        if self.exact:
            return partial_plan(cost, self.mass, method=self.method), None, None
        eps = jnp.asarray(self.epsilon, jnp.float32)
        if self.relative_epsilon == "mean":
            mean = jnp.mean(_finite_cost(squared_distances(x0, x1).astype(jnp.float32)))
            eps = eps * jnp.where(mean > 0, mean, 1.0)
        plan, error = entropic_partial_plan(cost, self.mass, eps, threshold=self.threshold,
                                            max_iterations=self.max_iterations)
        ok = jnp.isfinite(error) & (error <= self.marginal_tol)
        mask = None if cond0 is None else same_label(cond0, cond1)
        if mask is not None:
            plan = jnp.where(mask, plan, 0.0)
        return plan, ok, error

    def _failure_message(self) -> str:
        scale = " x the mean cost (relative_epsilon='mean')" if self.relative_epsilon else ""
        return (
            "PartialOTCoupling: the entropic partial plan failed its check: the marginal error "
            f"of the extended problem (relative L1) is above marginal_tol={_shown(self.marginal_tol)}, "
            f"or it is not finite, after up to max_iterations={self.max_iterations} Sinkhorn "
            f"iterations at epsilon={_shown(self.epsilon)}{scale}, mass={_shown(self.mass)}. "
            "Raise epsilon or max_iterations, use relative_epsilon='mean', or epsilon=None (the "
            "exact plan); throw=False returns the pairs with pairing.converged / "
            "pairing.marginal_error reporting it"
        )

    def plan(self, x0, x1, cond0=None, cond1=None) -> jax.Array:
        r"""The partial plan ``(B, B)``: total mass ``m``, row and column sums at most ``1/B``
        (the entropic one checked as described, unless ``throw=False``)."""
        check_batch(x0, x1, cond0, cond1)
        plan, ok, _ = self._solve(x0, x1, cond0, cond1)
        if ok is None:
            return plan
        return fail_if(plan, ~ok, self._failure_message(), self.throw)

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        n = x0.shape[0]
        plan, ok, error = jax.lax.stop_gradient(self._solve(x0, x1, cond0, cond1))
        weights = jnp.maximum(jnp.nan_to_num(plan, nan=0.0), 0.0).reshape(-1)
        if self.sampling == "systematic":
            flat = systematic_indices(key, weights, n)
        else:
            flat = draw_indices(key, weights, num=n)
        rows = (flat // n).astype(jnp.int32)
        cols = (flat % n).astype(jnp.int32)
        if ok is None:
            return Pairing(rows, cols)
        rows, cols = fail_if((rows, cols), ~ok, self._failure_message(), self.throw)
        return Pairing(rows, cols, ok, error)

