"""Shared checks of user input: one rule per kind of value, one wording of the error."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_positive_int", "check_int", "is_int"]


def is_int(value) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``; a ValueError naming ``name`` if not.

    Examples:
      >>> check_int("num_steps", 0, 0)
      0
      >>> check_int("batch_size", True, 1)
      Traceback (most recent call last):
      ...
      ValueError: batch_size must be an int >= 1, got True
    """
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value) -> int:
    """:func:`check_int` with ``minimum = 1``."""
    return check_int(name, value, 1)


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an error (equinox's runtime errors lead with a banner)."""
    text = str(exc).strip()
    for line in text.splitlines():
        if "EquinoxRuntimeError:" in line:
            return line.split("EquinoxRuntimeError:", 1)[1].strip()
    return text.splitlines()[0] if text else type(exc).__name__
