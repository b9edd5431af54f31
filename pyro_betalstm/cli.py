"""Console entry point ``pyro-betalstm``.

``pyro-betalstm info [--json]`` prints versions, the gate families, the devices torch sees, the
processor and the git commit;
``pyro-betalstm diagnostics RUN_DIR [...]`` renders a saved run's gate diagnostics (the same as
``python -m pyro_betalstm.diagnostics``); ``pyro-betalstm table RUN_DIR [...]`` prints saved runs'
``results.md`` rows under one header. The training scripts live in ``examples/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys


def info() -> dict[str, str]:
    """Versions of the library and its main dependencies, the gate families and devices, the
    processor, and the git commit the package runs from (where it is a checkout)."""
    import pyro
    import torch

    from . import __version__
    from .gates import GATE_FAMILIES
    from .provenance import cpu_model, git_commit

    devices = "cpu" + (
        f", cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""
    )
    return {
        "pyro_betalstm": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro-ppl": pyro.__version__,
        "gate families": ", ".join(sorted(GATE_FAMILIES)),
        "devices": devices,
        "processor": cpu_model(),
        "git commit": git_commit() or "none (not a git checkout)",
    }


COMMANDS = {
    "info": "print versions, gate families, devices, processor and git commit (--json: JSON)",
    "diagnostics": "render a saved run's gate diagnostics (pyro-betalstm diagnostics -h)",
    "table": "print saved runs' results.md rows as one Markdown table",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="pyro-betalstm",
        description=__doc__.split("\n\n")[0],
        epilog="commands: " + "; ".join(f"{name}: {text}" for name, text in COMMANDS.items()),
    )
    parser.add_argument("command", choices=list(COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    command, rest = parser.parse_args(argv[:1]).command, argv[1:]
    if command == "info":
        info_parser = argparse.ArgumentParser(
            prog="pyro-betalstm info", description=COMMANDS["info"]
        )
        info_parser.add_argument("--json", action="store_true", help="print a JSON object")
        if info_parser.parse_args(rest).json:
            print(json.dumps(info(), indent=2))
        else:
            for key, value in info().items():
                print(f"{key}: {value}")
        return 0
    if command == "table":
        from .results import main as table_main

        return table_main(rest, prog="pyro-betalstm table")
    from .diagnostics.__main__ import main as diagnostics_main

    diagnostics_main(rest, prog="pyro-betalstm diagnostics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
