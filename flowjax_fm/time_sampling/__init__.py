"""How training draws t (not :mod:`flowjax_fm.sampling`, which generates data)."""

from flowjax_fm.time_sampling._samplers import (
    AbstractTime,
    BetaTime,
    LogitNormalTime,
    UniformTime,
    get_time_sampler,
)

__all__ = ["AbstractTime", "BetaTime", "LogitNormalTime", "UniformTime", "get_time_sampler"]
