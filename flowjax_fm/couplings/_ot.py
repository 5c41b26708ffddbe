"""Optimal-transport couplings: exact minibatch OT and entropic OT through ott-jax."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

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
from flowjax_fm.manifolds._base import AbstractManifold

__all__ = ["ExactOTCoupling", "SinkhornCoupling"]


def _check_manifold(value) -> None:
    """A TypeError unless ``value`` is ``None`` or an :class:`AbstractManifold`."""
    if value is not None and not isinstance(value, AbstractManifold):
        raise TypeError(
            "manifold must be None (Euclidean squared distances) or an instance of "
            f"fm.manifolds.AbstractManifold (e.g. fm.manifolds.Sphere()), got {type(value).__name__}"
        )


def _ground_cost(manifold, x0, x1):
    r"""The cost before conditions: :math:`\|x_0^i - x_1^j\|^2`, or :math:`d_M(x_0^i, x_1^j)^2`."""
    if manifold is None:
        return squared_distances(x0, x1)
    return manifold.squared_distances(x0, x1)


def _repr(obj) -> str:
    """The dataclass repr without ``manifold=None`` (so that the Euclidean default reads as before)."""
    shown = [
        f"{f.name}={getattr(obj, f.name)!r}"
        for f in dataclasses.fields(obj)
        if f.repr and not (f.name == "manifold" and obj.manifold is None)
    ]
    return f"{type(obj).__name__}({', '.join(shown)})"


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

    On a manifold (``manifold=M``, rows of ``x0`` / ``x1`` points of ``M``) the squared
    distance is the squared geodesic one, :math:`d_M(x_0^i, x_1^j)^2`
    (:meth:`~flowjax_fm.manifolds.AbstractManifold.squared_distances`): the wrapped distance on
    the flat torus, the great-circle angle on the sphere. The pairs are then the minibatch OT
    pairs of Riemannian flow matching.

    Args:
      method: assignment solver, ``"auto"`` (default), ``"c"``, ``"scipy"``, ``"jax"`` or
        ``"auction"`` (pure JAX, no host round trip: see
        :func:`~flowjax_fm.couplings.auction_assignment`) (static).
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a pytree leaf: a new value
        does not recompile); ``None`` (default) refuses floating conditions.
      manifold: ``None`` (default: Euclidean squared distances) or an
        :class:`~flowjax_fm.manifolds.AbstractManifold` whose squared geodesic distance is the
        cost.

    Raises:
      TypeError: at construction, a ``manifold`` that is neither ``None`` nor a manifold.
      ValueError: at construction, an unknown ``method`` or a concrete ``cond_weight`` that
        is negative or not finite; at call time, a floating condition with
        ``cond_weight=None``, or ill-shaped inputs (see
        :func:`~flowjax_fm.couplings.check_batch`; with a manifold, rows that are not its
        points).
      ImportError: at call time, ``method="c"`` without the compiled solver.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x0 = jnp.array([[0.0], [10.0]]); x1 = jnp.array([[9.0], [1.0]])
      >>> ExactOTCoupling()(jax.random.key(0), x0, x1).target.tolist()
      [1, 0]
      >>> c = jnp.array([[0.0], [1.0]])  # data row j's condition, also carried by source row j
      >>> ExactOTCoupling(cond_weight=1e3)(jax.random.key(0), x0, x1, c, c).target.tolist()
      [0, 1]
      >>> from flowjax_fm.manifolds import FlatTorus  # angles: 0.1 and 6.2 are 0.18 apart
      >>> a = jnp.array([[0.1], [3.0]]); b = jnp.array([[6.2], [3.3]])
      >>> ExactOTCoupling()(jax.random.key(0), a, b).target.tolist()
      [1, 0]
      >>> ExactOTCoupling(manifold=FlatTorus())(jax.random.key(0), a, b).target.tolist()
      [0, 1]

    References:
      Tong et al. 2023; Pooladian et al. 2023, Multisample Flow Matching; Cheng et al. 2025,
      C2OT: Conditional Optimal Transport for Flow Matching.
    """

    method: str = static_field(default="auto")
    cond_weight: float | None = None
    manifold: AbstractManifold | None = None

    def __post_init__(self):
        check_choice("method", self.method, SOLVERS)
        check_cond_weight(self.cond_weight)
        _check_manifold(self.manifold)

    __repr__ = _repr

    def cost(self, x0, x1, cond0=None, cond1=None):
        """The cost matrix solved: squared (geodesic, with a manifold) distances,
        ``+ cond_weight *`` the condition cost, plus the label penalty (with labels)."""
        return _conditioned_cost(
            "ExactOTCoupling", self.cond_weight, _ground_cost(self.manifold, x0, x1), cond0, cond1
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
_DOMAINS = ("auto", "kernel", "log")
# A kernel-domain step is kept while every scaling is in [e^-B, e^B]: a cell of K lost to
# underflow (below float32's smallest normal, 1.2e-38) then holds under e^(2B) 1.2e-38 = 6e-17
# of the plan's mass.
_SCALING_BOUND = 25.0
_LOST_MASS = float(np.exp(2 * _SCALING_BOUND) * np.finfo(np.float32).tiny)


class _Solution(NamedTuple):
    plan: jax.Array  # (n, m)
    converged: jax.Array  # bool: the last error is finite and below the threshold
    iterations: jax.Array  # int32: Sinkhorn iterations run (row and column update = 1)


def _log_sinkhorn(cost, eps, *, tau_a, tau_b, threshold, max_iterations, inner_iterations,
                  anderson) -> _Solution:
    """ott-jax's Sinkhorn in the log domain (zero initial potentials)."""
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import acceleration
    from ott.solvers.linear import sinkhorn as sinkhorn_lib

    solver = sinkhorn_lib.Sinkhorn(
        threshold=threshold, max_iterations=max_iterations, inner_iterations=inner_iterations,
        anderson=acceleration.AndersonAcceleration(memory=anderson) if anderson else None,
    )
    problem = linear_problem.LinearProblem(
        geometry.Geometry(cost_matrix=cost, epsilon=eps), tau_a=tau_a, tau_b=tau_b
    )
    out = solver(problem)
    return _Solution(out.matrix, out.converged, jnp.asarray(out.n_iters, jnp.int32))


@functools.partial(jax.jit, static_argnames=("tau_a", "tau_b", "max_iterations", "inner_iterations"))
def _kernel_sinkhorn(cost, eps, *, tau_a, tau_b, threshold, max_iterations,
                     inner_iterations) -> _Solution:
    r"""Sinkhorn's iterations as matrix-vector products, stabilised by absorption.

    The iterates of :func:`_log_sinkhorn` (the same updates from the same zero potentials, the
    same error every ``inner_iterations``, the same stop), in scalings of a kernel built from
    potentials ``(f, g)`` absorbed so far,

    .. math::
       P = \operatorname{diag}(u)\, K \operatorname{diag}(v), \qquad
       K_{ij} = e^{(f_i + g_j - C_{ij})/\varepsilon}, \qquad
       v \leftarrow (b \oslash K^\top u)^{\tau_b} e^{(\tau_b - 1) g/\varepsilon}, \quad
       u \leftarrow (a \oslash K v)^{\tau_a} e^{(\tau_a - 1) f/\varepsilon}.

    A matrix-vector product costs a tenth of ott-jax's log-sum-exp pass on a CPU core (which
    adds the potentials, scales, takes a maximum and an ``exp`` per cell): see
    ``benchmarks/results/sinkhorn.md`` for the two side by side.

    The first iteration takes one ``exp`` pass (the column update, on the cost shifted by each
    column's minimum, then the row update by a matrix-vector product). An iteration whose
    scalings would leave :math:`[e^{-B}, e^{B}]` (``B = 25``) or not be finite is not taken:
    the scalings are absorbed (:math:`f \mathrel{+}= \varepsilon \log u`, the same for
    ``g``; ``K`` rebuilt, one ``exp`` pass; ``u = v = 1``) and the iteration is retried; if it
    still would (a row or column of ``K`` all below float32's range), it is made in the log
    domain (ott-jax's update, two log-sum-exp passes) and ``K`` rebuilt from it; so is the
    first iteration when a row of its kernel is that far below. So no scaling overflows, a cell
    of ``K`` lost to underflow holds under :math:`e^{2B}` times float32's smallest normal,
    ``6e-17``, of the plan's mass, and ``exp(-C / eps)`` never has to be representable: a
    small ``epsilon`` costs rebuilds, not a wrong plan.
    """
    n, m = cost.shape
    dtype = cost.dtype
    a = jnp.full((n,), 1.0 / n, dtype)
    b = jnp.full((m,), 1.0 / m, dtype)
    lo, hi = np.exp(-_SCALING_BOUND), np.exp(_SCALING_BOUND)
    ones_n, ones_m = jnp.ones((n,), dtype), jnp.ones((m,), dtype)
    balanced = tau_a == 1.0 and tau_b == 1.0

    def rebuilt(f, g, kernel, done):
        """The state with ``K`` built on ``(f, g)`` (``u = v = 1``)."""
        return f, g, ones_n, ones_m, kernel, kernel.sum(axis=0), kernel.sum(axis=1), done

    def log_step(state):
        """One log-domain iteration from the state's potentials; ``K`` = the plan it gives."""
        f, g, u, v, _, _, _, done = state
        f, g = f + eps * jnp.log(u), g + eps * jnp.log(v)
        lse_g = jax.nn.logsumexp((f[:, None] - cost) / eps, axis=0)
        g = tau_b * (eps * jnp.log(b) - eps * jnp.where(jnp.isfinite(lse_g), lse_g, 0.0))
        w = (g[None, :] - cost) / eps  # the row update's log-sum-exp, reused to build K
        top = jnp.max(w, axis=1)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        shifted = jnp.exp(w - top[:, None])
        lse_f = top + jnp.log(shifted.sum(axis=1))
        lse_f = jnp.where(jnp.isfinite(lse_f), lse_f, 0.0)
        f = tau_a * (eps * jnp.log(a) - eps * lse_f)
        # K_ij = exp((f_i + g_j - C_ij) / eps) = shifted_ij exp(f_i / eps + top_i), the
        # exponent written without the cancellation of two large terms
        row = tau_a * (jnp.log(a) - lse_f + top) + (1.0 - tau_a) * top
        return rebuilt(f, g, shifted * jnp.exp(row)[:, None], done + 1)

    def absorb(state):
        f, g, u, v, _, _, _, done = state
        f, g = f + eps * jnp.log(u), g + eps * jnp.log(v)
        return rebuilt(f, g, jnp.exp((f[:, None] + g[None, :] - cost) / eps), done)

    def scaled(marginal, k_product, potential, tau):
        if tau == 1.0:
            return marginal / k_product
        return jnp.exp(tau * jnp.log(marginal / k_product) + (tau - 1.0) * potential / eps)

    def kernel_steps(state, target):
        """Kernel-domain iterations until ``target`` or one that is not safe (not taken)."""
        f, g, u, v, kernel, ku, kv, done = state

        def step(c):
            u, v, ku, kv, done, _ = c
            v_new = scaled(b, ku, g, tau_b)  # ku = u K: the column sums, carried
            kv_new = kernel @ v_new
            u_new = scaled(a, kv_new, f, tau_a)
            safe = jnp.all((u_new > lo) & (u_new < hi)) & jnp.all((v_new > lo) & (v_new < hi))
            ku_new = u_new @ kernel

            def pick(new, old):
                return jnp.where(safe, new, old)

            return (pick(u_new, u), pick(v_new, v), pick(ku_new, ku), pick(kv_new, kv),
                    done + safe.astype(done.dtype), safe)

        u, v, ku, kv, done, safe = jax.lax.while_loop(
            lambda c: c[5] & (c[4] < target), step, (u, v, ku, kv, done, jnp.bool_(True))
        )
        return (f, g, u, v, kernel, ku, kv, done), safe

    def error(state):  # ott's solution_error, 1-norm
        f, g, u, v, _, ku, kv, _ = state
        if balanced:  # the row marginal is exact after its update
            return jnp.abs(v * ku - b).sum()
        f, g = f + eps * jnp.log(u), g + eps * jnp.log(v)
        fit_a = a if tau_a == 1.0 else a * jnp.exp(-f * (1.0 - tau_a) / (eps * tau_a))
        fit_b = b if tau_b == 1.0 else b * jnp.exp(-g * (1.0 - tau_b) / (eps * tau_b))
        return jnp.abs(u * kv - fit_a).sum() + jnp.abs(v * ku - fit_b).sum()

    def segment(carry):
        """Kernel steps to the end of the block, or to an unsafe step: then absorb, or (just
        after a rebuild) one log-domain step."""
        state, fresh, _, _ = carry
        before = state[-1]
        target = (before // inner_iterations + 1) * inner_iterations
        state, safe = kernel_steps(state, target)
        fresh = fresh & (state[-1] == before)  # no step since K was rebuilt
        branch = jnp.where(safe, 0, jnp.where(fresh, 2, 1))
        state = jax.lax.switch(branch, [lambda s: s, absorb, log_step], state)
        at_end = state[-1] % inner_iterations == 0
        return state, ~safe, at_end, error(state)

    def go_on(carry):
        state, _, at_end, err = carry
        stop = (state[-1] >= max_iterations) | (err < threshold) | ~jnp.isfinite(err)
        return ~at_end | ~stop

    # ott's first iteration, from zero potentials, in one exp pass: the column update on the
    # cost shifted by each column's minimum (every column has a cell exp(0) = 1), then the row
    # update by a matrix-vector product. Unless a row of that kernel is so far below float32's
    # range that its cells lost to underflow could hold more than _LOST_MASS of its mass (a
    # source far from every target): then ott's update, with a maximum per row.
    low = jnp.min(cost, axis=0)
    low = jnp.where(jnp.isfinite(low), low, 0.0)
    shifted = jnp.exp((low[None, :] - cost) / eps)
    g = tau_b * (low + eps * jnp.log(b / shifted.sum(axis=0)))  # eps log b - eps lse(-C/eps)
    col = jnp.exp((g - low) / eps)  # exp(g / eps) K_0 = shifted * col: the plan after g
    rows = shifted @ col
    f = tau_a * (eps * jnp.log(a) - eps * jnp.log(rows))
    # a row's lost cells hold under n max(col) tiny / rows_i of its mass: at most _LOST_MASS
    lost = n * jnp.max(col) * np.finfo(np.float32).tiny / _LOST_MASS
    exact = jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(col)) & (jnp.min(rows) >= lost)
    # else: zero potentials and an empty K, so that the first kernel step is unsafe and the
    # loop makes the iteration in the log domain
    kernel = jnp.where(exact, shifted * col[None, :] * jnp.exp(f / eps)[:, None], 0.0)
    state = rebuilt(jnp.where(exact, f, 0.0), jnp.where(exact, g, 0.0), kernel,
                    exact.astype(jnp.int32))
    carry = (state, jnp.bool_(True), exact & (inner_iterations == 1), error(state))
    state, _, _, err = jax.lax.while_loop(go_on, segment, carry)
    u, v, kernel = state[2], state[3], state[4]
    plan = u[:, None] * kernel * v[None, :]
    return _Solution(plan, jnp.isfinite(err) & (err < threshold), state[-1])


def _shown(value) -> str:
    """A hyperparameter as the error message quotes it (a traced one cannot be read)."""
    if is_traced(value):
        return "<traced>"
    v = np.asarray(value)
    return f"{float(v):.3g}" if v.ndim == 0 else f"<array of shape {v.shape}>"


@pytree_dataclass
class SinkhornCoupling(AbstractCoupling):
    r"""Entropic OT coupling, solved by Sinkhorn's iterations; unbalanced when ``tau < 1``.

    .. math::
       P^\star = \arg\min_{P \in U(a, b)} \langle P, C \rangle - \varepsilon H(P),
       \qquad C_{ij} = \|x_0^i - x_1^j\|^2

    (with ``tau_a``/``tau_b`` < 1 the marginal constraints become KL penalties of weight
    :math:`\varepsilon\tau/(1-\tau)`), solved in the ``domain`` below. Pairs are then drawn
    from :math:`P^\star` by ``sampling``:

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
      anderson: Anderson acceleration memory, ``0`` (off) or an int ``>= 2`` (static). It
        runs in the log domain (``domain="auto"`` switches to it): 5 halves the iterations on
        2-D problems at moderate epsilon, but a log-domain iteration costs several kernel-domain
        ones, and it can take more iterations at a very small relative epsilon; hence off by
        default.
      cond_weight: ``w`` in ``[0, inf)`` for floating conditions (a pytree leaf): the cost
        becomes :math:`\|x_0^i - x_1^j\|^2 + w\,\|c_i - c_j\|^2` (C2OT; pass ``cond0 =
        cond1 =`` the data conditions). ``None`` (default) refuses floating conditions.
        ``relative_epsilon="mean"`` still scales by the mean squared distance of ``x`` alone.
      manifold: ``None`` (default: Euclidean squared distances) or an
        :class:`~flowjax_fm.manifolds.AbstractManifold` whose squared geodesic distance is the
        cost (the wrapped distance on the flat torus, the great-circle angle on the sphere);
        ``relative_epsilon="mean"`` then scales by the mean squared geodesic distance.
      marginal_tol: the largest marginal error ``e`` of a balanced plan that passes, in
        ``(0, inf]`` (a leaf; ``inf`` checks finiteness only). The default ``1e-2`` is ten
        times the default ``threshold``, so converged plans pass with a margin (measured
        ``e <= 1e-3``), and so do plans that stopped at ``max_iterations`` just short of it
        (``e = 0.007`` at ``epsilon = 0.01``, 256 points), whose draws are off by under 1% of
        the mass; ``e`` of a plan far from converged is 0.03 to 0.9.
      throw: ``True`` (default) raises on a failed plan; ``False`` reports it in the
        :class:`~flowjax_fm.couplings.Pairing` instead (static).
      domain: how the iterations are computed (static), the same iterates (from the same
        zero potentials, with the same stopping rule) in each, so the same plan up to float32
        rounding:

        * ``"kernel"``: in scalings, :math:`P = \operatorname{diag}(u) K
          \operatorname{diag}(v)` with :math:`K = e^{(f \oplus g - C)/\varepsilon}`: an
          iteration is two matrix-vector products, about ten times cheaper than two
          log-sum-exp passes on a CPU core. Stabilised: the potentials ``f, g`` absorb the
          scalings (``K`` rebuilt) whenever one would leave :math:`[e^{-25}, e^{25}]`, and an
          iteration that would even then is made in the log domain, so ``exp(-C / eps)``
          never has to be representable in float32 (any ``epsilon`` the log domain solves).
          No Anderson acceleration; :meth:`plan` is not reverse-mode differentiable (a
          ``while_loop``; pairs never carry gradients anyway).
        * ``"log"``: ott-jax's log-domain Sinkhorn (with Anderson acceleration if asked).
        * ``"auto"`` (default): ``"log"`` when ``anderson > 0``, else ``"kernel"``.

    With labels (integer leaves of the conditions), the cost of cross-label pairs is penalised
    and those cells of the plan are set to zero before drawing, so pairs never cross labels
    (the check reads the plan before that mask).

    Raises:
      TypeError: at construction, a ``manifold`` that is neither ``None`` nor a manifold.
      ValueError: at construction, a value outside the ranges above (``epsilon = 0`` would
        give an all-zero plan and the same pair on every row), an unknown ``sampling``,
        ``relative_epsilon`` or ``domain``, ``anderson`` with ``domain="kernel"``, a non-bool
        ``throw``; at call time, a floating condition with ``cond_weight=None``.
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
      >>> kernel = SinkhornCoupling(epsilon=0.1).plan(x0, x1)  # domain="auto": the kernel domain
      >>> log = SinkhornCoupling(epsilon=0.1, domain="log").plan(x0, x1)
      >>> float(jnp.abs(kernel - log).sum()) < 1e-5
      True

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
    domain: str = static_field(default="auto")
    manifold: AbstractManifold | None = None

    __repr__ = _repr

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
        check_choice("domain", self.domain, _DOMAINS)
        if self.domain == "kernel" and self.anderson:
            raise ValueError(
                f"anderson={self.anderson} needs domain='log' or 'auto' (ott-jax accelerates "
                "log-domain potentials), got domain='kernel'"
            )
        _check_manifold(self.manifold)

    @property
    def balanced(self) -> bool:
        """Whether both marginals are hard constraints (``tau_a = tau_b = 1``)."""
        return self.tau_a == 1.0 and self.tau_b == 1.0

    @property
    def resolved_domain(self) -> str:
        """The domain ``"auto"`` runs: ``"log"`` with Anderson acceleration, else ``"kernel"``."""
        if self.domain == "auto":
            return "log" if self.anderson else "kernel"
        return self.domain

    def _solve(self, x0, x1, cond0, cond1):
        """The plan (before the label mask), whether it passed the check, its marginal error,
        and the iterations run."""
        sq = _ground_cost(self.manifold, x0, x1).astype(jnp.float32)
        cost = _conditioned_cost("SinkhornCoupling", self.cond_weight, sq, cond0, cond1)
        # relative epsilon is taken on the squared distances alone (not on the penalty); all
        # points at one place (mean 0) have a zero cost, where any epsilon is as good
        eps = jnp.asarray(self.epsilon, jnp.float32)
        if self.relative_epsilon == "mean":
            mean = jnp.mean(sq)
            eps = eps * jnp.where(mean > 0, mean, 1.0)
        options = dict(tau_a=self.tau_a, tau_b=self.tau_b, threshold=self.threshold,
                       max_iterations=self.max_iterations, inner_iterations=self.inner_iterations)
        if self.resolved_domain == "kernel":
            out = _kernel_sinkhorn(cost, eps, **options)
        else:
            out = _log_sinkhorn(cost, eps, **options, anderson=self.anderson)
        plan = out.plan
        n = plan.shape[0]
        rows = jnp.abs(plan.sum(axis=1) - 1.0 / n).sum()
        cols = jnp.abs(plan.sum(axis=0) - 1.0 / n).sum()
        error = jnp.maximum(rows, cols)  # the weights a, b sum to 1
        finite = jnp.isfinite(error)  # a nan / inf entry reaches the sums
        if self.balanced:
            ok = finite & (error <= self.marginal_tol)
        else:  # relaxed marginals: converged, and some mass left to draw pairs from
            ok = finite & out.converged & (plan.sum() > 0)
        return plan, ok, error, out.iterations

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
        plan, ok, error, _ = self._solve(x0, x1, cond0, cond1)
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
