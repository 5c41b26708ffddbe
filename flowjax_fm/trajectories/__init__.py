r"""Snapshot time courses: multi-marginal (trajectory) OT couplings and flows through ``T`` marginals.

:class:`Snapshots` holds samples of a population at increasing times; :func:`chain_plans`
chains minibatch OT plans between consecutive times into trajectories;
:class:`TrajectoryObjective` trains a flow on them through
:func:`flowjax_fm.training.make_train_step` / :func:`~flowjax_fm.training.fit`, with time
rescaled per segment; :func:`branching_snapshots` is a toy 2-D time course. Leave-one-out
evaluation: :meth:`Snapshots.leave_out`, train on the rest, integrate the learnt ODE from
``t_0`` to the held-out time (:func:`flowjax_fm.sampling.sample` with ``t0`` / ``t1``) and
compare with :func:`flowjax_fm.metrics.wasserstein`.
"""

from flowjax_fm.trajectories._objective import TrajectoryObjective
from flowjax_fm.trajectories._snapshots import (
    Snapshots,
    branching_snapshots,
    chain_plans,
    make_trajectory_sampler,
)

__all__ = [
    "Snapshots",
    "TrajectoryObjective",
    "branching_snapshots",
    "chain_plans",
    "make_trajectory_sampler",
]
