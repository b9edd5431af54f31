"""Time to quality on JSB Chorales: training wall-clock seconds until the validation NLL (mean
gates) first reaches a threshold, per training recipe, for bBLSTM(5G+p).

Each recipe is a set of flags of ``examples/polyphonic_music.py`` on top of ``--protocol
authors``; every run uses one CPU thread (``--threads 1``), records each epoch's elapsed time
(training and validation) in ``metrics.json`` and the first epoch at or below the threshold in
``results.json``. Runs resume where they stopped and are skipped once finished.

Usage::

    python benchmarks/time_to_quality.py run RECIPE [RECIPE ...] --data-dir ../shared/data/music
    python benchmarks/time_to_quality.py epoch-cost authors RECIPE   # same-process epoch costs
    python benchmarks/time_to_quality.py summarise --reference-dir RUN_DIR
    python benchmarks/time_to_quality.py archive    # the runs' records, for the docs
    python benchmarks/time_to_quality.py summarise --runs-dir docs/results/time_to_quality_runs

``run --stop-at-target`` ends a run at the threshold and ``--num-epochs N`` caps its epochs (for
screening a recipe; its test NLL is then that of the model where it stopped, not after the
recipe's full schedule); ``run --extend --num-epochs N`` continues such a run to epoch N from its
``last.pt`` (exactly as an uninterrupted run), keeping the record at the threshold as
``results_at_target.json``. ``summarise``
writes ``docs/results/time_to_quality.json``, ``docs/results/time_to_quality.md`` and
``docs/_static/time_to_quality.png`` from every run found; ``--reference-dir`` names the
reference run (the ``authors`` protocol, for instance from ``docs/results/run_jsb_authors.sh``)
when it is not under ``--runs-dir``. ``archive`` copies what ``summarise`` reads (every run's
``metrics.json`` and ``results.json``, and ``epoch_costs.json``) from ``--runs-dir`` to
``--archive-dir`` (default ``docs/results/time_to_quality_runs``), so that the committed page can
be written again from committed files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "polyphonic_music.py"
THRESHOLD = 8.35
REFERENCE = "authors"
#: the most a recipe's test NLL may exceed the reference's and still count as the best
TOLERANCE = 0.03

#: Recipes: flags on top of ``--protocol authors`` (which is the reference itself).
RECIPES: dict[str, list[str]] = {
    "authors": [],
    # the authors' training with the output bias started at the key log-odds
    "authors+freq-bias": ["--output-bias-init", "frequency"],
    # minibatches whose per-frame cost on one CPU thread is lower, with a larger step
    "freq-bias+b4-lr4e-3": ["--output-bias-init", "frequency", "--batch-size", "4", "--lr", "4e-3"],
    "freq-bias+b8-lr5e-3": ["--output-bias-init", "frequency", "--batch-size", "8", "--lr", "5e-3"],
    "freq-bias+b16-lr8e-3": [
        "--output-bias-init",
        "frequency",
        "--batch-size",
        "16",
        "--lr",
        "8e-3",
    ],
    "freq-bias+b8-lr1e-2": ["--output-bias-init", "frequency", "--batch-size", "8", "--lr", "1e-2"],
    "freq-bias+b16-lr1.6e-2": [
        "--output-bias-init",
        "frequency",
        "--batch-size",
        "16",
        "--lr",
        "1.6e-2",
    ],
    "freq-bias+b32-lr1.6e-2": [
        "--output-bias-init",
        "frequency",
        "--batch-size",
        "32",
        "--lr",
        "1.6e-2",
    ],
    "freq-bias+b4-lr6e-3": ["--output-bias-init", "frequency", "--batch-size", "4", "--lr", "6e-3"],
    "freq-bias+b8-lr1.4e-2": [
        "--output-bias-init",
        "frequency",
        "--batch-size",
        "8",
        "--lr",
        "1.4e-2",
    ],
    # windows of 30 transitions (state not carried across windows): more updates per epoch
    "freq-bias+b8-lr1e-2-win30": [
        "--output-bias-init",
        "frequency",
        "--batch-size",
        "8",
        "--lr",
        "1e-2",
        "--train-chunk",
        "30",
    ],
}


def run_dir(runs: Path, recipe: str, seed: int) -> Path:
    return runs / f"{recipe}-seed{seed}"


def run_recipe(recipe: str, args) -> None:
    out = run_dir(args.runs_dir, recipe, args.seed)
    if args.extend and (out / "results.json").exists():
        # a run stopped at the threshold goes on from its last.pt; its results then stand aside
        (out / "results.json").replace(out / "results_at_target.json")
    if (out / "results.json").exists():
        print(f"{recipe}: done already ({out / 'results.json'})")
        return
    command = [
        sys.executable,
        str(EXAMPLE),
        "--dataset",
        "jsb",
        "--data-dir",
        str(args.data_dir),
        "--variant",
        args.variant,
        "--protocol",
        "authors",
        "--seed",
        str(args.seed),
        "--threads",
        "1",
        "--target-nll",
        str(args.threshold),
        "--no-plots",
        "--no-progress",
        "--out-dir",
        str(out),
        *RECIPES[recipe],
    ]
    if args.stop_at_target:
        command.append("--stop-at-target")
    if args.num_epochs is not None:
        command += ["--num-epochs", str(args.num_epochs)]
    if (out / "last.pt").exists():
        command.append("--resume")
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def epoch_costs(args) -> dict:
    """Seconds of one training epoch (no validation) per recipe, measured in this one process
    with the recipes interleaved (A B A B ...), so that a noisy machine affects all alike."""
    import time

    import torch

    from pyro_betalstm.experiment.music import build_music_model, music_settings, music_train_config
    from pyro_betalstm.infer import fit
    from pyro_betalstm.io import atomic_write_json
    from pyro_betalstm.testing.scripts import load_script

    music = load_script(EXAMPLE)
    torch.set_num_threads(1)
    base = ["--dataset", "jsb", "--data-dir", str(args.data_dir), "--variant", args.variant]
    base += ["--protocol", "authors", "--no-progress"]
    rolls = music.load_data(music.parse_args(base))
    seconds: dict[str, list[float]] = {name: [] for name in args.recipes}
    for _ in range(args.repeats):
        for name in args.recipes:
            run_args = music.parse_args(base + RECIPES[name])
            s = music_settings(run_args)
            torch.manual_seed(args.seed)
            model = build_music_model(s, rolls)
            config = music_train_config(s, run_args, args.seed)
            config.num_epochs = 1
            train = rolls.next_step("train", chunk_length=s["train_chunk"])
            started = time.perf_counter()
            fit(model, train, None, config)
            seconds[name].append(time.perf_counter() - started)
            print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    result = {
        "seconds_per_epoch": {n: sorted(v)[len(v) // 2] for n, v in seconds.items()},
        "all_seconds": seconds,
        "repeats": args.repeats,
        "threads": 1,
        "note": "one training epoch without validation, recipes interleaved in one process",
    }
    atomic_write_json(args.runs_dir / "epoch_costs.json", result)
    return result


def load_run(path: Path, threshold: float) -> dict | None:
    """One run's curve and outcome from its ``metrics.json`` (and ``results.json`` if done)."""
    metrics = path / "metrics.json"
    if not metrics.exists():
        return None
    from pyro_betalstm.io import read_json  # clear errors naming a truncated file

    history = read_json(metrics, "metrics file")
    results = path / "results.json"
    record = read_json(results, "results record") if results.exists() else None
    reached = next((r for r in history if r["valid_nll_mean_gates"] <= threshold), None)
    return {
        "dir": str(path),
        "finished": record is not None,
        "epochs": len(history),
        "seconds": None if reached is None else reached["elapsed_s"],
        "target_epoch": None if reached is None else reached["epoch"],
        "best_valid_nll": min(r["valid_nll_mean_gates"] for r in history),
        "test_nll": None if record is None else record["test"]["nll_mean_gates"],
        "stopped_at_target": _stopped_at_target(record, len(history)),
        "settings": None if record is None else record["settings"],
        "seed": None if record is None else record["seed"],
        # which code on which processor (records written before these fields have neither)
        "git_commit": None if record is None else record.get("git_commit"),
        "hardware": None if record is None else record.get("hardware"),
        "curve": ([r["elapsed_s"] for r in history], [r["valid_nll_mean_gates"] for r in history]),
    }


def _stopped_at_target(record: dict | None, epochs: int) -> bool:
    """Whether the run stopped at the threshold: its record says so (``stopped_by``); a record
    made before that key is judged by fewer epochs than its settings, which the recipes here,
    without early stopping, only show after a stop at the target."""
    if record is None:
        return False
    if "stopped_by" in record:
        return record["stopped_by"] == "target"
    return record["settings"].get("num_epochs", 0) > epochs


def summarise(args) -> dict:
    runs = {}
    for path in sorted(args.runs_dir.glob("*-seed*")):
        recipe = path.name.rsplit("-seed", 1)[0]
        run = load_run(path, args.threshold)
        if run is not None:
            runs[recipe] = run
    if args.reference_dir is not None:
        runs[REFERENCE] = load_run(args.reference_dir, args.threshold)
    reference = runs.get(REFERENCE)
    if reference is None or reference["seconds"] is None:
        raise SystemExit(f"the reference run ({REFERENCE}) has not reached {args.threshold} yet")
    limit = None if reference["test_nll"] is None else reference["test_nll"] + TOLERANCE
    eligible = {
        name: r
        for name, r in runs.items()
        if r["seconds"] is not None
        and r["test_nll"] is not None
        and (limit is None or r["test_nll"] <= limit)
    }
    best_name = min(eligible, key=lambda n: eligible[n]["seconds"]) if eligible else REFERENCE
    best = runs[best_name]

    def brief(name, r):
        return {"recipe": name, "seconds": r["seconds"], "test_nll": r["test_nll"]}

    from pyro_betalstm.io import read_json

    costs_path = args.runs_dir / "epoch_costs.json"
    costs = read_json(costs_path)["seconds_per_epoch"] if costs_path.exists() else {}
    estimate = None
    if REFERENCE in costs and best_name in costs and best["target_epoch"]:
        # the same comparison with both epoch costs measured side by side in one process
        estimate = (reference["target_epoch"] * costs[REFERENCE]) / (
            best["target_epoch"] * costs[best_name]
        )
    summary = {
        "threshold": args.threshold,
        "reference": brief(REFERENCE, reference),
        "best": brief(best_name, best),
        "speedup": reference["seconds"] / best["seconds"],
        "speedup_from_epochs_and_same_process_epoch_costs": estimate,
        "epoch_costs_s": costs or None,
        "variant": args.variant,
        "dataset": "JSB Chorales (standard split 229/76/77)",
        "test_nll_tolerance": TOLERANCE,
        "provenance": provenance(runs.values()),
        "runs_dir": args.runs_dir.as_posix(),
        "recipes": [
            {"recipe": n, "flags": RECIPES.get(n), **{k: v for k, v in r.items() if k != "curve"}}
            for n, r in runs.items()
        ],
    }
    write_outputs(summary, runs, args)
    return summary


def provenance(runs) -> list[str]:
    """``"<commit> on <hardware>"`` of the finished runs, each combination once, sorted
    (``"not recorded"`` for a field a record lacks)."""
    found = {
        f"{r['git_commit'] or 'commit not recorded'} on {r['hardware'] or 'hardware not recorded'}"
        for r in runs
        if r["finished"]
    }
    return sorted(found)


def write_outputs(summary: dict, runs: dict, args) -> None:
    from pyro_betalstm.diagnostics import plot_time_to_quality, save_figure, use_file_backend
    from pyro_betalstm.io import atomic_write_json, atomic_write_text

    use_file_backend()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out_dir / "time_to_quality.json", summary)
    figure = args.static_dir / "time_to_quality.png"
    curves = {name: r["curve"] for name, r in runs.items()}
    save_figure(plot_time_to_quality(curves, args.threshold), figure)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    lines = [
        "| recipe | flags on top of `--protocol authors` | seconds to valid NLL <= "
        f"{args.threshold} | epoch | best valid NLL | test NLL | epochs run | finished |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(summary["recipes"], key=lambda r: r["seconds"] or float("inf")):
        flags = " ".join(row["flags"] or []) or "(none)"
        lines.append(
            f"| {row['recipe']} | `{flags}` | {fmt(row['seconds'], '.0f')} | "
            f"{fmt(row['target_epoch'], 'd')} | {row['best_valid_nll']:.3f} | "
            f"{fmt(row['test_nll'], '.3f')} | {row['epochs']} | {'yes' if row['finished'] else 'no'} |"
        )
    ref, best = summary["reference"], summary["best"]
    page = [
        "# Time to quality: bBLSTM(5G+p) on JSB Chorales",
        "",
        "Written by `python benchmarks/time_to_quality.py summarise` from the runs' `metrics.json`"
        " and `results.json`; do not edit by hand. Seconds are training wall-clock time with one"
        " CPU thread per run (`--threads 1`), validation included, until the end of the first"
        f" epoch whose validation NLL (mean gates) is at or below {args.threshold}. Data: the"
        " standard JSB split (229/76/77); seed"
        f" {args.seed}; recipes are tuned on validation only; the test NLL is that of the"
        " best-validation checkpoint at the end of the recipe's run (or at the threshold for a"
        " run stopped there). The machine had two cores and ran two such processes at a time"
        " (now and then a test run as well); a screening run capped at fewer epochs than the"
        " recipe's schedule is one whose epochs run are fewer than 100.",
        "",
        f"- Reference ({ref['recipe']}): {fmt(ref['seconds'], '.0f')} s, test NLL"
        f" {fmt(ref['test_nll'], '.3f')}.",
        f"- Best ({best['recipe']}): {fmt(best['seconds'], '.0f')} s, test NLL"
        f" {fmt(best['test_nll'], '.3f')}; a recipe counts only if its test NLL is at most"
        f" {TOLERANCE} above the reference's.",
        f"- Speedup: {summary['speedup']:.2f}x.",
        "- Runs made by: " + ("; ".join(summary["provenance"]) or "no finished run") + ".",
        f"- Read from: `{summary['runs_dir']}` (each run's `metrics.json` and `results.json`; the"
        " runs' checkpoints are not kept).",
        "- The same comparison from epochs to the threshold times the seconds of one training"
        " epoch of each recipe, measured side by side in one process (`epoch-cost`): "
        + (
            "not measured."
            if summary["speedup_from_epochs_and_same_process_epoch_costs"] is None
            else f"{summary['speedup_from_epochs_and_same_process_epoch_costs']:.2f}x (seconds"
            " per training epoch: "
            + ", ".join(f"{n} {v:.1f}" for n, v in summary["epoch_costs_s"].items())
            + ")."
        ),
        "",
        *lines,
        "",
        "![validation NLL against wall-clock time](../_static/time_to_quality.png)",
        "",
    ]
    atomic_write_text(args.out_dir / "time_to_quality.md", "\n".join(page))
    print("\n".join(page))


#: what ``summarise`` reads of a run, the files ``archive`` keeps
RUN_RECORDS = ("metrics.json", "results.json")


def archive(args) -> None:
    """Copy every run's records and the epoch costs from ``--runs-dir`` to ``--archive-dir``."""
    from pyro_betalstm.io import atomic_write_text

    runs = sorted(p for p in args.runs_dir.glob("*-seed*") if (p / RUN_RECORDS[0]).exists())
    if not runs:
        raise SystemExit(f"no run with a {RUN_RECORDS[0]} under {args.runs_dir}")
    kept = [
        (run / name, args.archive_dir / run.name / name) for run in runs for name in RUN_RECORDS
    ]
    kept.append((args.runs_dir / "epoch_costs.json", args.archive_dir / "epoch_costs.json"))
    for source, target in kept:
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, source.read_text())
            print(f"{source} -> {target}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=["run", "summarise", "list", "epoch-cost", "archive"])
    p.add_argument("recipes", nargs="*", help="recipe names (run)")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "music")
    p.add_argument("--runs-dir", type=Path, default=Path("runs") / "time_to_quality")
    p.add_argument("--reference-dir", type=Path, default=None)
    p.add_argument("--variant", default="bblstm5gp")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--stop-at-target", action="store_true")
    p.add_argument("--repeats", type=int, default=2, help="epoch-cost: epochs per recipe")
    p.add_argument(
        "--num-epochs", type=int, default=None, help="cap on epochs (default: the recipe's)"
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="continue a finished run (e.g. one stopped at the threshold) to --num-epochs",
    )
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results")
    p.add_argument(
        "--archive-dir", type=Path, default=ROOT / "docs" / "results" / "time_to_quality_runs"
    )
    p.add_argument("--static-dir", type=Path, default=ROOT / "docs" / "_static")
    return p.parse_args(argv)


def main(args) -> None:
    if args.command == "list":
        for name, flags in RECIPES.items():
            print(f"{name}: --protocol authors {' '.join(flags)}")
        return
    if args.command == "epoch-cost":
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        epoch_costs(args)
        return
    if args.command == "summarise":
        summarise(args)
        return
    if args.command == "archive":
        archive(args)
        return
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown or not args.recipes:
        raise SystemExit(f"name recipes from: {', '.join(RECIPES)} (unknown: {unknown})")
    for recipe in args.recipes:
        run_recipe(recipe, args)


if __name__ == "__main__":
    main(parse_args())
