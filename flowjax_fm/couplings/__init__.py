"""Minibatch couplings pi(x0, x1): independent, exact OT, entropic (Sinkhorn) OT, label-aware."""

from flowjax_fm.couplings._assignment import solve_assignment
from flowjax_fm.couplings._base import (
    AbstractCoupling,
    Pairing,
    label_penalty,
    squared_distances,
)
from flowjax_fm.couplings._independent import IndependentCoupling
from flowjax_fm.couplings._ot import ExactOTCoupling, SinkhornCoupling

COUPLINGS = {
    "independent": IndependentCoupling,
    "exact-ot": ExactOTCoupling,
    "sinkhorn": SinkhornCoupling,
}


def get_coupling(name: str, **kwargs) -> AbstractCoupling:
    """Build a coupling from its command-line name (``independent``, ``exact-ot``, ``sinkhorn``).

    Examples:
      >>> get_coupling("exact-ot")
      ExactOTCoupling(method='auto')
    """
    if name not in COUPLINGS:
        raise ValueError(f"unknown coupling {name!r}; choose one of {sorted(COUPLINGS)}")
    return COUPLINGS[name](**kwargs)


__all__ = [
    "AbstractCoupling",
    "COUPLINGS",
    "ExactOTCoupling",
    "IndependentCoupling",
    "Pairing",
    "SinkhornCoupling",
    "get_coupling",
    "label_penalty",
    "solve_assignment",
    "squared_distances",
]
