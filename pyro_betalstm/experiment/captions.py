"""The image-captioning experiment: protocols, parameter matching, decoding and caption scores.

``examples/image_captioning.py`` trains a caption decoder on synthetic 2 x 2 grids of real
MNIST digits (:func:`pyro_betalstm.data.captions.build_synthetic_grid_captions`). This module
holds its protocols and settings, the parameter-matched hidden size of each gate family,
``decode_captions`` (greedy and beam search over a whole split, with the paper's mean gates)
and ``caption_scores`` (BLEU, METEOR, ROUGE-L, CIDEr when ``pycocoevalcap`` is installed,
and the task's own cell and layout accuracies).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from ..caption_metrics import CaptionScorer, pycocoevalcap_available
from ..data.captions import (
    SyntheticGridCaptions,
    build_synthetic_grid_captions,
    cell_accuracy,
    decode_caption,
    layout_accuracy,
)
from ..data.mnist import load_mnist
from ..models.caption import CaptionDecoder
from ..nn import layer_parameters, matched_hidden_size
from ..results import processes_note
from ..variants import get_variant
from .runner import resolve_settings

#: Protocols: ``reduced`` is what docs/results/image_captioning.md ran on a shared CPU;
#: ``full`` is the documented larger protocol (not run there).
PROTOCOLS = {
    "reduced": {
        "train_images": 4000,
        "valid_images": 500,
        "test_images": 1000,
        "train_captions_per_image": 1,
        "num_epochs": 20,
        "eval_samples": 5,
    },
    "full": {
        "train_images": 20000,
        "valid_images": 2000,
        "test_images": 2000,
        "train_captions_per_image": 5,
        "num_epochs": 30,
        "eval_samples": 10,
    },
}
#: the protocol a run names only where it is another (:func:`~pyro_betalstm.experiment.run_name`)
DEFAULT_PROTOCOL = "reduced"

#: Settings a flag of the same name (dashes for underscores) overrides.
OVERRIDABLE = (
    "gate",
    "hidden",
    "embed",
    "layers",
    "image_input",
    "dropout",
    "kl_weight",
    "prior",
    "lr",
    "batch_size",
    "num_epochs",
    "eval_samples",
    "beam_size",
    "max_length",
    "train_images",
    "valid_images",
    "test_images",
    "train_captions_per_image",
    "data_seed",
)

#: What ``--smoke`` changes: a tiny decoder, one epoch, a few dozen images.
SMOKE = {
    "reference_hidden": 16,
    "embed": 16,
    "num_epochs": 1,
    "eval_samples": 2,
    "batch_size": 16,
    "train_images": 64,
    "valid_images": 16,
    "test_images": 16,
    "train_captions_per_image": 1,
    "max_length": 20,
}

#: MNIST split each task split draws its digits from, and the offset of its data seed.
SOURCE_SPLITS = {"train": ("train", 0), "valid": ("valid", 1), "test": ("test", 2)}

#: Images decoded per batch.
DECODE_BATCH = 100


def decoder_parameters(gate: str, hidden: int, embed: int, vocab: int, layers: int) -> int:
    """Parameters of the decoder LSTM and its output layer (what the variants are matched on)."""
    lstm = sum(layer_parameters(gate, embed if k == 0 else hidden, hidden) for k in range(layers))
    return lstm + hidden * vocab + vocab


def matched_hidden(gate: str, reference: int, embed: int, vocab: int, layers: int) -> int:
    """Largest hidden size whose decoder has no more parameters than the LSTM's of ``reference``."""
    return matched_hidden_size(
        lambda hidden: decoder_parameters(gate, hidden, embed, vocab, layers),
        decoder_parameters("sigmoid", reference, embed, vocab, layers),
        rule="at_most",
    )


def caption_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol's settings, then ``--smoke``, then explicit flags. ``hidden`` stays None
    (parameter-matched once the vocabulary is known) unless ``--hidden`` gives it."""
    variant = get_variant(args.variant)
    defaults = {
        "gate": variant.gate,
        "hidden": None,  # parameter-matched to an LSTM of reference_hidden
        "reference_hidden": 128,
        "embed": 64,
        "layers": 1,
        "image_input": "every",
        "dropout": 0.1,
        # no captioning value is published; the authors' value for most music sets
        "kl_weight": 1e-3 if variant.prior_term else 0.0,
        "prior": "gamma",
        "lr": 2e-3,
        "batch_size": 32,
        "plateau_start_epoch": 4,
        "num_captions": 5,
        "max_digits": 4,
        "beam_size": 3,
        "max_length": 40,
        "data_seed": 0,
        **PROTOCOLS[args.protocol],
    }
    return resolve_settings(defaults, args, OVERRIDABLE, SMOKE)


def build_caption_splits(
    s: dict[str, Any], mnist_path: str | None
) -> dict[str, SyntheticGridCaptions]:
    """The synthetic splits, each from the matching MNIST split (fixed data seed)."""
    mnist = load_mnist(mnist_path)
    splits = {}
    for split, (source, offset) in SOURCE_SPLITS.items():
        images, labels = mnist[source]
        splits[split] = build_synthetic_grid_captions(
            images,
            labels,
            s[f"{split}_images"],
            seed=1000 * s["data_seed"] + offset,
            num_captions=s["num_captions"],
            max_digits=s["max_digits"],
        )
    return splits


def decode_all(
    model: CaptionDecoder, images: torch.Tensor, beam: int, max_length: int, device: str
) -> tuple[list, torch.Tensor]:
    """Captions (word indices) and their log-probabilities for every image, in batches:
    greedy for ``beam == 1``, else beam search."""
    captions, scores = [], []
    for start in range(0, len(images), DECODE_BATCH):
        chunk = images[start : start + DECODE_BATCH].to(device)
        if beam == 1:
            c, lp = model.greedy_decode(chunk, max_length)
        else:
            c, lp = model.beam_decode(chunk, beam, max_length)
        captions += c
        scores.append(lp.cpu())
    return captions, torch.cat(scores)


def decode_captions(
    model: CaptionDecoder, split: SyntheticGridCaptions, vocab, s: dict[str, Any], device: str
) -> dict[str, dict[str, Any]]:
    """Greedy and beam-search captions of every image of ``split`` (``texts``), with their
    mean log-probability, layout and cell accuracies and decoding seconds."""
    images = torch.as_tensor(split.images)
    decoded = {}
    for method, beam in (("greedy", 1), ("beam", s["beam_size"])):
        tic = time.perf_counter()
        ids, log_probs = decode_all(model, images, beam, s["max_length"], device)
        texts = [decode_caption(vocab, c) for c in ids]
        decoded[method] = {
            "texts": texts,
            "mean_log_prob": float(log_probs.mean()),
            "layout_accuracy": layout_accuracy(texts, split.layouts),
            "cell_accuracy": cell_accuracy(texts, split.layouts),
            "seconds": time.perf_counter() - tic,
        }
    return decoded


def caption_scores(
    decoded: dict[str, dict[str, Any]], split: SyntheticGridCaptions, meteor: bool
) -> dict[str, dict[str, Any]]:
    """Scores of each decoding method against the split's references (BLEU-1..4, METEOR,
    ROUGE-L, CIDEr when ``pycocoevalcap`` is installed, else why not), with its accuracies,
    mean log-probability and seconds; ``reference_agreement`` scores reference 0 against the
    others (how much the references agree with each other)."""
    references = dict(enumerate(split.captions))
    metrics: dict[str, dict[str, Any]] = {}
    if pycocoevalcap_available():
        with CaptionScorer(meteor=meteor) as scorer:
            for method in decoded:
                metrics[method] = scorer.score(
                    references, dict(enumerate(decoded[method]["texts"]))
                )
            metrics["reference_agreement"] = scorer.score(
                {k: refs[1:] for k, refs in references.items()},
                {k: refs[0] for k, refs in references.items()},
            )
    else:
        reason = "pycocoevalcap is not installed (pip install --no-deps pycocoevalcap==1.2)"
        metrics = {method: {"unavailable": reason} for method in decoded}
    for method, found in decoded.items():
        metrics[method]["layout_accuracy"] = found["layout_accuracy"]
        metrics[method]["cell_accuracy"] = found["cell_accuracy"]
        metrics[method]["mean_log_prob"] = found["mean_log_prob"]
        metrics[method]["decode_seconds"] = found["seconds"]
    return metrics


def decoded_captions(
    decoded: dict[str, dict[str, Any]], split: SyntheticGridCaptions
) -> list[dict[str, Any]]:
    """Every image's layout and its greedy and beam captions (``test_captions.json``)."""
    return [
        {
            "layout": split.layouts[n].tolist(),
            "greedy": decoded["greedy"]["texts"][n],
            "beam": decoded["beam"]["texts"][n],
        }
        for n in range(len(split))
    ]


def caption_examples(
    decoded: dict[str, dict[str, Any]], split: SyntheticGridCaptions, count: int = 5
) -> list[dict[str, Any]]:
    """The first ``count`` images: layout, two references and both decoded captions."""
    return [
        {
            "test_image": n,
            "layout": split.layouts[n].tolist(),
            "references": split.captions[n][:2],
            "greedy": decoded["greedy"]["texts"][n],
            "beam": decoded["beam"]["texts"][n],
        }
        for n in range(min(count, len(split)))
    ]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) and math.isfinite(value) else "-"


def captioning_row(record: dict[str, Any]) -> str:
    """One Markdown table row (columns as in docs/results/image_captioning.md)."""
    g, b = record["captions"]["greedy"], record["captions"]["beam"]
    test = record["test"]
    return (
        f"| {record['dataset']} | {record['paper_name']} | {record['seed']} | "
        f"{record['protocol']}{processes_note(record)} | {_fmt(record['valid']['nll_mean_gates'])} | "
        f"{_fmt(test['nll_mean_gates'])} | {_fmt(test.get('nll_predictive'))} | "
        f"{_fmt(g.get('BLEU-4'))} | {_fmt(g.get('CIDEr'))} | {_fmt(g['cell_accuracy'])} | "
        f"{_fmt(g['layout_accuracy'])} | "
        f"{_fmt(b.get('BLEU-1'))} | {_fmt(b.get('BLEU-4'))} | {_fmt(b.get('METEOR'))} | "
        f"{_fmt(b.get('ROUGE-L'))} | {_fmt(b.get('CIDEr'))} | {_fmt(b['cell_accuracy'])} | "
        f"{_fmt(b['layout_accuracy'])} | "
        f"{record['epochs_run']} ({record['best_epoch']}) | {record['parameters']} | "
        f"{record['cpu_seconds'] / 60:.1f} | {record['wall_seconds'] / 60:.1f} |\n"
    )


def describe_captions(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One printed line per decoding method: its caption scores and accuracies."""
    lines = []
    for method in ("greedy", "beam"):
        m = metrics[method]
        shown = ", ".join(
            f"{k} {m[k]:.3f}"
            for k in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
            if isinstance(m.get(k), float)
        )
        lines.append(
            f"{method}: {shown or m.get('unavailable')}; cell accuracy {m['cell_accuracy']:.3f}, "
            f"layout accuracy {m['layout_accuracy']:.3f}"
        )
    if metrics["beam"].get("METEOR_unavailable"):
        lines.append(f"METEOR unavailable: {metrics['beam']['METEOR_unavailable']}")
    return lines
