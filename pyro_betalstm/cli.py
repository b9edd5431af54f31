"""Console entry point ``pyro-betalstm``.

``pyro-betalstm info [--json]`` prints versions, the gate families, the devices torch sees, the
processor and the git commit;
``pyro-betalstm diagnostics RUN_DIR [...]`` renders a saved run's gate diagnostics (the same as
``python -m pyro_betalstm.diagnostics``); ``pyro-betalstm table RUN_DIR [...]`` prints saved runs'
``results.md`` rows as Markdown tables, one per task. The training scripts live in
``examples/``. Without a command, or with an unknown one, it prints its usage and exits with
status 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import textwrap


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
    "diagnostics": "render a saved run's gate diagnostics: ArviZ data, a summary table, plots",
    "table": "print saved runs' results.md rows as Markdown tables, one per task",
}

#: what ``pyro-betalstm --help`` says the command does (the module docstring is for Sphinx)
DESCRIPTION = (
    "Inspect this installation of pyro_betalstm (the Bivariate Beta-LSTM in Pyro) and the runs "
    "its example scripts saved: print the versions and devices it runs with, render a finished "
    "run's gate diagnostics, or gather several runs' results into one table. Models are "
    "trained by the scripts in the repository's examples/ folder, not by this command."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``pyro-betalstm COMMAND``; each command parses its own arguments."""
    width = max(len(name) for name in COMMANDS) + 2
    commands = "\n".join(f"  {name:<{width}}{text}" for name, text in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="pyro-betalstm",
        usage="%(prog)s [-h] COMMAND [ARGS ...]",
        description=textwrap.fill(DESCRIPTION, 88),
        epilog=f"commands:\n{commands}\n\n'pyro-betalstm COMMAND -h' lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", metavar="COMMAND", choices=list(COMMANDS), help="one of the commands below"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:  # argparse's convention: the usage and exit status 2
        parser.error(f"a command is required, one of: {', '.join(COMMANDS)} (-h describes them)")
    if argv[0] in ("-h", "--help"):
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
