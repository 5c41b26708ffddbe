"""How training draws t (not :mod:`flowjax_fm.sampling`, which generates data).

Convention: ``t = 0`` at the source (noise), ``t = 1`` at the data; diffusers / SD3 / Flux
use ``sigma = 1 - t`` (see :func:`shift_time`).
"""

from flowjax_fm.time_sampling._samplers import (
    AbstractTime,
    BetaTime,
    LogitNormalTime,
    UniformTime,
    get_time_sampler,
)
from flowjax_fm.time_sampling._schedules import ModeTime, ShiftedTime, resolution_shift, shift_time

__all__ = [
    "AbstractTime",
    "BetaTime",
    "LogitNormalTime",
    "ModeTime",
    "ShiftedTime",
    "UniformTime",
    "get_time_sampler",
    "resolution_shift",
    "shift_time",
]
