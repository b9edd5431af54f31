"""Packaging: one version string, and every third-party package the library imports is declared."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

import pyro_betalstm

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyro_betalstm"
#: Imported only after a run-time check that it is installed, and installed by hand
#: (``pip install --no-deps``: its own pins are older than ours); see caption_metrics.py.
OPTIONAL_BY_HAND = {"pycocoevalcap"}


def _declared_distributions() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines += extra.splitlines()
    names = {re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0] for line in lines}
    return {_normalise(n) for n in names if n and not n.startswith("#")}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"pyro_betalstm"}


def test_installed_version_is_the_package_version():
    assert importlib.metadata.version("pyro-betalstm") == pyro_betalstm.__version__


def test_setup_cfg_reads_the_version_from_the_package():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["version"] == "attr: pyro_betalstm.__version__"


def test_every_imported_package_is_declared():
    declared = _declared_distributions()
    by_module = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in _imported_top_level_modules() - OPTIONAL_BY_HAND:
        distributions = {_normalise(d) for d in by_module.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = sorted(distributions)
    assert not undeclared, f"imported but not in setup.cfg: {undeclared}"


def test_every_runtime_requirement_has_an_upper_bound():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requirements = [
        line.strip()
        for line in config["options"]["install_requires"].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert requirements and all("<" in r for r in requirements), requirements


#: Aliases under which the package imports its dependencies' modules.
DEPENDENCY_ALIASES = {"torch", "pyro", "poutine", "dist", "az", "arviz", "np", "scipy", "xr", "pd"}


def _private_dependency_names(path: Path) -> list[str]:
    """``from dep import _x``, ``from dep._mod import x`` and ``dep._x`` uses in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in ("pyro_betalstm", "__future__"):
                continue
            private_module = any(part.startswith("_") for part in node.module.split("."))
            private_names = [a.name for a in node.names if a.name.startswith("_")]
            if private_module or private_names:
                found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue  # dunders (__version__, __name__) are public
            if isinstance(node.value, ast.Name) and node.value.id in DEPENDENCY_ALIASES:
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_private_names_of_dependencies():
    found = [hit for path in PACKAGE.rglob("*.py") for hit in _private_dependency_names(path)]
    assert not found, f"private names of dependencies used: {found}"


def test_the_private_name_check_finds_one(tmp_path):
    # The checker itself: each form it must catch, in a made-up file.
    source = "import torch\nfrom pyro.infer.util import _x\nfrom scipy._lib import y\ntorch._standard_gamma(1)\n"
    (tmp_path / "bad.py").write_text(source)
    assert len(_private_dependency_names(tmp_path / "bad.py")) == 3
