"""Progress bars where somebody watches them, plain lines everywhere.

A bar redraws itself many times a second. In a terminal or a notebook that is what a user
wants; in a log file (``nohup``, ``> run.log 2>&1``, a batch system) every redraw is kept, and
the log fills with frames. So a bar is shown only where the error stream is a terminal or a
notebook's output, and the lines a run prints (one per epoch) go out either way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable


def bars_wanted() -> bool:
    """Whether a progress bar would be watched: the error stream is a terminal, or the code runs
    in a Jupyter kernel (whose streams are no terminal but show a bar as a widget)."""
    stream = sys.stderr
    interactive = getattr(stream, "isatty", None)
    return bool(interactive and interactive()) or "ipykernel" in sys.modules


def progress_bar(
    iterable: Iterable, total: int | None = None, desc: str = "", leave: bool = True
) -> Iterable:
    """``iterable`` wrapped in a tqdm bar where :func:`bars_wanted`, else ``iterable`` itself."""
    if not bars_wanted():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True)


def write_line(message: str) -> None:
    """Print ``message`` on its own line, above any bar being drawn."""
    from tqdm.auto import tqdm

    tqdm.write(message)
