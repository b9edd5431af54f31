"""Sphinx configuration for pyro_betalstm."""

import os
import sys

# Make the package importable for autodoc without installing it.
sys.path.insert(0, os.path.abspath(".."))

project = "pyro_betalstm"
author = "pyro_betalstm developers"
copyright = "2026, pyro_betalstm developers"
from pyro_betalstm import __version__  # noqa: E402  (the package's one version string)

release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    # No sphinx.ext.napoleon: the docstrings use reST fields (:param:), and napoleon misreads an
    # attribute docstring whose first line reads "X (...): Y" as "type: description".
    # No sphinx.ext.intersphinx: the docs must build without network access.
]

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "markdown",
}
root_doc = "index"

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "results/*.sh", "results/gpu_session_*"]

# The how-to guides live in guides/ at the top level (their code runs in the tests); copy them
# into the source tree at build time so that Sphinx renders them. Their pictures link to
# ../docs/_static/ (right where the guides are, on GitHub), which is ../_static/ from the copy.
from pathlib import Path  # noqa: E402

_guides_src = Path(__file__).resolve().parents[1] / "guides"
_guides_dst = Path(__file__).resolve().parent / "guides"
_guides_dst.mkdir(exist_ok=True)
for _guide in _guides_src.glob("*.md"):
    _text = _guide.read_text(encoding="utf-8").replace("](../docs/_static/", "](../_static/")
    (_guides_dst / _guide.name).write_text(_text, encoding="utf-8")

autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"


def _defining_comment(name: str, obj) -> list[str] | None:
    """The ``#:`` comment of the module of ``pyro_betalstm`` that defines the constant ``name``
    (its last part) as ``obj``, or None."""
    from sphinx.pycode import ModuleAnalyzer

    attr = name.rpartition(".")[2]
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("pyro_betalstm") and getattr(module, attr, None) is obj:
            analyzer = ModuleAnalyzer.for_module(module_name)
            analyzer.analyze()
            comment = analyzer.attr_docs.get(("", attr))
            if comment:
                return list(comment)
    return None


def _reexported_constant_doc(app, what, name, obj, options, lines):
    # A constant a package re-exports (``from .base import GATE_SITES``) has its ``#:`` comment
    # in the module that defines it; autodoc looks in the package only and falls back on the
    # docstring of the value's type (tuple's, dict's).
    type_doc = type(obj).__doc__ or ""
    if what == "data" and "\n".join(lines).split() == type_doc.split():
        lines[:] = _defining_comment(name, obj) or []


def setup(app):
    app.connect("autodoc-process-docstring", _reexported_constant_doc)


myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# Nitpicky mode is switched on from the command line (``sphinx-build -n -W``): a broken
# cross-reference in a docstring or page is then a warning, and with -W an error.
nitpicky = False
# References to other projects' objects (type hints such as torch.Tensor or pathlib.Path, and
# docstrings' :class:`~pyro.infer.SVI`...) cannot resolve: without network access there is no
# intersphinx. Ignore those, by module prefix only (the standard library, and the third-party
# packages the package uses); every reference into pyro_betalstm must resolve.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(builtins|abc|argparse|collections|importlib|os|pathlib|typing"
        r"|torch|numpy|pyro|matplotlib|arviz|scipy|pandas|tqdm)(\..+)?",
    ),
]
# Targets that type hints and base-class lists generate from private names of the package,
# which are not (and should not be) in the API reference.
nitpick_ignore = [
    # base class of GuideGateSequence and PriorGateSequence (show-inheritance)
    ("py:class", "pyro_betalstm.models.gate_sites._GateSequence"),
    # the type of CapturedRecurrence's ``scan`` argument (type hint in cuda_graphs.py)
    ("py:class", "_Scan"),
    # the TypeVar of pyro_betalstm.models.evaluating's signature (models/modes.py)
    ("py:class", "pyro_betalstm.models.modes.ModuleT"),
]
# Markdown guides/results may link to files outside the Sphinx source tree.
suppress_warnings = ["myst.xref_missing"]

html_theme = "alabaster"
html_static_path = []
