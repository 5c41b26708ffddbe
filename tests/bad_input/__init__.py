"""The bad-input contract: tables of invalid arguments and the error each must give.

Each ``cases_<area>.py`` module defines ``CASES``, a list of :class:`Case`. One parametrised
test (``tests/test_bad_input.py``) runs them all, and a coverage test checks that every name
in ``fm.<sub>.__all__`` that takes user values has at least one case (or an exemption there,
with its reason).

A case either expects an exception (``error`` and a regex ``match`` on its message, which must
name the argument and what is accepted) or, for a numerical failure that is *reported* rather
than raised (``throw=False``), ``error=None`` and a ``reported`` predicate on the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``call()`` must raise ``error`` matching ``match`` (or be ``reported``).

    Args:
      name: the public name covered, as ``"<sub>.<Name>"`` (``"couplings.SinkhornCoupling"``).
      label: a short id for the case (``"epsilon=0"``), unique per name.
      call: a zero-argument callable doing the bad thing.
      error: the exception type expected (``ValueError``, ``TypeError``, ``RuntimeError``...);
        ``None`` when the failure is reported in the result instead.
      match: a regex searched in ``str(exception)`` (required when ``error`` is given).
      reported: with ``error=None``, a predicate on ``call()``'s result that is True when the
        failure is reported (``lambda r: not bool(r.success)``).
      warns: a warning category that ``call()`` must emit instead of raising (with ``match``).
    """

    name: str
    label: str
    call: Callable[[], Any]
    error: type[BaseException] | None = ValueError
    match: str = ""
    reported: Callable[[Any], bool] | None = None
    warns: type[Warning] | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.label}"
