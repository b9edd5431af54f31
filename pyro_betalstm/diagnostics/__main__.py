"""Command line: ``python -m pyro_betalstm.diagnostics RUN_DIR [--out DIR] [--num-samples 100]``.

Renders the gate diagnostics of a run saved by any example (``examples/*.py``) from its
``results.json``, ``gate_draws.pt`` and ``metrics.json``: ``inference_data.nc`` (ArviZ),
``gate_summary.csv`` and PNG plots.
"""

from __future__ import annotations

import argparse

from .render import render_run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pyro_betalstm.diagnostics",
        description="Gate diagnostics (ArviZ InferenceData and PNG plots) of a saved example run.",
    )
    p.add_argument("run_dir", help="run directory with results.json and gate_draws.pt")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/diagnostics)")
    p.add_argument(
        "--num-samples", type=int, default=100, help="at most this many of the saved draws"
    )
    p.add_argument("--compare", default=None, help="another run directory (e.g. a sigmoid LSTM)")
    p.add_argument("--num-sequences", type=int, default=2, help="saved test sequences shown")
    p.add_argument(
        "--max-steps", type=int, default=64, help="steps per sequence (0: whole sequences)"
    )
    p.add_argument(
        "--no-basis", action="store_true", help="leave alpha and log_basis out of the netCDF file"
    )
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    written = render_run(
        args.run_dir,
        args.out,
        num_samples=args.num_samples,
        compare=args.compare,
        num_sequences=args.num_sequences,
        max_steps=args.max_steps or None,
        include_basis=not args.no_basis,
    )
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
