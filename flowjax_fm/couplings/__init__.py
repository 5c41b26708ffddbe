"""Minibatch couplings pi(x0, x1): independent, exact OT, entropic (Sinkhorn) OT.

``coupling(key, x0, x1, cond0=None, cond1=None) -> Pairing``. Conditions are pytrees whose
leaves have leading dimension ``B``: integer leaves ``(B,)`` are labels (pairs never cross a
label); floating leaves ``(B,)`` or ``(B, *c)`` are continuous conditions, which the OT
couplings weigh into the cost with ``cond_weight`` (C2OT) and refuse without it. An integer
leaf of any other shape (e.g. ``(B, 1)``) is an error: squeeze it, or cast it to float.
"""

import dataclasses

from flowjax_fm.couplings._assignment import solve_assignment
from flowjax_fm.couplings._auction import auction_assignment
from flowjax_fm.couplings._base import (
    AbstractCoupling,
    Pairing,
    check_batch,
    condition_cost,
    label_penalty,
    squared_distances,
)
from flowjax_fm.couplings._independent import IndependentCoupling
from flowjax_fm.couplings._large_sinkhorn import LargeSinkhornCoupling
from flowjax_fm.couplings._ot import ExactOTCoupling, SinkhornCoupling
from flowjax_fm.couplings._partial import PartialOTCoupling
from flowjax_fm.couplings._semidiscrete import SemidiscreteCoupling, SemidiscreteInfo, fit_semidiscrete

COUPLINGS = {
    "independent": IndependentCoupling,
    "exact-ot": ExactOTCoupling,
    "sinkhorn": SinkhornCoupling,
    "large-sinkhorn": LargeSinkhornCoupling,
    "partial-ot": PartialOTCoupling,
}


def get_coupling(name: str, **kwargs) -> AbstractCoupling:
    """Build a coupling from its command-line name (``independent``, ``exact-ot``, ``sinkhorn``).

    Args:
      name: a key of :data:`COUPLINGS`.
      **kwargs: the coupling's fields (e.g. ``epsilon=0.1`` for ``sinkhorn``), checked by it.

    Raises:
      ValueError: an unknown ``name``, an option the coupling does not have, or a bad value
        of one (see the coupling's documentation).

    Examples:
      >>> get_coupling("exact-ot")
      ExactOTCoupling(method='auto', cond_weight=None)
      >>> get_coupling("independent", epsilon=0.1)
      Traceback (most recent call last):
      ...
      ValueError: unknown option 'epsilon' for coupling 'independent'; it takes no options
    """
    if not isinstance(name, str) or name not in COUPLINGS:
        raise ValueError(f"unknown coupling {name!r}; choose one of {sorted(COUPLINGS)}")
    cls = COUPLINGS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in kwargs:
        if key not in fields:
            takes = f"choose among {', '.join(fields)}" if fields else "it takes no options"
            raise ValueError(f"unknown option {key!r} for coupling {name!r}; {takes}")
    return cls(**kwargs)


__all__ = [
    "AbstractCoupling",
    "COUPLINGS",
    "ExactOTCoupling",
    "IndependentCoupling",
    "LargeSinkhornCoupling",
    "Pairing",
    "PartialOTCoupling",
    "SemidiscreteCoupling",
    "SemidiscreteInfo",
    "SinkhornCoupling",
    "auction_assignment",
    "check_batch",
    "condition_cost",
    "fit_semidiscrete",
    "get_coupling",
    "label_penalty",
    "solve_assignment",
    "squared_distances",
]
