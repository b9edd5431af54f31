"""The ``results.json`` record every example writes, in one place.

A run directory written by an example holds:

- ``results.json``: the record (:data:`COMMON_KEYS` plus the keys of its kind, :data:`KIND_KEYS`);
- ``results.md``: the record as a Markdown table, a header (:data:`ROW_COLUMNS`) and one row;
  :func:`join_tables` puts several runs' rows under their headers (one table per task);
- ``gate_draws.pt``: posterior gate draws on a few test sequences (the layout of
  :func:`pyro_betalstm.infer.sample_gates`), with ``prior`` (prior draws, latent gate families)
  and ``tokens`` (the words of each sequence, text tasks) when the run saved them;
- ``invocations.json``: each process that ran the run, when it started, with its commit,
  hardware and torch version (also in ``results.json`` as ``invocations``);
- ``metrics.json``, ``best.pt``, ``last.pt``: what :func:`pyro_betalstm.infer.fit` writes
  (sentence classification: one set per fold, under ``fold<k>/``).

Records written since data-parallel training also hold ``world_size``, the number of
processes that trained the model (1 without ``torchrun``; an older record without it was
trained by one). It is not required, so older records still load.

The record has no field naming its kind (the keys predate this module); :func:`record_kind`
recognises it from the keys only one kind writes. :func:`load_results` reads a record and says
which required keys it lacks. This module imports nothing of the package but :mod:`.io`, so
every layer (the examples' runner, diagnostics) may depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import read_json

RESULTS_FILE = "results.json"
RESULTS_ROW_FILE = "results.md"
GATE_DRAWS_FILE = "gate_draws.pt"
#: the k-fold assignment of a cross-validated run (sentence classification)
FOLDS_FILE = "folds.json"
#: every process that ran in a run's folder, in order (a resumed run names all of them)
INVOCATIONS_FILE = "invocations.json"
HISTORY_FILE = "metrics.json"
#: where a run's gate diagnostics go, inside its folder
DIAGNOSTICS_DIR = "diagnostics"
#: every file :func:`~pyro_betalstm.diagnostics.render_run` may write: a render first deletes
#: these from its folder, and ``--overwrite`` from the run's, so that no plot of an earlier
#: render (a ``compare`` plot, or one of a replaced run) is left beside the new ones
RENDER_FILES = (
    "inference_data.nc",
    "gate_summary.csv",
    "elbo_history.png",
    "prior_posterior.png",
    "joint_if.png",
    "gate_heatmap.png",
    "token_gates.png",
    "gate_histograms.png",
)


def remove_render_files(folder: Path) -> None:
    """Delete the :data:`RENDER_FILES` of an earlier render from ``folder`` (other files stay)."""
    for name in RENDER_FILES:
        (folder / name).unlink(missing_ok=True)


#: Keys every example writes.
COMMON_KEYS = (
    "dataset",
    "data_source",
    "variant",
    "paper_name",
    "protocol",
    "settings",
    "seed",
    "parameters",
    "wall_seconds",
    "hardware",
    "torch",
)

#: The scores of one split of a next-step density (music, captioning): mean-gate NLL, and the
#: posterior predictive NLL for latent gate families.
NLL_SPLIT_KEYS = ("nll_mean_gates",)
#: The scores of one split of a classifier (MNIST; sentence classification per fold).
CLASSIFIER_SPLIT_KEYS = ("accuracy_mean_gates", "nll_mean_gates", "num_predictions")

#: Keys of each kind of record beyond :data:`COMMON_KEYS`.
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "music": (
        "split",
        "best_epoch",
        "epochs_run",
        "valid",
        "test",
        "frequency_baseline_test_nll",
        "target_nll",
        "target_epoch",
        "gate_kl_valid",
        "early_stopping",
    ),
    "sentence": (
        "data_summary",
        "split",
        "split_seed",
        "fold_seeds",
        "folds_run",
        "fold_test_accuracy",
        "fold_test_accuracy_predictive",
        "test_accuracy_mean",
        "test_accuracy_sd",
        "test_accuracy_predictive_mean",
        "test_accuracy_predictive_sd",
        "best_epochs",
        "recurrent_parameters",
        "fold_wall_seconds",
    ),
    "mnist": (
        "task",
        "view",
        "steps",
        "permuted",
        "permutation_seed",
        "split",
        "best_epoch",
        "epochs_run",
        "epoch_seconds",
        "valid",
        "test",
        "cpu_seconds",
        "early_stopping",
        "time_limit_min",
        "stopped_on_time",
    ),
    "captioning": (
        "synthetic",
        "split",
        "training_captions",
        "vocabulary",
        "best_epoch",
        "epochs_run",
        "valid",
        "test",
        "captions",
        "examples",
        "train_seconds",
        "epoch_seconds_total",
        "resumed",
        "cpu_seconds",
        "early_stopping",
    ),
}

#: The columns of each kind's ``results.md`` row (the experiment modules' ``*_row`` functions).
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "music": (
        "dataset", "variant", "seed", "protocol", "valid NLL", "test NLL (mean gates)",
        "test NLL (predictive)", "best epoch", "wall min",
    ),
    "sentence": (
        "data", "variant", "hidden", "recurrent params", "folds", "epochs",
        "test acc. % (mean gates)", "test acc. % (predictive)", "seed", "wall min",
    ),
    "mnist": (
        "task", "variant", "seed", "protocol", "train/valid/test used", "valid acc. (mean gates)",
        "test acc. (mean gates)", "test acc. (predictive)", "epochs (best)", "parameters",
        "wall time", "hardware",
    ),
    "captioning": (
        "data", "variant", "seed", "protocol", "valid NLL", "test NLL (mean gates)",
        "test NLL (predictive)", "greedy BLEU-4", "greedy CIDEr", "greedy cell acc.",
        "greedy layout acc.", "beam BLEU-1", "beam BLEU-4", "beam METEOR", "beam ROUGE-L",
        "beam CIDEr", "beam cell acc.", "beam layout acc.", "epochs (best)", "parameters",
        "CPU min", "wall min",
    ),
}  # fmt: skip

#: The keys of each split block (``valid``, ``test``) by kind; sentence records keep their
#: split blocks in each fold's ``fold_result.json``.
SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "music": NLL_SPLIT_KEYS,
    "captioning": NLL_SPLIT_KEYS,
    "mnist": CLASSIFIER_SPLIT_KEYS,
}

#: A key only one kind writes, checked in this order.
_MARKERS = (
    ("captioning", "captions"),
    ("sentence", "folds_run"),
    ("mnist", "view"),
    ("music", "frequency_baseline_test_nll"),
)


def processes_note(record: dict[str, Any]) -> str:
    """``", N processes"`` for a run trained by ``N > 1`` data-parallel processes (its global
    batch is N times the recorded per-rank one), else ``""``: appended to a row's protocol."""
    world = record.get("world_size", 1)
    return f", {world} processes" if world > 1 else ""


def record_kind(record: dict[str, Any]) -> str:
    """Which example wrote ``record``: ``music``, ``sentence``, ``mnist`` or ``captioning``.

    Raises ``ValueError`` when no kind's marker key is present.
    """
    for kind, marker in _MARKERS:
        if marker in record:
            return kind
    markers = ", ".join(f"{m!r} ({k})" for k, m in _MARKERS)
    raise ValueError(f"not a results record of a known example: none of the keys {markers}")


def missing_keys(record: dict[str, Any]) -> list[str]:
    """The required keys ``record`` lacks (split blocks as ``"test.nll_mean_gates"``)."""
    kind = record_kind(record)
    missing = [k for k in (*COMMON_KEYS, *KIND_KEYS[kind]) if k not in record]
    for split in ("valid", "test"):
        block = record.get(split)
        if isinstance(block, dict):
            missing += [f"{split}.{k}" for k in SPLIT_KEYS[kind] if k not in block]
    if "settings" in record and not isinstance(record["settings"], dict):
        missing.append("settings (a dict)")
    return missing


def validate_results(record: Any, where: str = "results record") -> dict[str, Any]:
    """``record`` if it is a complete results record; ``ValueError`` naming what is missing."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    try:
        missing = missing_keys(record)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if missing:
        kind = record_kind(record)
        raise ValueError(f"{where}: a {kind} results record without {', '.join(missing)}")
    return record


def results_path(run: str | Path) -> Path:
    """The ``results.json`` of ``run`` (a run directory or the file itself)."""
    run = Path(run)
    return run / RESULTS_FILE if run.is_dir() else run


def load_results(run: str | Path) -> dict[str, Any]:
    """Read and validate the ``results.json`` of ``run`` (a run directory or the file)."""
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(
            f"{run} not found: expected a run folder written by an example (or its {RESULTS_FILE})"
        )
    path = results_path(run)
    if not path.is_file():
        raise FileNotFoundError(
            f"{run} has no {RESULTS_FILE}: not a finished run (an example writes it when the "
            "run ends)"
        )
    return validate_results(read_json(path, "results record"), str(path))


def history_path(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """The ``metrics.json`` that goes with the run's gate draws: the run's own, or for
    sentence classification that of the first fold run (whose model drew them)."""
    run_dir = Path(run_dir)
    if record_kind(record) == "sentence":
        return run_dir / f"fold{record['folds_run'][0]}" / HISTORY_FILE
    return run_dir / HISTORY_FILE


def results_table(record: dict[str, Any], row: str) -> str:
    """The ``results.md`` of ``record``: its kind's header (:data:`ROW_COLUMNS`) above ``row``
    (one Markdown table row); ``ValueError`` when the row's cells do not match the columns."""
    kind = record_kind(record)
    columns = ROW_COLUMNS[kind]
    cells = row.strip().count("|") - 1
    if not row.strip().startswith("|") or cells != len(columns):
        raise ValueError(
            f"a {kind} results row has {len(columns)} cells "
            f"({', '.join(columns)}), got {cells}: {row.strip()!r}"
        )
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return header + row.strip() + "\n"


def _cells(line: str) -> int:
    """The number of cells of a Markdown table line (as :func:`results_table` counts them)."""
    return line.strip().count("|") - 1


def join_tables(paths: list[str | Path]) -> str:
    """Markdown tables of several runs' ``results.md``: each file's row (its last line) under its
    header (its first two lines), one table per header in the order the headers first appear,
    the tables separated by a blank line. Runs of one task share a header, so they make one
    table; runs of different tasks (music and MNIST, say) make one table each.

    A file written before headers has its row only: it joins the table whose header has as many
    cells as its row (the only table, when there is one; no header at all when no file has
    one). ``ValueError`` for an empty file, or a row-only file whose table is not clear (no
    header or several of its width)."""
    tables: dict[str, list[str]] = {}  # header line -> header and rule, then the rows
    rows: list[tuple[Path, str | None, str]] = []  # (file, its header line or None, its row)
    for path in map(Path, paths):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{path} is empty: expected a results.md table written by an example")
        header = lines[0].strip() if len(lines) >= 3 else None
        if header is not None:
            tables.setdefault(header, lines[:2])
        rows.append((path, header, lines[-1]))
    if not tables:
        return "".join(f"{row}\n" for _, _, row in rows)
    for path, header, row in rows:
        if header is not None:
            fits = [tables[header]]
        elif len(tables) == 1:
            fits = list(tables.values())
        else:
            fits = [table for table in tables.values() if _cells(table[0]) == _cells(row)]
        if len(fits) != 1:
            widths = ", ".join(map(str, sorted({_cells(line) for line in tables})))
            raise ValueError(
                f"{path} has a row without a header ({_cells(row)} cells) and the other files "
                f"have {len(tables)} different headers ({widths} cells): "
                f"{'none' if not fits else 'more than one'} of them fits it; tabulate it with "
                "the runs of its own task"
            )
        fits[0].append(row)
    return "\n".join("".join(f"{line}\n" for line in table) for table in tables.values())


def main(argv: list[str] | None = None, prog: str = "python -m pyro_betalstm.results") -> int:
    """``python -m pyro_betalstm.results RUN_DIR_OR_RESULTS_MD ...`` (or ``pyro-betalstm table``):
    the runs' rows as one table per header (:func:`join_tables`)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Print the results.md rows of several runs under their headers: one table "
        "per task, separated by a blank line.",
    )
    parser.add_argument("runs", nargs="+", help="run folders or their results.md files")
    args = parser.parse_args(argv)
    paths = [Path(r) / RESULTS_ROW_FILE if Path(r).is_dir() else Path(r) for r in args.runs]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        parser.error(f"no results.md (not a finished run): {', '.join(absent)}")
    try:
        print(join_tables(paths), end="")
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
