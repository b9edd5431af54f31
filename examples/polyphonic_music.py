"""Example: polyphonic music with stochastic-gate LSTMs (the paper's music experiment).

A piano roll is a sequence of 88-key frames. We model the next frame given the past: a 2-layer
stochastic-gate LSTM reads the frames and outputs 88 Bernoulli logits. For the latent gate
families (BLSTM, bBLSTM) every input and forget gate is drawn from a (bivariate) Beta built from
Gamma variables, and an amortised guide learns their posterior; training maximises the ELBO by
SVI. We report the negative log-likelihood per frame (summed over keys, averaged over the
predicted frames of the split) twice: with the paper's mean gates, and with the posterior
predictive over S gate draws.

Data: ``--dataset jsb|nottingham|musedata|piano`` reads the standard benchmark piano rolls
(``.mat`` or ``.pickle``) from ``--data-dir``; the default, ``jsb-music21``, is a JSB-style
rebuild from music21's Bach chorales (not the benchmark: other chorales, quantisation and split).

The training protocols (``--protocol default|authors|fast|batch16``) are described in
:mod:`pyro_betalstm.experiment.music`; every flag below overrides its protocol's value, and
``--smoke`` shrinks the run for CI (explicit flags still win).

Examples::

    python examples/polyphonic_music.py                       # embedded jsb-music21, bBLSTM(5G+p)
    python examples/polyphonic_music.py --dataset jsb --data-dir ../shared/data/music \\
        --variant lstm --protocol authors
    python examples/polyphonic_music.py --smoke               # under a minute, for CI
"""

from __future__ import annotations

import argparse
import time

import torch

from pyro_betalstm import experiment as ex
from pyro_betalstm.data.music import (
    BENCHMARK_FILES,
    BENCHMARK_URL,
    build_jsb_music21,
    frequency_baseline_nll,
    load_benchmark,
)
from pyro_betalstm.experiment.music import (
    DEFAULT_PROTOCOL,
    PROTOCOLS,
    SMOKE_FRAMES,
    SMOKE_SEQUENCES,
    build_music_model,
    music_row,
    music_settings,
    music_train_config,
    target_epoch,
    truncate,
)
from pyro_betalstm.infer import evaluate_nll, gate_kl_summary
from pyro_betalstm.infer.lr_rules import LR_RULES


def load_data(args):
    if args.dataset == "jsb-music21":
        smoke_size = 24 if args.smoke else None
        return build_jsb_music21(
            args.cache_dir, progress=not args.no_progress, max_chorales=smoke_size
        )
    if args.data_dir is None:
        raise SystemExit(
            f"--dataset {args.dataset} needs --data-dir, the folder that holds "
            f"{BENCHMARK_FILES[args.dataset]}.mat or .pickle (or the file as downloaded from "
            f"{BENCHMARK_URL}; or use the embedded default, --dataset jsb-music21)"
        )
    return load_benchmark(args.dataset, args.data_dir)


def main(args) -> dict | None:
    watch = ex.begin(args)
    s = music_settings(args)  # the protocol, then --smoke, then explicit flags
    rolls = load_data(args)
    if args.smoke:
        rolls = truncate(rolls, SMOKE_SEQUENCES, SMOKE_FRAMES)
    if args.stop_at_target and args.target_nll is None:
        raise SystemExit("--stop-at-target needs --target-nll")
    seed = args.seed if args.seed is not None else s.get("seed", 0)
    torch.manual_seed(seed)  # the model's initial weights
    name = ex.run_name(rolls.name, args.variant, s["gate"], seed, args.protocol, DEFAULT_PROTOCOL)
    run = ex.start_run(args, "music", name, watch)

    # The model, and SVI on windows (or whole sequences) of the training rolls. The protocol
    # chooses the learning-rate rule; --target-nll records when validation first reached it.
    model = build_music_model(s, rolls)
    config = music_train_config(s, args, seed)
    train = rolls.next_step("train", chunk_length=s["train_chunk"])
    valid, test = rolls.next_step("valid"), rolls.next_step("test")
    split = ", ".join(
        f"{k} {v['sequences']} ({v['frames']} frames)" for k, v in rolls.summary().items()
    )
    print(f"{run.name}: sequences {split} | {ex.count_parameters(model)} parameters")
    identity = ex.run_settings(
        s, dataset=rolls.name, split=rolls.summary(), protocol=args.protocol, seed=seed
    )
    result = ex.train(model, train, valid, config, run.out, args.resume,
                      run_settings=identity, overwrite=args.overwrite)  # fmt: skip
    if not ex.is_main_process():
        return None  # rank 0 alone evaluates and writes the run's files (torchrun)

    # Score the best checkpoint: mean gates, and the predictive over S gate draws.
    samples = ex.predictive_draws(model, s)
    ex.announce_scoring(samples)
    scoring_started = time.perf_counter()
    scores = {
        split: evaluate_nll(
            model, data, config.eval_batch_size, samples, args.device, not args.no_progress
        )
        for split, data in (("valid", valid), ("test", test))
    }
    ex.save_gate_draws(model, test.batch(range(min(4, len(test)))).to(args.device), 20, run)
    # how far the gate posterior is from the prior (analytic for a Gamma prior only)
    gate_kl = None
    if model.family.is_latent:
        try:
            gate_kl = gate_kl_summary(model, valid, config.eval_batch_size, args.device)
        except ValueError as err:
            print(f"no gate KL summary: {err}")
    # the NLLs, the saved gate draws and the gate KL summary
    scoring_seconds = time.perf_counter() - scoring_started
    record = {
        "dataset": rolls.name,
        "data_source": rolls.source,
        "split": rolls.summary(),
        **ex.run_header(args, args.protocol, s, seed),
        "parameters": ex.count_parameters(model),
        **ex.training_summary(result),
        "train_elapsed_s": result.history[-1]["elapsed_s"],
        "scoring_seconds": scoring_seconds,
        "target_nll": args.target_nll,
        "target_epoch": target_epoch(result.history, args.target_nll),
        "gate_kl_valid": gate_kl,
        **scores,
        "frequency_baseline_test_nll": frequency_baseline_nll(rolls, "test"),
        **ex.run_footer(run, args, fit_result=result),
        "early_stopping": s["early_stopping"],
    }
    ex.write_results(run, record, music_row(record))
    for split in ("valid", "test"):
        print(ex.describe_scores(split, scores[split], "nll", "NLL/frame", samples))
    print(f"per-key frequency baseline {record['frequency_baseline_test_nll']:.4f}")
    ex.print_files(run)
    if not args.no_plots:
        from pyro_betalstm.diagnostics import use_file_backend
        from pyro_betalstm.diagnostics.render import (
            EXAMPLE_NUM_SAMPLES,
            SMOKE_NUM_SAMPLES,
            render_run,
        )

        use_file_backend()  # the script writes the plots as files

        # the defaults of `pyro-betalstm diagnostics`, which renders the same files again
        draws = SMOKE_NUM_SAMPLES if args.smoke else EXAMPLE_NUM_SAMPLES
        written = render_run(run.out, num_samples=draws, include_basis=False)
        print(f"plots and ArviZ InferenceData: {run.out / 'diagnostics'} ({len(written)} files)")
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=ex.plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="jsb-music21", choices=["jsb-music21", *BENCHMARK_FILES])
    p.add_argument("--data-dir", default=None, help="folder with the benchmark .mat/.pickle files")
    p.add_argument("--cache-dir", default=None, help="cache of the jsb-music21 rebuild")
    ex.add_variant_arguments(p, ablations=True)
    p.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        choices=PROTOCOLS,
        help="default: hidden 64, 10 epochs on windows of 30 transitions in minibatches of 8 "
        "at Adam 1e-2 (the README's main job); authors: Song et al.'s training as their code "
        "runs it (their sizes, one sequence per update, 100 epochs); fast: the authors' model "
        "on windows in minibatches; batch16 (alias paper): their sizes and epochs with "
        "minibatches of 16 (docs/results/music.md#protocols)",
    )
    ex.add_setting_flags(p, hidden=int, layers=int, dropout=float, lr=float)
    ex.add_setting_flags(p, batch_size=int, num_epochs=int, eval_samples=int)
    ex.add_setting_flags(
        p,
        train_chunk=(int, "train on windows of this many transitions (whole sequences to test)"),
        early_stopping=(int, "stop after this many epochs without validation improvement"),
    )
    p.add_argument("--lr-rule", dest="lr_rule", default=None, choices=sorted(LR_RULES))
    ex.add_setting_flags(
        p, plateau_start_epoch=(int, "first epoch after which the lr rule may fire")
    )
    p.add_argument(
        "--output-bias-init",
        dest="output_bias_init",
        default=None,
        choices=["frequency", "uniform"],
        help="frequency: start the output bias at the training key log-odds; uniform: "
        "U(-1/sqrt(H), 1/sqrt(H)) like every other parameter (the authors')",
    )
    ex.add_setting_flags(p, clip_norm=(float, "0: no clipping"))
    ex.add_setting_flags(
        p,
        target_nll=(
            float,
            "record the first epoch whose validation NLL (mean gates) is at or below this, "
            "and the training seconds until then (results.json: target_epoch)",
        ),
    )
    p.add_argument(
        "--stop-at-target",
        action="store_true",
        help="stop training at that epoch (time-to-quality)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the diagnostics plots")
    ex.add_run_arguments(p, seed_default=None, threads_default=None)
    args = p.parse_args(argv)
    # each folder flag belongs to one kind of data set: the other would be silently unused
    if args.dataset == "jsb-music21" and args.data_dir is not None:
        p.error(
            "--data-dir is read for a benchmark --dataset (jsb, nottingham, musedata, piano); "
            "the default, jsb-music21, is rebuilt from music21's corpus (its cache: --cache-dir)"
        )
    if args.dataset != "jsb-music21" and args.cache_dir is not None:
        p.error("--cache-dir is the cache of the jsb-music21 rebuild; a benchmark reads --data-dir")
    return args


if __name__ == "__main__":
    ex.run_script(main, parse_args())
