"""Probability paths: where a training pair sits at time t, and the velocity to regress on.

Every path takes **one example** (``t`` of shape ``()``) and is batched with ``jax.vmap``.
``t = 0`` is the source (noise) end, ``t = 1`` the data end.
"""

from flowjax_fm._checks import check_choice
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
from flowjax_fm.paths._base import AbstractPath, check_kwargs
from flowjax_fm.paths._gaussian import BrownianBridgePath, GaussianPath
from flowjax_fm.paths._geodesic import GeodesicPath

PATHS = {
    "condot": CondOTPath,
    "gaussian": GaussianPath,
    "bridge": BrownianBridgePath,
    "vp": VPPath,
}


def get_path(name: str, **kwargs) -> AbstractPath:
    """Build a path from its command-line name (``condot``, ``gaussian``, ``bridge``, ``vp``).

    Args:
      name: one of :data:`PATHS` (``condot``, ``gaussian``, ``bridge``, ``vp``).
      **kwargs: the path's fields (``sigma_min`` for ``condot``, ``sigma`` for ``gaussian``
        and ``bridge``, none for ``vp``), checked by the path itself.

    Raises:
      ValueError: for an unknown name (the message lists the valid ones), an argument the
        path does not take, or a value out of its range.

    Examples:
      >>> get_path("gaussian", sigma=0.2)
      GaussianPath(sigma=0.2)
      >>> get_path("vp", sigma=0.2)
      Traceback (most recent call last):
      ...
      ValueError: path 'vp' takes no arguments; got unknown argument(s) sigma
    """
    check_choice("path", name, sorted(PATHS))
    check_kwargs("path", name, PATHS[name], kwargs)
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
    "GeodesicPath",
    "LinearVPSchedule",
    "PATHS",
    "PolynomialSchedule",
    "VPPath",
    "VPSchedule",
    "get_path",
]
