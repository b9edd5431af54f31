"""What folding the posterior-predictive draws into the batch saves: the S gate draws of each
evaluation minibatch run one at a time (``row_steps=0``, how they ran before) against folded
into its batch, as many at a time as ``PREDICTIVE_ROW_STEPS`` allows (how they run now), in one
process, alternately.

Both schemes score the same split with the same model (the bBLSTM(5G+p) of the authors' sizes,
freshly initialised: a pass's time does not depend on the weights' values) through
``predictive_log_likelihood``, over the evaluators' minibatches (``EVAL_BATCH_SIZE`` sequences,
shortest first). Besides seconds the JSON has each scheme's ``passes`` (network runs: on a GPU
what launches cost in proportion to) and its predictive NLL per frame. The two NLLs are Monte
Carlo estimates from other draws, so they differ by Monte Carlo noise, not by round-off.

    python benchmarks/predictive_fold.py --data-dir ../shared/data/music --datasets jsb \\
        --threads 1 --out docs/results/predictive_fold_cpu.json
    python benchmarks/predictive_fold.py --smoke --out /tmp/predictive_fold.json   # CI
    python benchmarks/predictive_fold.py --data-dir .device/data/music --datasets jsb \\
        --device cuda --out $OUT/predictive_fold_jsb_cuda.json   # run_gpu_graphs.sh, part 9
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_order import (  # noqa: E402
    measure_datasets,
    music_split_parser,
    music_split_record,
    split_and_model,
)
from step_time import emit  # noqa: E402

from pyro_betalstm.infer import (  # noqa: E402
    EVAL_BATCH_SIZE,
    PREDICTIVE_ROW_STEPS,
    draws_per_pass,
    predictive_log_likelihood,
)
from pyro_betalstm.provenance import git_state  # noqa: E402

SCHEMES = {"one draw a pass": 0, "folded": PREDICTIVE_ROW_STEPS}  # name: row_steps


def main(argv: list[str] | None = None) -> dict:
    git = git_state()  # the code that runs, read before it runs
    p = music_split_parser(
        __doc__.split("\n\n")[0], ["jsb"], (10, "S, predictive draws"), repeats=3
    )
    p.add_argument(
        "--recurrence",
        default="eager",
        choices=["eager", "auto"],
        help="the layers' loop (auto replays CUDA graphs on a GPU, where draws are not folded)",
    )
    p.add_argument("--time-cap", type=float, default=None, help="stop a data set's rounds after")
    args = p.parse_args(argv)
    results, hardware, used_threads = measure_datasets(p, args, _measure)
    what = (
        "seconds of predictive_log_likelihood over a split's evaluation minibatches, S draws "
        "one at a time against folded into the batch"
    )
    extra = {
        "recurrence": args.recurrence,
        "batch_size": EVAL_BATCH_SIZE,
        "row_steps": PREDICTIVE_ROW_STEPS,
    }
    record = music_split_record(what, args, results, hardware, used_threads, git, **extra)
    return emit(record, args.out)


def _measure(name: str, args: argparse.Namespace) -> dict:
    data, model = split_and_model(name, args, args.recurrence)
    batches = [b.to(args.device) for b in data.batches(EVAL_BATCH_SIZE, bucket=True)]
    frames = sum(b.num_valid_steps() for b in batches)
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else lambda: None
    seconds: dict[str, list[float]] = {s: [] for s in SCHEMES}
    nll: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(args.repeats):
        for scheme, row_steps in SCHEMES.items():
            sync()
            start = time.perf_counter()
            total = sum(
                float(predictive_log_likelihood(model, b, args.samples, row_steps).sum())
                for b in batches
            )
            sync()
            seconds[scheme].append(time.perf_counter() - start)
            nll[scheme] = -total / frames
            print(f"{name} {scheme}: {seconds[scheme][-1]:.1f} s", file=sys.stderr, flush=True)
        if args.time_cap is not None and time.perf_counter() - started > args.time_cap:
            break
    best = {s: min(t) for s, t in seconds.items()}
    return {
        "sequences": len(data),
        "minibatches": len(batches),
        "seconds": seconds,
        "best_seconds": best,
        "speedup_folded_over_one_draw": best["one draw a pass"] / best["folded"],
        "passes": {
            s: sum(-(-args.samples // draws_per_pass(model, b, args.samples, r)) for b in batches)
            for s, r in SCHEMES.items()
        },
        "nll_predictive": nll,
    }


if __name__ == "__main__":
    main()
