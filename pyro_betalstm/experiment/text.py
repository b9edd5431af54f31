"""The sentence-classification experiment: its settings and one cross-validation fold.

``examples/sentence_classification.py`` runs k-fold cross-validation: a seeded,
class-stratified fold assignment; in each fold a validation slice carved from the training
folds picks the best checkpoint, and the held-out fold is the test set. The vocabulary is built
on each fold's training part only. ``run_fold`` trains and scores one fold and writes its
``fold<k>/fold_result.json``; with ``--resume`` a finished fold is read back instead.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from ..data.text import TextDataset, Vocabulary, cv_split, encode_dataset, glove_embedding_matrix
from ..infer.distributed import current_workers
from ..infer.predict import evaluate_classifier
from ..io import atomic_write_json, read_json
from ..models.text_classifier import TextClassifier
from ..nn import StochasticLSTM, layer_parameters, matched_hidden_size
from ..results import processes_note
from ..variants import get_variant
from .runner import (
    Run,
    Stopwatch,
    count_parameters,
    is_main_process,
    model_prior,
    predictive_draws,
    resolve_settings,
    save_gate_draws,
    train,
    train_config,
)

#: Keys of the settings that a command-line flag of the same name overrides.
OVERRIDABLE = (
    "gate",
    "lstm_hidden",
    "prior",
    "kl_weight",
    "hidden",
    "embed_dim",
    "dropout",
    "lr",
    "num_epochs",
    "batch_size",
    "eval_samples",
    "min_count",
    "max_len",
    "valid_fraction",
    "early_stopping",
)

#: What ``--smoke`` changes: a tiny model trained for one epoch.
SMOKE = {"lstm_hidden": 8, "embed_dim": 16, "num_epochs": 1, "eval_samples": 2, "batch_size": 16}
#: ``--smoke`` also keeps the first texts of each class, and runs two folds.
SMOKE_PER_CLASS, SMOKE_FOLDS = 60, 2
#: GloVe 6B 50d; a ``--glove-path`` file of another size sets the size when it is read.
GLOVE_DIM = 50


def matched_hidden(gate: str, input_size: int, lstm_hidden: int) -> int:
    """Hidden size giving ``gate`` the closest recurrent parameter count to an LSTM of
    ``lstm_hidden`` units (the paper matches parameter counts across variants)."""
    return matched_hidden_size(
        lambda hidden: layer_parameters(gate, input_size, hidden),
        layer_parameters("sigmoid", input_size, lstm_hidden),
        rule="closest",
    )


def text_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol's settings, then ``--smoke``, then explicit flags; the hidden size is then
    matched to the LSTM's unless ``--hidden`` gives it."""
    variant = get_variant(args.variant)
    defaults = {
        "gate": variant.gate,
        "lstm_hidden": 128,  # the LSTM's size; other variants are parameter-matched to it
        "embed_dim": 50,
        "dropout": 0.5,
        "kl_weight": 1e-3 if variant.prior_term else 0.0,
        "prior": "gamma",
        "lr": 1e-3,
        "num_epochs": 10,
        "batch_size": 50,
        "eval_samples": 10,
        "min_count": 1,
        "max_len": None,
        "valid_fraction": 0.1,
        "early_stopping": None,  # train_config takes it from the flag; recorded here
        "glove": bool(args.glove or args.glove_path),
        "freeze_embeddings": args.freeze_embeddings,
    }
    s = resolve_settings(defaults, args, OVERRIDABLE, SMOKE)
    if args.glove_path:  # which vectors: recorded, and a resume with others is refused
        s["glove_path"] = str(Path(args.glove_path).resolve())
    if s["glove"] and args.embed_dim is None:
        s["embed_dim"] = GLOVE_DIM
    if args.hidden is None:
        s["hidden"] = matched_hidden(s["gate"], s["embed_dim"], s["lstm_hidden"])
    return s


def fit_glove_size(s: dict[str, Any], args: argparse.Namespace, dim: int) -> None:
    """Take the embedding size of the GloVe vectors read (re-matching the hidden size)."""
    if dim == s["embed_dim"]:
        return
    if args.embed_dim is not None:
        raise SystemExit(f"--embed-dim {args.embed_dim} but the GloVe vectors have {dim}")
    s["embed_dim"] = dim
    if args.hidden is None:
        s["hidden"] = matched_hidden(s["gate"], dim, s["lstm_hidden"])


def smoke_subset(data: TextDataset, per_class: int = SMOKE_PER_CLASS) -> TextDataset:
    """The first ``per_class`` texts of each class (a tiny, deterministic subset for CI)."""
    keep, seen = [], {}
    for i, y in enumerate(data.labels):
        if seen.get(y, 0) < per_class:
            keep.append(i)
            seen[y] = seen.get(y, 0) + 1
    return data.subset(keep)


def folds_to_run(args: argparse.Namespace) -> list[int]:
    """``--fold k`` alone, else folds ``0..--max-folds-1`` (two with ``--smoke``, else all)."""
    if args.fold is not None:
        if not 0 <= args.fold < args.folds:
            raise SystemExit(f"--fold must lie in [0, {args.folds - 1}]")
        return [args.fold]
    count = args.max_folds if args.max_folds is not None else args.folds
    if args.smoke and args.max_folds is None:
        count = SMOKE_FOLDS
    return list(range(min(count, args.folds)))


def fold_identity(
    args: argparse.Namespace, s: dict[str, Any], data: TextDataset, fold: int
) -> dict[str, Any]:
    """What a fold's result depends on besides the code: the settings, the data set and its
    size, the fold assignment (count, split seed), the fold and the seed. A finished fold is
    reused on ``--resume``, and a fold's checkpoint resumed, only when these are equal."""
    return {
        "settings": s,
        "dataset": data.name,
        "num_sequences": len(data.labels),
        "num_folds": args.folds,
        "split_seed": args.split_seed,
        "fold": fold,
        "seed": args.seed + fold,
    }


def mean_sd(values: list[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the values that are not None (NaN without)."""
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def run_fold(
    args: argparse.Namespace,
    s: dict[str, Any],
    data: TextDataset,
    tokens: list[list[str]],
    folds: list[int],
    fold: int,
    run: Run,
    glove: dict | None,
    draw_gates: bool,
) -> dict[str, Any] | None:
    """Train and test fold ``fold``; returns (and writes) its result record. ``draw_gates``:
    also write the run's gate draws on a few of its test sentences, with their words. Under
    ``torchrun`` the ranks other than 0 only train, and return None."""
    fold_dir = run.out / f"fold{fold}"
    done = fold_dir / "fold_result.json"
    identity = fold_identity(args, s, data, fold)
    if args.resume and done.exists():
        record = read_json(done, "fold result")
        made_with = {"settings": record["settings"], **record.get("split_identity", {})}
        if made_with != identity:
            raise SystemExit(
                f"{done} was made with other settings or another split (its: {made_with}; "
                f"this run: {identity}); use another --out-dir, or --overwrite to start over"
            )
        world = current_workers().world_size
        if record.get("world_size", world) != world:  # records before it was kept: not known
            raise SystemExit(
                f"{done} was trained by {record['world_size']} process(es) and this run has "
                f"{world}: its global batch differs, so the folds would not be one protocol; "
                "resume with the same number of processes, or --overwrite to start over"
            )
        print(f"fold {fold}: finished earlier, test accuracy {record['test_accuracy']:.4f}")
        return {**record, "finished_earlier": True}  # marked for the run's record only
    fold_dir.mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    parts = cv_split(folds, fold, data.labels, s["valid_fraction"], seed=args.split_seed)
    vocab = Vocabulary.build([tokens[i] for i in parts[0]], min_count=s["min_count"])
    if is_main_process():
        atomic_write_json(fold_dir / "vocab.json", vocab.to_dict(), indent=None)
    train_set, valid, test = (
        encode_dataset(
            [tokens[i] for i in index],
            [data.labels[i] for i in index],
            vocab,
            s["max_len"],
            name=f"{data.name}/fold{fold}/{part}",
        )
        for index, part in zip(parts, ("train", "valid", "test"), strict=True)
    )
    seed = args.seed + fold
    torch.manual_seed(seed)
    embeddings, glove_found = None, None
    if glove is not None:
        embeddings, glove_found = glove_embedding_matrix(vocab, glove, seed=seed)
    lstm = StochasticLSTM(s["embed_dim"], s["hidden"], 1, gate=s["gate"], batch_first=True)
    model = TextClassifier(
        lstm,
        len(vocab),
        data.num_classes,
        prior=model_prior(s, lstm),
        kl_weight=s["kl_weight"],
        embeddings=embeddings,
        freeze_embeddings=s["freeze_embeddings"],
        dropout=s["dropout"],
    )
    # a fixed learning rate (lr_decay 1); the best validation checkpoint is kept
    config = train_config(s, args, seed, clip_norm=5.0, lr_decay=1.0)
    # train starts a fold that --resume finds without a checkpoint (not begun yet)
    overwrite = bool(getattr(args, "overwrite", False))
    result = train(model, train_set, valid, config, fold_dir, args.resume, classifier=True,
                   run_settings=identity, overwrite=overwrite)  # fmt: skip
    if not is_main_process():
        return None  # rank 0 alone tests the fold and writes its files (torchrun)
    samples = predictive_draws(model, s)
    scores = {
        split: evaluate_classifier(
            model, part, config.eval_batch_size, samples, args.device, not args.no_progress
        )
        for split, part in (("valid", valid), ("test", test))
    }
    if draw_gates:
        batch = test.batch(range(min(4, len(test)))).to(args.device)
        lengths = batch.step_mask().sum(1).tolist()
        words = [
            vocab.decode(ids[: int(n)])
            for ids, n in zip(batch.inputs[..., 0].tolist(), lengths, strict=True)
        ]
        save_gate_draws(model, batch, 20, run, tokens=words)
    record = {
        "fold": fold,
        "seed": seed,
        "sizes": {"train": len(train_set), "valid": len(valid), "test": len(test)},
        "vocab_size": len(vocab),
        "glove_coverage": None if glove_found is None else glove_found / (len(vocab) - 2),
        "parameters": count_parameters(model),
        "recurrent_parameters": count_parameters(lstm),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "valid": scores["valid"],
        "test": scores["test"],
        "test_accuracy": scores["test"]["accuracy_mean_gates"],
        "test_accuracy_predictive": scores["test"].get("accuracy_predictive"),
        "wall_seconds": result.earlier_seconds + watch.wall_seconds(),
        "resumed_after_s": result.earlier_seconds,
        "world_size": result.world_size,
        "git_commit": run.watch.commit,
        "settings": s,
        "split_identity": {k: v for k, v in identity.items() if k != "settings"},
    }
    atomic_write_json(done, record)
    predictive = record["test_accuracy_predictive"]
    print(
        f"fold {fold}: test accuracy {record['test_accuracy']:.4f} (mean gates)"
        + (f", {predictive:.4f} (predictive, S={samples})" if samples else "")
        + f"; best epoch {result.best_epoch}, {record['wall_seconds']:.0f} s"
    )
    return record


def earlier_seconds(records: list[dict[str, Any]]) -> float:
    """The training seconds of the processes before this one: the folds they finished and the
    part of a fold they began that this process resumed."""
    return sum(
        r["wall_seconds"] if r.get("finished_earlier") else r.get("resumed_after_s", 0.0)
        for r in records
    )


def epochs_cell(record: dict[str, Any]) -> str:
    """The epochs a run's folds ran: ``10``, or ``4-10`` where early stopping ended some sooner
    (the settings' ``num_epochs`` for records made before the folds' epochs were kept)."""
    ran = [n for n in record.get("fold_epochs_run") or () if n is not None]
    if not ran:
        return str(record["settings"]["num_epochs"])
    low, high = min(ran), max(ran)
    return f"{low}" if low == high else f"{low}-{high}"


def percent(mean: float, sd: float) -> str:
    """``"81.20 ± 1.30"`` (percentages), or ``"n/a"``."""
    return "n/a" if math.isnan(mean) else f"{100 * mean:.2f} ± {100 * sd:.2f}"


def sentence_row(record: dict[str, Any], num_folds: int) -> str:
    """The run as one row of the tables in docs/results/sentence_classification.md."""
    s = record["settings"]
    accuracy = percent(record["test_accuracy_mean"], record["test_accuracy_sd"])
    predictive = percent(
        record["test_accuracy_predictive_mean"], record["test_accuracy_predictive_sd"]
    )
    return (
        f"| {record['dataset']} | {record['paper_name']} | {s['hidden']} | "
        f"{record['recurrent_parameters']} | {len(record['folds_run'])}/{num_folds}{processes_note(record)} | "
        f"{epochs_cell(record)} | {accuracy} | {predictive} | {record['seed']} | "
        f"{record['fold_wall_seconds'] / 60:.1f} |\n"
    )
