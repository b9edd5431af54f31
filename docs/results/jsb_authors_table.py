"""Collect the JSB runs of the ``authors`` protocol into docs/results/jsb_authors_protocol.json
and the table between the ``jsb-authors`` markers of docs/results/music.md.

Usage: python docs/results/jsb_authors_table.py [--keep-committed] RUNS_DIR [RUNS_DIR ...]
(the folders ``docs/results/run_jsb_authors.sh`` fills; every ``*/results.json`` with protocol
``authors`` on JSB is taken, each run once). With ``--keep-committed`` the runs already in
jsb_authors_protocol.json stay, and a run found in RUNS_DIR replaces the one of its variant
and seed: a rerun of some runs updates the table without the folders of all the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from pyro_betalstm.io import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from pyro_betalstm.variants import ABLATIONS, VARIANTS  # noqa: E402

ORDER = [*VARIANTS, *ABLATIONS]
START, END = "<!-- jsb-authors:start -->", "<!-- jsb-authors:end -->"


def run_row(r: dict) -> dict:
    kl = r.get("gate_kl_valid")
    return {
        "variant": r["variant"],
        "seed": r["seed"],
        "protocol": r["protocol"],
        "test_nll": r["test"]["nll_mean_gates"],
        "valid_nll": r["valid"]["nll_mean_gates"],
        "best_epoch": r["best_epoch"],
        "epochs": r["epochs_run"],
        # a resumed run's wall_seconds cover its last process only; train_elapsed_s sums the
        # training and validation time of every process, so the larger is the run's time
        "wall_s": max(r["wall_seconds"], r["train_elapsed_s"]),
        "test_nll_predictive": r["test"].get("nll_predictive"),
        "kl_per_gate_valid": None if kl is None else kl["kl_per_gate"],
        "alpha_p01_p99": None if kl is None else [kl["alpha_p01"], kl["alpha_p99"]],
        "seconds_to_valid_8.35": (r.get("target_epoch") or {}).get("elapsed_s"),
        "split": "standard JSB split 229/76/77",
        "hardware": r["hardware"],
        "git_commit": r.get("git_commit"),  # recorded by runs from 2026-12-03 on
    }


def collect(dirs: list[Path], committed: list[dict] = ()) -> list[dict]:
    rows = {(r["variant"], r["seed"]): r for r in committed}
    for d in dirs:
        for path in sorted(d.glob("*/results.json")):
            r = json.loads(path.read_text())
            if r["protocol"] == "authors" and r["dataset"] == "jsb":
                rows[(r["variant"], r["seed"])] = run_row(r)
    return sorted(rows.values(), key=lambda r: (ORDER.index(r["variant"]), r["seed"]))


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def tables(rows: list[dict]) -> str:
    lines = [
        "| variant | seeds | test NLL mean ± sd | valid NLL mean | best epochs | "
        "KL per gate to the prior (valid) |",
        "|---|---|---|---|---|---|",
    ]
    for variant in ORDER:
        group = [r for r in rows if r["variant"] == variant]
        if not group:
            continue
        tests = [r["test_nll"] for r in group]
        sd = statistics.stdev(tests) if len(tests) > 1 else None
        kls = [r["kl_per_gate_valid"] for r in group if r["kl_per_gate_valid"] is not None]
        lines.append(
            f"| `{variant}` | {', '.join(str(r['seed']) for r in group)} | "
            f"{statistics.mean(tests):.3f} ± {fmt(sd, '.3f')} | "
            f"{statistics.mean(r['valid_nll'] for r in group):.3f} | "
            f"{', '.join(str(r['best_epoch']) for r in group)} | "
            f"{fmt(statistics.mean(kls) if kls else None, '.4f')} |"
        )
    lines += [
        "",
        "| variant | seed | test NLL | test NLL (predictive, S=10) | valid NLL | best epoch | "
        "epochs | seconds to valid <= 8.35 | wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['variant']}` | {r['seed']} | {r['test_nll']:.3f} | "
            f"{fmt(r['test_nll_predictive'], '.3f')} | {r['valid_nll']:.3f} | {r['best_epoch']} | "
            f"{r['epochs']} | {fmt(r['seconds_to_valid_8.35'], '.0f')} | "
            f"{r['wall_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def main(dirs: list[Path], keep_committed: bool = False) -> None:
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise SystemExit(f"no runs folder at {', '.join(missing)}")
    committed = read_json(HERE / "jsb_authors_protocol.json")["runs"] if keep_committed else []
    rows = collect(dirs, committed)
    if not rows:  # never replace the committed table by an empty one
        raise SystemExit(f"no authors-protocol JSB results.json under {', '.join(map(str, dirs))}")
    atomic_write_json(HERE / "jsb_authors_protocol.json", {"runs": rows})
    page = (HERE / "music.md").read_text()
    if START not in page or END not in page:
        raise SystemExit(f"music.md has no {START} ... {END} block to fill")
    head, rest = page.split(START, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(HERE / "music.md", f"{head}{START}\n{tables(rows)}\n{END}{tail}")
    print(tables(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dirs", nargs="+", type=Path, metavar="RUNS_DIR")
    parser.add_argument(
        "--keep-committed",
        action="store_true",
        help="keep the runs of jsb_authors_protocol.json that RUNS_DIR has no rerun of",
    )
    args = parser.parse_args()
    main(args.runs_dirs, args.keep_committed)
