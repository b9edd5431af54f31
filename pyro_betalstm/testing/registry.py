"""Keeping a registry of test cases in step with the package registry it covers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Case = TypeVar("Case")


def missing_cases(registry: Mapping, cases: Mapping) -> dict[str, list[str]]:
    """``{"no case": [...], "no entry": [...]}``: registry keys without a test case, and test
    cases whose key is not registered (both empty when the two registries agree)."""
    return {
        "no case": sorted(set(registry) - set(cases)),
        "no entry": sorted(set(cases) - set(registry)),
    }


def case_for(cases: Mapping[str, Case], key: str, what: str, where: str) -> Case:
    """The case of ``key``; a KeyError that says where to add it when there is none."""
    try:
        return cases[key]
    except KeyError:
        raise KeyError(
            f"{what} {key!r} is registered but has no test case: add one to {where}"
        ) from None
