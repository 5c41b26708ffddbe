"""flowjax_fm.sampling: integrate a learned vector field's ODE with diffrax.

Generation pushes source samples (``t = 0``) to the data end (``t = 1``) with :func:`sample`;
:func:`encode` runs the flow backwards. This is ODE integration, not
:mod:`flowjax_fm.time_sampling` (which draws training times).
"""

from flowjax_fm.sampling._few_step import sample_few_step
from flowjax_fm.sampling._grids import time_grid
from flowjax_fm.sampling._guidance import guided_field
from flowjax_fm.sampling._sample import SampleResult, encode, round_trip_error, sample
from flowjax_fm.sampling._sde import SDE_SOLVER_NAMES, probability_flow, sample_sde
from flowjax_fm.sampling._solvers import RK4, SOLVER_NAMES, RK4ThreeEighths

__all__ = [
    "RK4",
    "RK4ThreeEighths",
    "SOLVER_NAMES",
    "SampleResult",
    "encode",
    "guided_field",
    "round_trip_error",
    "sample",
    "sample_few_step",
    "sample_sde",
    "probability_flow",
    "SDE_SOLVER_NAMES",
    "time_grid",
]
