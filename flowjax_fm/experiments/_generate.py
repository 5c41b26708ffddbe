"""Generation for every objective: ODE solves of a velocity, or jumps of an average velocity.

A run's ``eval.solver`` is an ODE solver name or ``"few-step"``. A model of two times
(MeanFlow, shortcut) gives both: its instantaneous velocity ``u(x, t, t)`` for ODE solvers and
its jumps for ``few-step``. A consistency model gives jumps only; a flow-matching model's
``few-step`` is Euler.
"""

from __future__ import annotations

from flowjax_fm.experiments._config import FEW_STEP

__all__ = ["generate", "jump_field", "velocity_field"]


def velocity_field(model, params, objective: str):
    """The ODE field ``v(x, t, cond=None)`` of a run's model (refused for a consistency model)."""
    from flowjax_fm import training

    if objective == "consistency":
        raise ValueError(
            "a consistency model predicts the jump to t = 1, not a velocity: sample it with "
            f"--solver {FEW_STEP} (and --num-steps K); likelihoods and encoding need a velocity"
        )
    return training.make_vector_field(model, params)


def jump_field(model, params, objective: str):
    """The two-time field ``u(x, t, cond=None, r=None)`` of a run's model."""
    from flowjax_fm import losses, training

    field = training.make_vector_field(model, params)
    if losses.OBJECTIVES[objective].two_time:
        return field

    def jump(x, t, cond=None, r=None):  # one time: the field at the start of the jump
        return losses.call_field(field, x, t, cond)

    return jump


def guided_jump(u, scale, null_label: int):
    """Classifier-free guidance on jumps: ``u(c_null) + w (u(c) - u(c_null))`` (two calls)."""
    import jax.numpy as jnp

    def guided(x, t, cond=None, r=None):
        null = jnp.full_like(cond, null_label)
        base = u(x, t, cond=null, r=r)
        return base + scale * (u(x, t, cond=cond, r=r) - base)

    return guided


def generate(model, params, objective: str, x0, *, solver, num_steps, rtol=1e-4, atol=1e-4,
             cond=None, guidance=None, num_classes=None, save_trajectory=False,
             trajectory_points=101):
    """Samples from ``x0``: a :class:`~flowjax_fm.sampling.SampleResult`.

    ``guidance`` (with labels in ``cond`` and the model's ``num_classes``) guides the field
    (ODE) or the jumps (``few-step``); ``None`` or no labels: unguided.
    """
    from flowjax_fm import sampling

    if solver == FEW_STEP:
        u = jump_field(model, params, objective)
        if guidance is not None and cond is not None:
            u = guided_jump(u, guidance, num_classes)
        return sampling.sample_few_step(u, x0, num_steps=num_steps, cond=cond,
                                        save_trajectory=save_trajectory)
    field = velocity_field(model, params, objective)
    if guidance is not None and cond is not None:
        field = sampling.guided_field(field, guidance, num_classes)
    return sampling.sample(field, x0, cond=cond, solver=solver, num_steps=num_steps, rtol=rtol,
                           atol=atol, save_trajectory=save_trajectory,
                           trajectory_points=trajectory_points)
