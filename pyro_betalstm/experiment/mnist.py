"""The sequential-MNIST experiment: settings, subsets, test scores and the results row."""

from __future__ import annotations

import argparse
from typing import Any

from ..data import FixedLengthSequences
from ..infer import evaluate_classifier
from ..models.base import GateModel
from ..results import processes_note
from ..variants import get_variant
from .runner import resolve_settings

#: KL weight of the prior term (the authors' kl_lambda on their non-JSB tasks).
DEFAULT_KL_WEIGHT = 1e-3
#: What ``--smoke`` changes: a tiny model, one epoch, on the first few hundred digits.
SMOKE = {
    "hidden": 8,
    "num_epochs": 1,
    "eval_samples": 2,
    "batch_size": 32,
    "train_subset": 256,
    "valid_subset": 128,
    "test_subset": 128,
}


def mnist_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The defaults, then ``--smoke``, then explicit flags (every key is a flag)."""
    variant = get_variant(args.variant)
    defaults = {
        "gate": variant.gate,
        "hidden": 128,
        "layers": 1,
        "dropout": 0.0,
        "kl_weight": DEFAULT_KL_WEIGHT if variant.prior_term else 0.0,
        "prior": "gamma",
        "lr": 1e-3,
        "num_epochs": 30,
        "batch_size": 128,
        "plateau_start_epoch": 5,
        "eval_samples": 10,
        "train_subset": None,
        "valid_subset": None,
        "test_subset": None,
        "predictive_subset": None,
    }
    return resolve_settings(defaults, args, [k for k in defaults if hasattr(args, k)], SMOKE)


def subset(data: FixedLengthSequences, count: int | None) -> FixedLengthSequences:
    """The first ``count`` sequences (all when None); the same ones for every run."""
    if count is None or count >= len(data):
        return data
    if count < 1:
        raise ValueError(f"subset sizes must be positive, got {count}")
    return FixedLengthSequences(data.inputs[:count], data.targets[:count], data.name)


def mnist_scores(
    model: GateModel,
    valid: FixedLengthSequences,
    test: FixedLengthSequences,
    samples: int,
    predictive_subset: int | None,
    device: str,
) -> dict[str, dict]:
    """Validation: the monitored mean-gate scores. Test: mean gates and the posterior
    predictive over ``samples`` draws (S forward passes per sequence), the predictive on the
    first ``predictive_subset`` test images only when given (``test_predictive_subset``, with
    the mean-gate scores of the same images)."""
    scores = {"valid": evaluate_classifier(model, valid, 1000, 0, device)}
    n = predictive_subset
    if n is None or n >= len(test) or not samples:
        scores["test"] = evaluate_classifier(model, test, 1000, samples, device)
    else:
        scores["test"] = evaluate_classifier(model, test, 1000, 0, device)
        scores["test_predictive_subset"] = evaluate_classifier(
            model, subset(test, n), 1000, samples, device
        )
    return scores


def mnist_row(record: dict[str, Any]) -> str:
    """The run as one row of the tables in docs/results/sequential_mnist.md."""
    test = record["test"]
    pred = record.get("test_predictive_subset", test)
    predictive = pred.get("accuracy_predictive")
    if predictive is not None and pred is not test:
        predictive_cell = (
            f"{predictive:.4f} (first {pred['num_predictions']}; mean gates there "
            f"{pred['accuracy_mean_gates']:.4f})"
        )
    else:
        predictive_cell = "-" if predictive is None else f"{predictive:.4f}"
    return (
        f"| {record['task']} | {record['paper_name']} | {record['seed']} | "
        f"{record['protocol']}{processes_note(record)} | {record['split']} | "
        f"{record['valid']['accuracy_mean_gates']:.4f} | {test['accuracy_mean_gates']:.4f} | "
        f"{predictive_cell} | {record['epochs_run']} ({record['best_epoch']}) | "
        f"{record['parameters']} | {record['wall_seconds'] / 60:.1f} min | "
        f"{record['hardware']} |\n"
    )
