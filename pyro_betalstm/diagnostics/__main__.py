"""Command line: ``python -m pyro_betalstm.diagnostics RUN_DIR [--out DIR] [--compare RUN]``
(also ``pyro-betalstm diagnostics``).

Renders the gate diagnostics of a run saved by any example (``examples/*.py``) from its
``results.json``, ``gate_draws.pt`` and ``metrics.json``: ``inference_data.nc`` (ArviZ),
``gate_summary.csv`` and PNG plots. The defaults are those of the examples' own render
(``examples/polyphonic_music.py`` renders every run it finishes), so rendering such a run again
writes the same files.
A missing or unfinished run and bad option values end with a usage error (exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .plots import use_file_backend
from .render import (
    MAX_STEPS,
    NUM_SEQUENCES,
    check_comparable,
    example_num_samples,
    load_saved_run,
    render_run,
)

PROG = "python -m pyro_betalstm.diagnostics"


def _int_at_least(lowest: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        return value

    return parse


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Gate diagnostics (ArviZ InferenceData, a summary table and PNG plots) of a "
        "saved example run. Writes RUN_DIR/diagnostics unless --out is given, replacing the "
        "files there; with the default options, the files the music example's own render "
        "writes.",
    )
    p.add_argument("run_dir", help="run directory with results.json and gate_draws.pt")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default RUN_DIR/diagnostics)"
    )
    p.add_argument(
        "--num-samples",
        metavar="N",
        type=_int_at_least(1),
        default=None,
        help="use at most this many of the saved draws (default: as the examples render, "
        "20; 10 for a --smoke run)",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="RUN",
        help="another run directory of the same task and data set (e.g. a sigmoid LSTM): "
        "adds gate_histograms.png",
    )
    p.add_argument(
        "--num-sequences",
        metavar="N",
        type=_int_at_least(1),
        default=NUM_SEQUENCES,
        help=f"saved test sequences shown (default {NUM_SEQUENCES})",
    )
    p.add_argument(
        "--max-steps",
        metavar="N",
        type=_int_at_least(0),
        default=MAX_STEPS,
        help=f"steps per sequence, 0 for whole sequences (default {MAX_STEPS})",
    )
    p.add_argument(
        "--basis",
        action="store_true",
        help="keep the guide's concentrations alpha and log_basis in inference_data.nc "
        "(default: left out, as the examples render; the file is about three times larger)",
    )
    # the default since --basis came in; still accepted
    p.add_argument("--no-basis", dest="basis", action="store_false", help=argparse.SUPPRESS)
    return p


def parse_args(argv=None, prog: str = PROG) -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def main(argv=None, prog: str = PROG) -> list[Path]:
    """Render a run as the command line says; user errors (a missing or unfinished run, a
    ``--compare`` run of another task, an unwritable ``--out``) exit with status 2."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    use_file_backend()  # a program that writes files: no window, whatever the desktop
    try:
        run = load_saved_run(args.run_dir)
        other = None
        if args.compare is not None:
            other = load_saved_run(args.compare)
            check_comparable(run, other)
        if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(f"--out {args.out} is a file: expected a directory")
    except (OSError, ValueError) as err:
        parser.error(str(err))
    try:
        written = render_run(
            run,
            args.out,
            num_samples=args.num_samples or example_num_samples(run),
            compare=other,
            num_sequences=args.num_sequences,
            max_steps=args.max_steps or None,
            include_basis=args.basis,
        )
    except OSError as err:  # e.g. an output folder that cannot be written
        parser.error(f"could not write the diagnostics: {err}")
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
