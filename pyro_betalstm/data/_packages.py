"""Optional packages: find a data package's folders without importing it (they pin old numpy),
and :class:`MissingDependency`, what a lazy import of an optional package raises."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class MissingDependency(ModuleNotFoundError):
    """An optional package a feature needs is not installed; the message says how to install
    it. The example scripts report it as a user error (one line, exit status 2), unlike an
    ``ImportError`` of the library's own code, which is a bug and keeps its traceback. A
    :class:`ModuleNotFoundError`, so ``except ImportError`` still catches it."""


def package_locations(module: str, missing: str) -> list[Path]:
    """The folders of the installed package ``module``; ``FileNotFoundError(missing)`` if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(missing)
    return [Path(location) for location in spec.submodule_search_locations]
