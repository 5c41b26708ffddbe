r"""Snapshot data and multi-marginal couplings: OT plans between consecutive times, chained.

Snapshot data (a single-cell time course) are independent samples of a population at a few
times :math:`t_0 < \dots < t_{T-1}`, with no individual followed across them. A trajectory
coupling pairs each time's points with the next time's (a minibatch OT plan per consecutive
pair) and composes the pairings into paths :math:`(x_{t_0}, \dots, x_{t_{T-1}})` whose
``k``-th point is a draw of the ``k``-th marginal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowjax_fm._checks import (
    as_floating,
    check_int,
    check_positive_int,
    check_real,
    fail_if,
    is_traced,
)
from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings import AbstractCoupling, ExactOTCoupling, PartialOTCoupling

__all__ = ["Snapshots", "branching_snapshots", "chain_plans", "make_trajectory_sampler"]


def check_times(name: str, times) -> jax.Array:
    """``times`` as a float ``(T,)`` array, ``T >= 2``, finite and strictly increasing when
    concrete (a traced array passes with its shape checked)."""
    if is_traced(times):
        arr = times
    elif isinstance(times, str | bytes):
        raise ValueError(f"{name} must be a 1-D array of T >= 2 real times, got {times!r}")
    else:
        try:
            arr = jnp.asarray(times)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a 1-D array of T >= 2 real times, got {times!r}") from None
        if jnp.issubdtype(arr.dtype, jnp.integer):
            arr = arr.astype(jnp.float32)
    if not jnp.issubdtype(arr.dtype, jnp.floating) or arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(
            f"{name} must be a 1-D array of T >= 2 real times, got dtype {arr.dtype} and shape "
            f"{arr.shape}"
        )
    if not is_traced(arr):
        v = np.asarray(arr, np.float64)
        if not np.all(np.isfinite(v)) or not np.all(np.diff(v) > 0):
            raise ValueError(f"{name} must be finite and strictly increasing, got {v.tolist()}")
    return arr


def _check_points(name: str, points) -> tuple[jax.Array, ...]:
    if isinstance(points, jax.Array | np.ndarray) or not isinstance(points, Sequence):
        raise ValueError(
            f"{name} must be a list or tuple of T arrays (N_k, *event), one per time, got "
            f"{type(points).__name__}" + (f" of shape {np.shape(points)}" if hasattr(points, "shape") else "")
        )
    out = tuple(as_floating(f"{name}[{k}]", x) for k, x in enumerate(points))
    shapes = [tuple(x.shape) for x in out]
    if any(len(s) < 2 or s[0] == 0 for s in shapes):
        raise ValueError(f"each of {name} must be points (N_k, *event) with N_k >= 1, got shapes {shapes}")
    if len({s[1:] for s in shapes}) > 1:
        raise ValueError(f"the points of every time must share one event shape, got shapes {shapes}")
    if len({x.dtype for x in out}) > 1:
        raise ValueError(
            f"the points of every time must share one dtype, got {[str(x.dtype) for x in out]}"
        )
    return out


@pytree_dataclass
class Snapshots:
    r"""Samples of a population at ``T`` increasing times: :math:`X_k \sim p_{t_k}`.

    A frozen pytree: ``times`` and every array of ``points`` are leaves.

    Args:
      times: ``(T,)`` strictly increasing times, ``T >= 2`` (integers are cast to float32).
      points: a list or tuple of ``T`` arrays ``(N_k, *event)``, the samples at each time
        (sizes may differ; event shape and dtype may not).

    Raises:
      ValueError: ``times`` not 1-D, shorter than 2, not finite or not strictly increasing;
        ``points`` not a sequence of ``len(times)`` floating arrays ``(N_k, *event)`` with
        ``N_k >= 1`` and one event shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = Snapshots(times=[0.0, 1.0, 2.0],
      ...               points=[jnp.zeros((4, 2)), jnp.ones((5, 2)), jnp.ones((3, 2))])
      >>> s.num_times, s.sizes, s.event_shape
      (3, (4, 5, 3), (2,))
      >>> train, t, held = s.leave_out(1)
      >>> train.times.tolist(), float(t), held.shape
      ([0.0, 2.0], 1.0, (5, 2))
    """

    times: jax.Array
    points: tuple

    def __post_init__(self):
        points = _check_points("points", self.points)
        times = check_times("times", self.times)
        if times.shape[0] != len(points):
            raise ValueError(
                f"times and points must have one entry per time, got times of shape "
                f"{tuple(times.shape)} and {len(points)} arrays of points"
            )
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "points", points)

    @property
    def num_times(self) -> int:
        """``T``, the number of times."""
        return len(self.points)

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(N_0, ..., N_{T-1})``."""
        return tuple(int(x.shape[0]) for x in self.points)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one point."""
        return tuple(self.points[0].shape[1:])

    def leave_out(self, index: int) -> tuple[Snapshots, jax.Array, jax.Array]:
        """``(the others, t_index, points_index)``: hold one time out (leave-one-out).

        Raises:
          ValueError: ``index`` not an int in ``[0, T)``, or fewer than 2 times left.
        """
        index = check_int("index", index, 0, self.num_times - 1)
        if self.num_times < 3:
            raise ValueError(f"leave_out needs T >= 3 times (2 stay to train on), got T = {self.num_times}")
        keep = [k for k in range(self.num_times) if k != index]
        rest = Snapshots(times=self.times[jnp.asarray(keep)],
                         points=tuple(self.points[k] for k in keep))
        return rest, self.times[index], self.points[index]


def _draw_rows(key, points, n: int) -> tuple[jax.Array, ...]:
    """``n`` rows of each time's points, without replacement (a random subset each)."""
    sizes = [int(x.shape[0]) for x in points]
    if n > min(sizes):
        raise ValueError(
            f"batch_size={n} exceeds the smallest time's number of points, min(N_k) = "
            f"{min(sizes)} (sizes {sizes}): each time's points are drawn without replacement"
        )
    keys = jax.random.split(key, len(points))
    return tuple(x[jax.random.permutation(k, x.shape[0])[:n]] for k, x in zip(keys, points, strict=True))


def _check_coupling(coupling) -> None:
    if not isinstance(coupling, AbstractCoupling):
        raise TypeError(
            "coupling must be an fm.couplings.AbstractCoupling (e.g. fm.couplings.ExactOTCoupling())"
            f", got {type(coupling).__name__}"
        )
    if isinstance(coupling, PartialOTCoupling) or getattr(coupling, "sampling", None) == "pairs":
        raise ValueError(
            f"chain_plans composes pairings with one partner per row (source rows a permutation): "
            f"{type(coupling).__name__}"
            + (f"(sampling={coupling.sampling!r})" if hasattr(coupling, "sampling") else "")
            + " draws pairs with repeats; use ExactOTCoupling(), or SinkhornCoupling("
            "sampling='rows') / 'rounded'"
        )


_NOT_A_PERMUTATION = (
    "chain_plans: the coupling's pairing does not give every source row one partner (its "
    "source indices are not a permutation), so pairings cannot be chained; use a coupling "
    "with one partner per row (ExactOTCoupling, SinkhornCoupling(sampling='rows'))"
)


def chain_plans(
    key: jax.Array,
    data: Snapshots | Sequence[jax.Array],
    *,
    coupling: AbstractCoupling = ExactOTCoupling(),
    batch_size: int | None = None,
) -> jax.Array:
    r"""Chain minibatch OT plans between consecutive times into trajectories ``(T, B, *event)``.

    With batches :math:`X_0, \dots, X_{T-1}` of ``B`` points each, the coupling pairs
    consecutive times, :math:`\sigma_k = \text{coupling}(X_k, X_{k+1})` (row ``i`` of
    :math:`X_k` with row :math:`\sigma_k(i)` of :math:`X_{k+1}`), and trajectory ``i`` follows
    the composed pairings:

    .. math:: \gamma_i = \big(X_0^{i},\ X_1^{\sigma_0(i)},\ X_2^{\sigma_1(\sigma_0(i))},\ \dots\big).

    This is the multi-marginal (trajectory) coupling of TrajectoryNet / torchcfm's
    ``sample_trajectory``: a Markov chain through the consecutive plans, whose ``k``-th
    point is distributed as the ``k``-th marginal. With a permutation coupling
    (:class:`~flowjax_fm.couplings.ExactOTCoupling`, the default) row ``k`` of the result is
    a permutation of :math:`X_k`: every point of every time is used exactly once. With
    ``SinkhornCoupling(sampling="rows")`` each step draws the next point from the entropic
    plan's row (points may repeat; the marginals hold in expectation). The ``T - 1`` plans
    are solved under one ``jax.vmap`` (one host call for the exact solver).

    Args:
      key: a ``jax.random.key`` (the couplings' keys and the batch draw).
      data: :class:`Snapshots`, or a sequence of ``T`` arrays ``(N_k, *event)`` (only the
        order of times matters here).
      coupling: a coupling with one partner per source row (its ``source`` a permutation).
      batch_size: ``B``, drawn without replacement from each time (``B <= min N_k``);
        ``None`` uses every point, which needs all ``N_k`` equal.

    Returns:
      ``(T, B, *event)``: ``result[:, i]`` is trajectory ``i``.

    Raises:
      TypeError: ``coupling`` not an :class:`~flowjax_fm.couplings.AbstractCoupling`.
      ValueError: ``data`` ill-formed (see :class:`Snapshots`), fewer than 2 times, unequal
        sizes with ``batch_size=None``, ``batch_size`` not an int in ``[1, min N_k]``, or a
        coupling that draws pairs with repeats (``sampling="pairs"``,
        :class:`~flowjax_fm.couplings.PartialOTCoupling`).
      RuntimeError: at run time, a coupling whose source indices are not a permutation.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> xs = [jnp.array([[0.0], [10.0]]), jnp.array([[11.0], [1.0]]), jnp.array([[2.0], [12.0]])]
      >>> chain_plans(jax.random.key(0), xs)[:, :, 0].T.tolist()  # two straight-ish paths
      [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]

    References:
      Tong et al. 2020, TrajectoryNet: A Dynamic Optimal Transport Network for Modeling
      Cellular Dynamics; Tong et al. 2024, Simulation-free Schrodinger bridges via score and
      flow matching ([SF]2M).
    """
    _check_coupling(coupling)
    points = data.points if isinstance(data, Snapshots) else _check_points("data", data)
    if len(points) < 2:
        raise ValueError(f"chain_plans needs at least 2 times, got {len(points)}")
    k_draw, k_pair = jax.random.split(key)
    if batch_size is None:
        sizes = [int(x.shape[0]) for x in points]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"the times have different numbers of points {sizes}: give batch_size "
                "(drawn from each time without replacement)"
            )
    else:
        points = _draw_rows(k_draw, points, check_positive_int("batch_size", batch_size))
    xs = jnp.stack(points)  # (T, B, *event)
    t, b = xs.shape[:2]
    keys = jax.random.split(k_pair, t - 1)
    pairing = jax.vmap(lambda k, a, c: coupling(k, a, c))(keys, xs[:-1], xs[1:])
    source, target = pairing.source, pairing.target  # (T - 1, B)
    rows = jnp.arange(b, dtype=jnp.int32)
    permutation = jnp.all(jnp.sort(source, axis=1) == rows)
    source, target = fail_if((source, target), ~permutation, _NOT_A_PERMUTATION)
    # next_k[r] = the partner at time k + 1 of row r at time k
    nxt = jax.vmap(lambda s, g: jnp.zeros((b,), jnp.int32).at[s].set(g))(source, target)
    idx = [rows]
    for k in range(t - 1):
        idx.append(nxt[k][idx[-1]])
    return jnp.stack([xs[k][i] for k, i in enumerate(idx)])


def make_trajectory_sampler(
    snapshots: Snapshots, *, coupling: AbstractCoupling = ExactOTCoupling()
) -> Callable[[jax.Array, int], jax.Array]:
    r"""A data sampler ``(key, n) -> (n, T, *event)`` of chained trajectories, for ``fit``.

    Each call draws ``n`` points of each time without replacement and chains them with
    :func:`chain_plans`: a fresh minibatch trajectory coupling per training step. Give it as
    :func:`~flowjax_fm.training.fit`'s ``target`` (with ``source=None``: the step's noise
    ``x0`` is unused) and train with :class:`TrajectoryObjective`.

    Raises:
      TypeError: ``snapshots`` not :class:`Snapshots`, or ``coupling`` not a coupling.
      ValueError: a coupling :func:`chain_plans` refuses; when called, ``n`` above the
        smallest time's number of points.

    Examples:
      >>> import jax
      >>> snaps = branching_snapshots(jax.random.key(0), 64)
      >>> sampler = make_trajectory_sampler(snaps)
      >>> sampler(jax.random.key(1), 32).shape
      (32, 5, 2)
    """
    if not isinstance(snapshots, Snapshots):
        raise TypeError(f"snapshots must be fm.trajectories.Snapshots, got {type(snapshots).__name__}")
    _check_coupling(coupling)

    def sampler(key, n):
        return jnp.swapaxes(chain_plans(key, snapshots, coupling=coupling, batch_size=n), 0, 1)

    return sampler


_DEFAULT_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def branching_snapshots(
    key: jax.Array,
    n_per_time: int,
    times: Sequence[float] | jax.Array = _DEFAULT_TIMES,
    *,
    noise: float = 0.1,
) -> Snapshots:
    r"""A toy 2-D time course: one population drifting right and splitting into two branches.

    At time ``t`` a point is

    .. math:: x = \big(4 t,\ c\, 3 t^2\big) + \sigma \xi, \qquad c = \pm 1 \text{ w.p. } 1/2,
       \quad \xi \sim N(0, I_2),

    drawn independently at every time (snapshots: no point is followed). At ``t = 0`` the
    two branches coincide; they separate along curved (quadratic) paths, so the straight
    interpolation between two snapshots misses an intermediate one (at ``t = 0.5`` between
    ``0.25`` and ``0.75`` by ``0.19`` in ``y``), and a flow trained through all marginals
    can do better.

    Args:
      key: a ``jax.random.key``.
      n_per_time: points per time, an int ``>= 1``.
      times: ``(T,)`` strictly increasing times (default ``0, 0.25, 0.5, 0.75, 1``).
      noise: :math:`\sigma`, a finite number ``>= 0``.

    Returns:
      :class:`Snapshots` with ``T`` arrays ``(n_per_time, 2)`` (float32).

    Raises:
      ValueError: ``n_per_time`` not an int ``>= 1``, bad ``times`` (see
        :class:`Snapshots`), ``noise`` negative or not finite.

    Examples:
      >>> import jax
      >>> s = branching_snapshots(jax.random.key(0), 100)
      >>> s.times.tolist(), s.points[4].shape
      ([0.0, 0.25, 0.5, 0.75, 1.0], (100, 2))
      >>> round(float(abs(s.points[4][:, 1]).mean()), 1)  # the branches at y = +-3
      3.0
    """
    n = check_positive_int("n_per_time", n_per_time)
    check_real("noise", noise, 0.0)
    times = check_times("times", times).astype(jnp.float32)
    keys = jax.random.split(key, times.shape[0])

    def at(k, t):
        k_branch, k_noise = jax.random.split(k)
        c = jnp.where(jax.random.bernoulli(k_branch, 0.5, (n,)), 1.0, -1.0)
        mean = jnp.stack([jnp.full((n,), 4.0 * t), c * 3.0 * t**2], axis=1)
        return mean + noise * jax.random.normal(k_noise, (n, 2))

    points = jax.vmap(at)(keys, times)  # (T, n, 2)
    return Snapshots(times=times, points=tuple(points[k] for k in range(times.shape[0])))
