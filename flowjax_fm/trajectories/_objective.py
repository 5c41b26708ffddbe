r"""Flow matching through ``T`` marginals: piecewise paths between consecutive snapshots."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowjax_fm._pytree import pytree_dataclass
from flowjax_fm.couplings._base import check_batch
from flowjax_fm.losses import AbstractObjective, ConditionalSample, per_example_keys, regress
from flowjax_fm.losses._cfm import _check_index, _check_parts
from flowjax_fm.paths import AbstractPath
from flowjax_fm.time_sampling import AbstractTime, UniformTime
from flowjax_fm.trajectories._snapshots import check_times

__all__ = ["TrajectoryObjective"]


@pytree_dataclass
class TrajectoryObjective(AbstractObjective):
    r"""Flow matching on trajectories through ``T`` snapshot times (piecewise conditional paths).

    The data rows are trajectories :math:`\gamma = (x_{t_0}, \dots, x_{t_{T-1}})` shaped
    ``(B, T, *event)`` (from :func:`make_trajectory_sampler` or :func:`chain_plans`). Each
    example draws a segment :math:`k \sim U\{0, \dots, T-2\}` and a local time
    :math:`s \sim` ``time_sampler`` in ``[0, 1]``; the step's ``path`` interpolates the
    segment's ends, and time is rescaled to the snapshot clock:

    .. math::
       t = t_k + s\,\Delta_k, \quad \Delta_k = t_{k+1} - t_k, \qquad
       x_t = \psi_s(x_{t_k}, x_{t_{k+1}}, \epsilon), \qquad
       u_t = \frac{\partial_s \psi_s(x_{t_k}, x_{t_{k+1}}, \epsilon)}{\Delta_k},

    :math:`\mathcal L = \mathbb E\, w(t) \| v_\theta(x_t, t) - u_t \|^2`. With
    ``CondOTPath()`` that is :math:`x_t = (1 - s) x_{t_k} + s x_{t_{k+1}}`,
    :math:`u_t = (x_{t_{k+1}} - x_{t_k}) / \Delta_k`; ``GaussianPath(sigma)`` adds
    :math:`\sigma` noise ([SF]2M's OT-CFM per segment), ``BrownianBridgePath`` a bridge per
    segment. The model sees the global time ``t`` (in the units of ``times``), so the learnt
    ODE runs from :math:`t_0` to :math:`t_{T-1}` through every marginal, and can be integrated
    to a time held out of training (:meth:`Snapshots.leave_out`).

    **How it plugs in.** It is an objective of :func:`~flowjax_fm.training.make_train_step`
    (``objective=TrajectoryObjective(snapshots.times)``, the default
    ``IndependentCoupling()``: the rows are whole trajectories, already coupled), and
    :func:`~flowjax_fm.training.fit` draws trajectories as its ``target``: a
    :func:`make_trajectory_sampler` (a fresh chained OT coupling per step) or an array
    ``(N, T, *event)`` of precomputed trajectories (visited in epochs). ``source=None`` gives
    the step noise shaped like the trajectories; it is not used. So no new training loop,
    and every option of the step (EMA, accumulation, devices) applies. Segments are drawn
    uniformly (each pair of consecutive marginals weighs the same, as TrajectoryNet and
    torchcfm's trajectory notebooks do), whatever their duration.

    Args:
      times: ``(T,)`` strictly increasing snapshot times, ``T >= 2`` (a pytree leaf).

    Raises:
      ValueError: at construction, bad ``times``; when called, ``x1`` not ``(B, T,
        *event)`` with this ``T``, or as :func:`~flowjax_fm.losses.paired_cfm_loss`.
      TypeError: as :func:`~flowjax_fm.losses.paired_cfm_loss` (a ``path`` that is not an
        :class:`~flowjax_fm.paths.AbstractPath`, ...).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import flowjax_fm as fm
      >>> from flowjax_fm.trajectories import TrajectoryObjective
      >>> objective = TrajectoryObjective(jnp.array([0.0, 1.0, 3.0]))
      >>> gamma = jnp.broadcast_to(jnp.array([[0.0], [1.0], [5.0]]), (4, 3, 1))  # (B, T, d)
      >>> sample, segment = objective.segment_sample(jax.random.key(0), gamma,
      ...                                            path=fm.paths.CondOTPath())
      >>> segment.tolist(), sample.u_t[:, 0].tolist()  # speed 1 on [0, 1], 2 on [1, 3]
      ([1, 0, 0, 0], [2.0, 1.0, 1.0, 1.0])
      >>> loss, aux = objective(lambda x, t: jnp.zeros_like(x), jax.random.key(0), gamma, gamma,
      ...                       path=fm.paths.CondOTPath(),
      ...                       time_sampler=fm.time_sampling.UniformTime())
      >>> float(loss)  # the mean of u_t^2 with a zero field
      1.75

    References:
      Tong et al. 2020, TrajectoryNet; Tong et al. 2024, Simulation-free Schrodinger bridges
      via score and flow matching ([SF]2M), and torchcfm's ``sample_trajectory``.
    """

    times: jax.Array

    def __post_init__(self):
        object.__setattr__(self, "times", check_times("times", self.times))

    def _check(self, x1, cond):
        shape = jnp.shape(x1)
        t = jnp.shape(self.times)[0]
        if len(shape) < 3 or shape[1] != t:
            raise ValueError(
                f"TrajectoryObjective over T = {t} times needs trajectories shaped (B, {t}, "
                f"*event), got x1 of shape {shape}"
            )
        return check_batch(x1, x1, cond, cond)

    def segment_sample(
        self,
        key: jax.Array,
        x1: jax.Array,
        *,
        path: AbstractPath,
        time_sampler: AbstractTime = UniformTime(),
        cond=None,
        index: jax.Array | None = None,
    ) -> tuple[ConditionalSample, jax.Array]:
        """Points on the piecewise path and their targets, and each example's segment ``(B,)``.

        The :class:`~flowjax_fm.losses.ConditionalSample` holds the global times ``t``,
        ``x_t``, ``u_t`` (rescaled by the segment's duration), the noise, the segment's ends
        as ``x0`` / ``x1`` and ``cond``. Example ``i`` draws its segment, local time and noise
        from ``fold_in`` of three subkeys of ``key`` with ``index[i]`` (default ``arange(B)``).

        Raises:
          ValueError, TypeError: as the objective.
        """
        _check_parts(path=path, time_sampler=time_sampler)
        batch = self._check(x1, cond)
        if index is None:
            index = jnp.arange(batch, dtype=jnp.int32)
        else:
            _check_index(index, batch)
        num_segments = x1.shape[1] - 1
        k_seg, k_s, k_noise = jax.random.split(key, 3)
        segment = jax.vmap(lambda k: jax.random.randint(k, (), 0, num_segments))(
            per_example_keys(k_seg, index))
        s = jax.vmap(lambda k: time_sampler(k, 1, x1.dtype)[0])(per_example_keys(k_s, index))
        rows = jnp.arange(batch)
        start, end = x1[rows, segment], x1[rows, segment + 1]
        noise = None
        if path.stochastic:
            noise = jax.vmap(lambda k: jax.random.normal(k, start.shape[1:], start.dtype))(
                per_example_keys(k_noise, index))
        x_t, u_s = jax.vmap(path.sample_and_target)(start, end, s, noise)
        times = jnp.asarray(self.times, x1.dtype)
        t_start, duration = times[segment], times[segment + 1] - times[segment]
        u_t = u_s / duration.reshape((batch,) + (1,) * (u_s.ndim - 1))
        t = t_start + s * duration
        return ConditionalSample(t, x_t, u_t, noise, start, end, cond), segment

    def __call__(self, field, key, x0, x1, *, path, time_sampler, weight=None, cond=None,
                 index=None, drop=None):
        del x0, drop  # the source rows (the step's noise) are not used; dropout is in cond
        _check_parts(vector_field=field, weight=weight)
        sample, segment = self.segment_sample(key, x1, path=path, time_sampler=time_sampler,
                                              cond=cond, index=index)
        loss, aux = regress(field, sample, weight)
        return loss, {**aux, "segment": segment}
