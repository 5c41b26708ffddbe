"""Bad inputs of ``fm.couplings.PartialOTCoupling`` and ``fm.trajectories`` (issue 16)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import flowjax_fm as fm
from bad_input import Case
from flowjax_fm import trajectories as tr

C = fm.couplings
KEY = jax.random.key(0)
X0 = jax.random.normal(jax.random.key(1), (8, 2))
X1 = jax.random.normal(jax.random.key(2), (8, 2)) + 1.0
PARTIAL = "couplings.PartialOTCoupling"
# the entropic plan far from converged: a tiny epsilon and a tiny budget (fast)
HARD = dict(mass=0.5, epsilon=1e-4, max_iterations=10)

P4 = [jnp.zeros((4, 2)), jnp.ones((4, 2)), jnp.full((4, 2), 2.0)]
SNAPS = tr.Snapshots(times=[0.0, 1.0, 2.0], points=P4)
UNEQUAL = tr.Snapshots(times=[0.0, 1.0], points=[jnp.zeros((4, 2)), jnp.ones((3, 2))])


def _partial(**kwargs):
    return lambda: C.PartialOTCoupling(**kwargs)


def _call(coupling, *args):
    return lambda: coupling(KEY, *args)


class _Repeats(C.AbstractCoupling):
    """Pairs every row with row 0: not one partner per row."""

    def pair(self, key, x0, x1, cond0=None, cond1=None):
        zeros = jnp.zeros(x0.shape[0], jnp.int32)
        return C.Pairing(zeros, zeros)


_FIELDS = [
    ("mass=0", dict(mass=0.0), r"mass must be a finite number in \(0, 1\], got 0.0"),
    ("mass=1.5", dict(mass=1.5), r"mass must be a finite number in \(0, 1\], got 1.5"),
    ("mass=nan", dict(mass=float("nan")), r"mass must be a finite number in \(0, 1\]"),
    ("mass=str", dict(mass="0.5"), r"mass must be a real number"),
    ("epsilon=0", dict(epsilon=0.0), r"epsilon must be a finite number in \(0, inf\), got 0.0"),
    ("epsilon=-1", dict(epsilon=-1.0), r"epsilon must be a finite number in \(0, inf\)"),
    ("relative_epsilon=max", dict(epsilon=0.1, relative_epsilon="max"),
     r"unknown relative_epsilon 'max'; choose one of None, 'mean'"),
    ("relative_epsilon-without-epsilon", dict(relative_epsilon="mean"),
     r"relative_epsilon='mean' scales epsilon, but epsilon is None"),
    ("sampling=rows", dict(sampling="rows"), r"unknown sampling 'rows'; choose one of 'systematic', 'pairs'"),
    ("method=lapjv", dict(method="lapjv"), r"unknown method 'lapjv'; choose one of 'auto'"),
    ("threshold=0", dict(threshold=0.0), r"threshold must be a finite number in \(0, inf\)"),
    ("max_iterations=0", dict(max_iterations=0), r"max_iterations must be an int >= 1, got 0"),
    ("marginal_tol=0", dict(marginal_tol=0.0), r"marginal_tol must be a number in \(0, inf\), got 0.0"),
    ("throw=1", dict(throw=1), r"throw must be True or False, got 1"),
    ("cond_weight=-1", dict(cond_weight=-1.0), r"cond_weight must be a finite number in \[0, inf\)"),
]

CASES = [
    *(Case(PARTIAL, label, _partial(**kw), ValueError, match) for label, kw, match in _FIELDS),
    Case(PARTIAL, "x0-x1-shapes", _call(C.PartialOTCoupling(), X0, X1[:4]), ValueError,
         r"same shape, got \(8, 2\) and \(4, 2\)"),
    Case(PARTIAL, "plan-x0-x1-shapes", lambda: C.PartialOTCoupling().plan(X0, X1[:4]), ValueError,
         r"same shape, got \(8, 2\) and \(4, 2\)"),
    Case(PARTIAL, "float-cond-without-weight",
         _call(C.PartialOTCoupling(), X0, X1, X0[:, :1], X1[:, :1]), ValueError,
         r"PartialOTCoupling got a floating \(continuous\) condition.*cond_weight is None"),
    Case(PARTIAL, "unconverged-raises", _call(C.PartialOTCoupling(**HARD), X0, X1), RuntimeError,
         r"entropic partial plan failed its check.*marginal_tol=0.01.*epsilon=0.0001.*mass=0.5"),
    Case(PARTIAL, "unconverged-reported", _call(C.PartialOTCoupling(**HARD, throw=False), X0, X1),
         None, reported=lambda p: not bool(p.converged) and float(p.marginal_error) > 0.01),
    # -- Snapshots -------------------------------------------------------------------------
    Case("trajectories.Snapshots", "times-2d", lambda: tr.Snapshots(times=[[0.0, 1.0, 2.0]], points=P4),
         ValueError, r"times must be a 1-D array of T >= 2 real times, got dtype float32 and shape \(1, 3\)"),
    Case("trajectories.Snapshots", "times-decreasing",
         lambda: tr.Snapshots(times=[0.0, 2.0, 1.0], points=P4),
         ValueError, r"times must be finite and strictly increasing, got \[0.0, 2.0, 1.0\]"),
    Case("trajectories.Snapshots", "times-nan",
         lambda: tr.Snapshots(times=[0.0, float("nan"), 1.0], points=P4),
         ValueError, r"times must be finite and strictly increasing"),
    Case("trajectories.Snapshots", "times-str", lambda: tr.Snapshots(times="012", points=P4),
         ValueError, r"times must be a 1-D array of T >= 2 real times"),
    Case("trajectories.Snapshots", "one-time", lambda: tr.Snapshots(times=[0.0], points=P4[:1]),
         ValueError, r"T >= 2 real times, got dtype float32 and shape \(1,\)"),
    Case("trajectories.Snapshots", "length-mismatch", lambda: tr.Snapshots(times=[0.0, 1.0], points=P4),
         ValueError, r"one entry per time, got times of shape \(2,\) and 3 arrays of points"),
    Case("trajectories.Snapshots", "points-one-array",
         lambda: tr.Snapshots(times=[0.0, 1.0], points=jnp.zeros((2, 4, 2))),
         ValueError, r"points must be a list or tuple of T arrays \(N_k, \*event\).*shape \(2, 4, 2\)"),
    Case("trajectories.Snapshots", "event-shapes",
         lambda: tr.Snapshots(times=[0.0, 1.0], points=[jnp.zeros((4, 2)), jnp.zeros((4, 3))]),
         ValueError, r"share one event shape, got shapes \[\(4, 2\), \(4, 3\)\]"),
    Case("trajectories.Snapshots", "int-points",
         lambda: tr.Snapshots(times=[0.0, 1.0], points=[jnp.zeros((4, 2), jnp.int32)] * 2),
         ValueError, r"points\[0\] must be a floating-point array, got dtype int32"),
    Case("trajectories.Snapshots", "empty-time",
         lambda: tr.Snapshots(times=[0.0, 1.0], points=[jnp.zeros((4, 2)), jnp.zeros((0, 2))]),
         ValueError, r"N_k >= 1, got shapes \[\(4, 2\), \(0, 2\)\]"),
    Case("trajectories.Snapshots", "unbatched",
         lambda: tr.Snapshots(times=[0.0, 1.0], points=[jnp.zeros(4), jnp.zeros(4)]),
         ValueError, r"points \(N_k, \*event\) with N_k >= 1, got shapes \[\(4,\), \(4,\)\]"),
    Case("trajectories.Snapshots", "leave_out-index", lambda: SNAPS.leave_out(3),
         ValueError, r"index must be an int in \[0, 2\], got 3"),
    Case("trajectories.Snapshots", "leave_out-two-times", lambda: UNEQUAL.leave_out(0),
         ValueError, r"leave_out needs T >= 3 times"),
    # -- chain_plans -----------------------------------------------------------------------
    Case("trajectories.chain_plans", "not-a-coupling", lambda: tr.chain_plans(KEY, P4, coupling="exact-ot"),
         TypeError, r"coupling must be an fm.couplings.AbstractCoupling.*got str"),
    Case("trajectories.chain_plans", "sinkhorn-pairs",
         lambda: tr.chain_plans(KEY, P4, coupling=C.SinkhornCoupling()),
         ValueError, r"one partner per row.*SinkhornCoupling\(sampling='pairs'\).*sampling='rows'"),
    Case("trajectories.chain_plans", "partial",
         lambda: tr.chain_plans(KEY, P4, coupling=C.PartialOTCoupling()),
         ValueError, r"one partner per row.*PartialOTCoupling"),
    Case("trajectories.chain_plans", "unequal-sizes", lambda: tr.chain_plans(KEY, UNEQUAL),
         ValueError, r"different numbers of points \[4, 3\]: give batch_size"),
    Case("trajectories.chain_plans", "batch_size-too-large",
         lambda: tr.chain_plans(KEY, UNEQUAL, batch_size=4),
         ValueError, r"batch_size=4 exceeds the smallest time's number of points, min\(N_k\) = 3"),
    Case("trajectories.chain_plans", "batch_size=0", lambda: tr.chain_plans(KEY, SNAPS, batch_size=0),
         ValueError, r"batch_size must be an int >= 1, got 0"),
    Case("trajectories.chain_plans", "one-time", lambda: tr.chain_plans(KEY, P4[:1]),
         ValueError, r"at least 2 times, got 1"),
    Case("trajectories.chain_plans", "array-not-list", lambda: tr.chain_plans(KEY, jnp.stack(P4)),
         ValueError, r"data must be a list or tuple of T arrays"),
    Case("trajectories.chain_plans", "repeated-sources",
         lambda: jax.block_until_ready(tr.chain_plans(KEY, P4, coupling=_Repeats())),
         RuntimeError, r"source indices are not a permutation"),
    # -- make_trajectory_sampler -------------------------------------------------------------
    Case("trajectories.make_trajectory_sampler", "not-snapshots",
         lambda: tr.make_trajectory_sampler(P4), TypeError,
         r"snapshots must be fm.trajectories.Snapshots, got list"),
    Case("trajectories.make_trajectory_sampler", "sinkhorn-pairs",
         lambda: tr.make_trajectory_sampler(SNAPS, coupling=C.SinkhornCoupling()),
         ValueError, r"one partner per row"),
    Case("trajectories.make_trajectory_sampler", "n-too-large",
         lambda: tr.make_trajectory_sampler(SNAPS)(KEY, 5),
         ValueError, r"batch_size=5 exceeds the smallest time's number of points, min\(N_k\) = 4"),
    # -- TrajectoryObjective -----------------------------------------------------------------
    Case("trajectories.TrajectoryObjective", "times-scalar", lambda: tr.TrajectoryObjective(1.0),
         ValueError, r"times must be a 1-D array of T >= 2 real times, got dtype float32 and shape \(\)"),
    Case("trajectories.TrajectoryObjective", "times-equal", lambda: tr.TrajectoryObjective([0.0, 0.0]),
         ValueError, r"times must be finite and strictly increasing, got \[0.0, 0.0\]"),
    Case("trajectories.TrajectoryObjective", "wrong-T",
         lambda: tr.TrajectoryObjective([0.0, 1.0])(
             lambda x, t: x, KEY, jnp.zeros((4, 3, 2)), jnp.zeros((4, 3, 2)),
             path=fm.paths.CondOTPath(), time_sampler=fm.time_sampling.UniformTime()),
         ValueError, r"T = 2 times needs trajectories shaped \(B, 2, \*event\), got x1 of shape \(4, 3, 2\)"),
    Case("trajectories.TrajectoryObjective", "no-time-axis",
         lambda: tr.TrajectoryObjective([0.0, 1.0]).segment_sample(
             KEY, jnp.zeros((4, 2)), path=fm.paths.CondOTPath()),
         ValueError, r"got x1 of shape \(4, 2\)"),
    Case("trajectories.TrajectoryObjective", "path-not-a-path",
         lambda: tr.TrajectoryObjective([0.0, 1.0]).segment_sample(
             KEY, jnp.zeros((4, 2, 2)), path="condot"),
         TypeError, r"path must be an instance of fm.paths.AbstractPath"),
    # -- branching_snapshots -----------------------------------------------------------------
    Case("trajectories.branching_snapshots", "n=0", lambda: tr.branching_snapshots(KEY, 0),
         ValueError, r"n_per_time must be an int >= 1, got 0"),
    Case("trajectories.branching_snapshots", "noise<0", lambda: tr.branching_snapshots(KEY, 4, noise=-0.1),
         ValueError, r"noise must be a finite number in \[0, inf\), got -0.1"),
    Case("trajectories.branching_snapshots", "times-decreasing",
         lambda: tr.branching_snapshots(KEY, 4, (1.0, 0.0)),
         ValueError, r"times must be finite and strictly increasing"),
]
