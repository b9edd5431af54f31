"""Mean and sd over seeds of the sequential-MNIST runs of one protocol, as a Markdown table.

Usage: python docs/results/mnist_seed_table.py runs/mnist/reduced

Reads every ``<task>-<variant>-seed<seed>/results.json`` under the folder (as written by
``docs/results/run_mnist_grid.sh``) and prints, per task and variant, the test accuracy with the
mean gates (all test images) and, for latent-gate variants, the posterior predictive on the
subset it was scored on, each as mean ± sd over the seeds found (sd with n - 1).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ORDER = ("lstm", "g2lstm", "blstm", "bblstm", "bblstm5gp")


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def main(folder: str) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(Path(folder).glob("*/results.json")):
        record = json.loads(path.read_text())
        groups[(record["task"], record["variant"])].append(record)
    if not groups:
        raise SystemExit(f"no */results.json under {folder}")
    lines = [
        "| task | variant | seeds | test acc. % (mean gates, 10k) | test acc. % predictive S=10 "
        "(first 2k) | test acc. % mean gates on the same 2k |",
        "|---|---|---|---|---|---|",
    ]
    for task in sorted({t for t, _ in groups}):
        for variant in ORDER:
            runs = groups.get((task, variant))
            if not runs:
                continue
            seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
            mean_gates = mean_sd([r["test"]["accuracy_mean_gates"] for r in runs])
            subset = [r.get("test_predictive_subset") for r in runs]
            if all(s is not None for s in subset):
                predictive = mean_sd([s["accuracy_predictive"] for s in subset])
                same = mean_sd([s["accuracy_mean_gates"] for s in subset])
            else:
                predictive = same = "-"
            lines.append(
                f"| {task} | {runs[0]['paper_name']} | {seeds} | {mean_gates} | {predictive} "
                f"| {same} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(main(sys.argv[1]))
