"""The repository's scripts (``examples/``, ``benchmarks/``, ``docs/results/``) as modules, for
tests and tools that call their functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: str | Path, name: str | None = None, register: bool = False) -> ModuleType:
    """Execute the script at ``path`` as a module called ``name`` (default: the file's stem).

    ``register=True`` also puts it in ``sys.modules`` under ``name`` (and returns the module
    already there, if any), so that other scripts can ``import name`` and pickled objects of its
    classes can be found again; the script's folder then goes on ``sys.path`` for its own
    sibling imports. Raises FileNotFoundError naming the path when there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no script at {path}")
    name = name or path.stem
    if register:
        if name in sys.modules:
            return sys.modules[name]
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
