"""Probability paths: where a training pair sits at time t, and the velocity to regress on.

Every path takes **one example** (``t`` of shape ``()``) and is batched with ``jax.vmap``.
``t = 0`` is the source (noise) end, ``t = 1`` the data end.
"""

from flowjax_fm.paths._affine import (
    AbstractAffinePath,
    AbstractSchedule,
    AffinePath,
    CondOTPath,
    CondOTSchedule,
    CosineSchedule,
    LinearVPSchedule,
    PolynomialSchedule,
    VPPath,
    VPSchedule,
)
from flowjax_fm.paths._base import AbstractPath
from flowjax_fm.paths._gaussian import BrownianBridgePath, GaussianPath

PATHS = {
    "condot": CondOTPath,
    "gaussian": GaussianPath,
    "bridge": BrownianBridgePath,
    "vp": VPPath,
}


def get_path(name: str, **kwargs) -> AbstractPath:
    """Build a path from its command-line name (``condot``, ``gaussian``, ``bridge``, ``vp``).

    Raises:
      ValueError: for an unknown name (the message lists the valid ones).

    Examples:
      >>> get_path("gaussian", sigma=0.2)
      GaussianPath(sigma=0.2)
    """
    if name not in PATHS:
        raise ValueError(f"unknown path {name!r}; choose one of {sorted(PATHS)}")
    return PATHS[name](**kwargs)


__all__ = [
    "AbstractPath",
    "AbstractAffinePath",
    "AbstractSchedule",
    "AffinePath",
    "BrownianBridgePath",
    "CondOTPath",
    "CondOTSchedule",
    "CosineSchedule",
    "GaussianPath",
    "LinearVPSchedule",
    "PATHS",
    "PolynomialSchedule",
    "VPPath",
    "VPSchedule",
    "get_path",
]
