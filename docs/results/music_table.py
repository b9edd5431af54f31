"""Collect runs/music/*/results.json into the Markdown tables of docs/results/music.md.

Usage: python docs/results/music_table.py [RUNS_DIR] [DATA_DIR]
Prints a per-run table, a per-variant summary (mean and sd of test NLL over seeds) and the
per-key frequency baselines of the benchmark files found in DATA_DIR.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ORDER = ["lstm", "cifg", "g2lstm", "blstm", "bblstm", "bblstm5g", "bblstm5gp"]


def protocol(r: dict) -> str:
    """``paper``; ``fast`` (or ``authors``) with its epochs where they were cut; or the shorter
    protocol's hidden size, epochs and batch size."""
    s = r["settings"]
    if r["protocol"] == "paper":
        return "paper"
    if r["protocol"] in ("fast", "authors"):
        full = 60 if r["protocol"] == "fast" else 100
        cut = "" if s["num_epochs"] == full else f", {s['num_epochs']} ep"
        return f"{r['protocol']}{cut}"
    chunk = f", windows {s['train_chunk']}" if s.get("train_chunk") else ""
    return f"short: h{s['hidden']}, {s['num_epochs']} ep, batch {s['batch_size']}{chunk}"


def main(runs_dir: Path, data_dir: Path | None) -> None:
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/results.json"))]
    print(
        "| dataset | protocol | variant | seed | epochs run (best) | valid NLL | test NLL (mean "
        "gates) | test NLL (predictive, S=10) | below frequency baseline | parameters | "
        "wall time | hardware |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    key = lambda r: (r["dataset"], protocol(r), ORDER.index(r["variant"]), r["seed"])  # noqa: E731
    for r in sorted(records, key=key):
        pred = r["test"].get("nll_predictive")
        gap = r["frequency_baseline_test_nll"] - r["test"]["nll_mean_gates"]
        print(
            f"| {r['dataset']} | {protocol(r)} | {r['paper_name']} | {r['seed']} | {r['epochs_run']} "
            f"({r['best_epoch']}) | {r['valid']['nll_mean_gates']:.3f} | "
            f"{r['test']['nll_mean_gates']:.3f} | {'-' if pred is None else f'{pred:.3f}'} | "
            f"{gap:.2f} | {r['parameters']} | {r['wall_seconds'] / 60:.0f} min | {r['hardware']} |"
        )
        groups[(r["dataset"], protocol(r), r["paper_name"])].append(r["test"]["nll_mean_gates"])
    print(
        "\n| dataset | protocol | variant | seeds | test NLL mean | sd |\n|---|---|---|---|---|---|"
    )
    for (dataset, proto, name), values in groups.items():
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(
            f"| {dataset} | {proto} | {name} | {len(values)} | {statistics.mean(values):.3f} | "
            f"{sd:.3f} |"
        )
    if data_dir is not None:
        from pyro_betalstm.data.music import BENCHMARK_FILES, frequency_baseline_nll, load_benchmark

        print("\n| dataset | frequency baseline, valid | test |\n|---|---|---|")
        for name in BENCHMARK_FILES:
            rolls = load_benchmark(name, data_dir)
            print(
                f"| {name} | {frequency_baseline_nll(rolls, 'valid'):.3f} | "
                f"{frequency_baseline_nll(rolls, 'test'):.3f} |"
            )


if __name__ == "__main__":
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/music")
    data = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    main(runs, data)
