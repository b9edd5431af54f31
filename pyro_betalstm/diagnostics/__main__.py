"""Command line: ``python -m pyro_betalstm.diagnostics RUN_DIR [--out DIR] [--num-samples 100]``.

Renders the gate diagnostics of a saved polyphonic-music run (``examples/polyphonic_music.py``):
``inference_data.nc`` (ArviZ), ``gate_summary.csv`` and PNG plots.
"""

from __future__ import annotations

import argparse

from .render import render_run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pyro_betalstm.diagnostics",
        description="Gate diagnostics (ArviZ InferenceData and PNG plots) of a saved music run.",
    )
    p.add_argument("run_dir", help="run directory with results.json, metrics.json and best.pt")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/diagnostics)")
    p.add_argument("--num-samples", type=int, default=100, help="posterior and prior draws")
    p.add_argument("--compare", default=None, help="another run directory (e.g. a sigmoid LSTM)")
    p.add_argument("--num-sequences", type=int, default=2, help="test sequences to draw on")
    p.add_argument(
        "--max-steps", type=int, default=64, help="frames per sequence (0: whole sequences)"
    )
    p.add_argument("--data-dir", default=None, help="benchmark folder if data_source is missing")
    p.add_argument(
        "--no-basis", action="store_true", help="leave alpha and log_basis out of the netCDF file"
    )
    p.add_argument("--seed", type=int, default=0)
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
        data_dir=args.data_dir,
        include_basis=not args.no_basis,
        seed=args.seed,
    )
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
