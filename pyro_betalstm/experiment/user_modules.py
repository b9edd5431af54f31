"""``--import MODULE``: a user's own module, imported before a script reads its gate and prior.

A gate family or prior of your own is registered by the module that defines it
(:func:`~pyro_betalstm.gates.register_gate_family`, an entry in
:data:`~pyro_betalstm.priors.PRIORS`). The example scripts import that module when told to,
so that ``--gate`` and ``--prior`` can name what it registered::

    python examples/polyphonic_music.py --import my_gates --gate chained

The name is a module name, as ``python -m`` takes it, found on ``sys.path`` with the current
folder first (as ``python -m`` puts it there), not a file path. Importing runs the module's
code: it is code you name on your own command line, like the script itself, never something
read from a data file or checkpoint.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path


def import_user_modules(names: Iterable[str]) -> None:
    """Import each module in ``names`` (in order), the current folder first on ``sys.path``.

    A name that is a file path (``my_gates.py``, ``dir/my_gates``) or that no folder on the
    path holds ends the script as a user error (``SystemExit`` with the message); an error
    raised by the module's own code propagates with its traceback (a bug to see, not a typo).
    """
    names = list(names)
    if not names:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        if name.endswith(".py") or "/" in name or os.sep in name or not name.strip("."):
            raise SystemExit(
                f"--import takes a module name as python -m does (my_gates for my_gates.py in "
                f"the current folder, or a package's dotted name), got {name!r}"
            )
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # the module was found; something it imports is missing
            raise SystemExit(
                f"--import {name}: no module named {err.name!r} in the current folder "
                f"({cwd}) or on the Python path"
            ) from None
        _check_not_shadowed(module, name, Path(cwd))


def _check_not_shadowed(module, name: str, cwd: Path) -> None:
    """Refuse a file in the current folder that ``name`` did not import: a module of that name
    was already imported, or is built in (``calendar``, ``time``), and Python gave that one."""
    stem = cwd.joinpath(*name.split("."))
    local = next((p for p in (stem.with_suffix(".py"), stem / "__init__.py") if p.is_file()), None)
    if local is None:
        return
    found = getattr(module, "__file__", None)
    if found is None or Path(found).resolve() != local.resolve():
        where = found or "built into Python"
        raise SystemExit(
            f"--import {name}: {local} was not imported, because the name {name!r} is already "
            f"taken by the module {where}; rename your file (my_{name.split('.')[-1]}.py, say) "
            f"and pass that name"
        )
