"""Per-fold MR accuracies and the paired comparison with the LSTM, from the runs' files.

    python docs/results/mr_paired_table.py runs/text/mr-full lstm bblstm5gp

Reads ``RUNS_DIR/<variant>/fold<k>/fold_result.json`` (written as each fold finishes, so an
unfinished grid is tabulated over the folds every variant has finished; the header says which).
Prints, as Markdown: test accuracy per fold (mean gates) with the best epochs, the mean ± sd over
those folds (with the predictive accuracy where the variant has latent gates), and for every
variant but the first its difference from the first, paired by fold: mean ± sd, the standard
error of the paired mean (sd / sqrt(folds)) and the folds where it is ahead.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from pyro_betalstm.io import read_json


def fold_results(run_dir: Path) -> dict[int, dict]:
    """``{fold: its fold_result.json}`` of the folds that finished."""
    found = {}
    for path in sorted(run_dir.glob("fold*/fold_result.json")):
        record = read_json(path, "fold result")
        found[int(record["fold"])] = record
    return found


def mean_sd(values: list[float]) -> tuple[float, float]:
    sd = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), sd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs_dir", type=Path, help="e.g. runs/text/mr-full")
    p.add_argument("variants", nargs="+", help="the first is the reference (e.g. lstm)")
    args = p.parse_args(argv)
    results = {v: fold_results(args.runs_dir / v) for v in args.variants}
    folds = sorted(set.intersection(*(set(r) for r in results.values())))
    if not folds:
        raise SystemExit(f"no fold finished by every variant under {args.runs_dir}")
    first = next(iter(results.values()))[folds[0]]
    split = first.get("split_identity", {})
    print(
        f"Folds finished by every variant: {len(folds)} ({', '.join(map(str, folds))}) of "
        f"{split.get('num_folds')}; data {split.get('dataset')}, split seed "
        f"{split.get('split_seed')}, training seed {first['seed'] - folds[0]} + fold\n"
    )
    print(
        "| variant | " + " | ".join(f"fold {k}" for k in folds) + " | mean ± sd | "
        "predictive mean ± sd | best epochs |"
    )
    print("|---|" + "---:|" * len(folds) + "---|---|---|")
    accuracy = {}
    for variant, records in results.items():
        accuracy[variant] = [100 * records[k]["test_accuracy"] for k in folds]
        m, sd = mean_sd(accuracy[variant])
        predictive = [records[k].get("test_accuracy_predictive") for k in folds]
        pred = "n/a"
        if all(x is not None for x in predictive):
            pm, psd = mean_sd([100 * x for x in predictive])
            pred = f"{pm:.2f} ± {psd:.2f}"
        cells = " | ".join(f"{a:.2f}" for a in accuracy[variant])
        epochs = ", ".join(str(records[k]["best_epoch"]) for k in folds)
        print(f"| {variant} | {cells} | {m:.2f} ± {sd:.2f} | {pred} | {epochs} |")
    reference = args.variants[0]
    print(f"\nPaired by fold, difference from {reference} in points:\n")
    for variant in args.variants[1:]:
        diff = [a - b for a, b in zip(accuracy[variant], accuracy[reference], strict=True)]
        m, sd = mean_sd(diff)
        se = sd / math.sqrt(len(diff))
        ahead = sum(d > 0 for d in diff)
        level = sum(d == 0 for d in diff)
        print(
            f"- {variant}: {m:+.2f} ± {sd:.2f} (standard error {se:.2f}, {m / se:+.1f} SE); "
            f"ahead on {ahead} of {len(diff)} folds, level on {level}"
        )


if __name__ == "__main__":
    main()
