"""Find the folders of an optional data package without importing it (they pin old numpy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_locations(module: str, missing: str) -> list[Path]:
    """The folders of the installed package ``module``; ``FileNotFoundError(missing)`` if absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(missing)
    return [Path(location) for location in spec.submodule_search_locations]
