"""The bad-input contract suite: every public name that takes user values refuses bad ones.

The tables live in ``tests/bad_input/cases_*.py`` (one per area); this file runs every case and
checks coverage of ``fm.<sub>.__all__``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import bad_input
import pytest
from bad_input import Case

import flowjax_fm as fm

# every sub-package of the public API (the package's own list, so a new one is covered at once)
SUBPACKAGES = tuple(name for name in fm.__all__ if not name.startswith("__"))


def _all_cases() -> list[Case]:
    cases = []
    for info in pkgutil.iter_modules(bad_input.__path__):
        if info.name.startswith("cases_"):
            module = importlib.import_module(f"bad_input.{info.name}")
            cases.extend(module.CASES)
    return cases


CASES = _all_cases()

# Public names that take no user value to check (constants, abstract bases, result types
# built by the library itself), each with its reason. Everything else needs a case.
EXEMPT: dict[str, str] = {}


def _exempt() -> dict[str, str]:
    table = dict(EXEMPT)
    for info in pkgutil.iter_modules(bad_input.__path__):
        if info.name.startswith("cases_"):
            table.update(getattr(importlib.import_module(f"bad_input.{info.name}"), "EXEMPT", {}))
    return table


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate case ids: {dupes}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_or_reported(case: Case):
    if case.warns is not None:
        with pytest.warns(case.warns, match=case.match):
            case.call()
        return
    if case.error is None:
        result = case.call()  # warnings are errors (pytest's filterwarnings), bar the listed ignores
        assert case.reported is not None and case.reported(result), f"{case.id}: not reported"
        return
    assert case.match, f"{case.id}: a case expecting an error must say what the message matches"
    with pytest.raises(case.error) as info:
        case.call()
    message = str(info.value)
    assert re.search(case.match, message), f"{case.id}: message {message!r} lacks {case.match!r}"
    assert "Traceback" not in message.splitlines()[0]


def test_every_public_name_is_covered_or_exempt():
    covered = {c.name for c in CASES}
    exempt = _exempt()
    missing = []
    for sub in SUBPACKAGES:
        module = getattr(fm, sub)
        for name in module.__all__:
            key = f"{sub}.{name}"
            if key not in covered and key not in exempt:
                missing.append(key)
    stale = sorted(k for k in exempt if k in covered)
    assert not missing, f"public names without a bad-input case or exemption: {missing}"
    assert not stale, f"exempt names that have cases (drop the exemption): {stale}"
