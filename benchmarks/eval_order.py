"""What reading evaluation data shortest first saves: ``evaluate_nll`` on a music split in
file order at 64 sequences per minibatch (how it read them before) against shortest first at
``EVAL_BATCH_SIZE`` (32, how it reads them now) and at 64, in one process, alternately.

Each scheme scores the same split with the same model (the bBLSTM(5G+p) of the authors'
sizes, freshly initialised: the time of a pass does not depend on the weights' values), the
paper's mean gates and ``--samples`` posterior predictive draws. Besides seconds the JSON has
the padded work of each scheme, counted: ``steps`` (time steps run, one pass) and
``padded_rows`` (rows times steps: what a CPU step costs in proportion to), and the mean-gate
NLL of each, which must agree to float32 round-off (the order of the sums differs).

    python benchmarks/eval_order.py --data-dir ../shared/data/music --datasets musedata \\
        --threads 1 --out docs/results/eval_order_cpu.json
    python benchmarks/eval_order.py --smoke --out /tmp/eval_order.json    # seconds, for CI
    python benchmarks/eval_order.py --data-dir .device/data/music --datasets jsb \\
        --device cuda --out $OUT/eval_order_jsb_cuda.json    # run_gpu_graphs.sh, part 8

On a GPU a step costs about the same whatever its rows (the launches dominate), so there the
count of ``steps`` is what matters, and 32 sequences per minibatch may be slower than 64.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import emit  # noqa: E402

from pyro_betalstm.data import SequenceDataset  # noqa: E402
from pyro_betalstm.data.music import load_benchmark  # noqa: E402
from pyro_betalstm.infer import EVAL_BATCH_SIZE, evaluate_nll  # noqa: E402
from pyro_betalstm.models import NextStepBernoulli  # noqa: E402
from pyro_betalstm.nn import StochasticLSTM  # noqa: E402
from pyro_betalstm.provenance import git_state, run_hardware  # noqa: E402
from pyro_betalstm.variants import VARIANTS  # noqa: E402

KEYS = 88


class FileOrder:
    """``data`` read in file order whatever the evaluator asks (its ``bucket`` is dropped):
    how evaluation read sequences before, through the same ``evaluate_nll``."""

    def __init__(self, data: SequenceDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, batch_size: int, *args, bucket: bool = False, **kwargs):
        return self.data.batches(batch_size)


SCHEMES = {  # name: (batch size, shortest first)
    "file order, 64": (64, False),
    f"shortest first, {EVAL_BATCH_SIZE}": (EVAL_BATCH_SIZE, True),
    "shortest first, 64": (64, True),
}


def padded_work(data: SequenceDataset, batch_size: int, sort: bool) -> dict[str, int]:
    """Time steps run and rows times steps of one pass over ``data`` (padding included), and
    ``frames``, the rows that hold data (the predicted frames: one fewer than a roll's)."""
    lengths = [x.shape[0] for x in data.inputs]
    if sort:
        lengths = sorted(lengths)
    chunks = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    return {
        "steps": sum(max(c) for c in chunks),
        "padded_rows": sum(max(c) * len(c) for c in chunks),
        "frames": sum(lengths),
    }


def music_model(
    hidden: int, dropout: float, seed: int, recurrence: str = "eager"
) -> NextStepBernoulli:
    """The bBLSTM(5G+p) of the authors' music code at ``hidden``, with the eager loop unless
    ``recurrence`` says otherwise (the library's default, ``"auto"``, replays graphs on a GPU)."""
    torch.manual_seed(seed)
    lstm = StochasticLSTM(
        KEYS, hidden, 2, gate="bivariate5", batch_first=True, dropout=dropout, recurrence=recurrence
    )
    return NextStepBernoulli(lstm, KEYS, kl_weight=1e-3)


def smoke_split(seed: int) -> SequenceDataset:
    """100 random piano rolls of 2 to 60 frames, in random order: enough sequences for
    minibatches of 32 and 64 to pad differently."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 61, (100,), generator=g).tolist()
    rolls = [(torch.rand(n + 1, KEYS, generator=g) < 0.1).float() for n in lengths]
    return SequenceDataset([r[:-1] for r in rolls], [r[1:] for r in rolls], "smoke")


def music_split_parser(
    description: str, datasets: list[str], samples: tuple[int, str], repeats: int
) -> argparse.ArgumentParser:
    """The arguments of a benchmark over music splits (this one and predictive_fold.py):
    data, split, ``--samples`` (default and help), ``--repeats``, threads, seed, device,
    ``--smoke`` and ``--out``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", type=Path, default=None, help="the music .mat files")
    p.add_argument("--datasets", nargs="+", default=datasets)
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--samples", type=int, default=samples[0], help=samples[1])
    p.add_argument("--repeats", type=int, default=repeats, help="rounds over the schemes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true", help="tiny model on random rolls")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return p


def measure_datasets(
    p: argparse.ArgumentParser, args: argparse.Namespace, measure
) -> tuple[dict, str, int]:
    """``measure(name, args)`` for each of ``--datasets`` (the smoke split alone with
    ``--smoke``) with ``--threads`` torch threads, restored after; the results by data set,
    the hardware and the threads used."""
    if not args.smoke and args.data_dir is None:
        p.error("--data-dir is needed (or --smoke)")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        names = ["smoke"] if args.smoke else args.datasets
        results = {name: measure(name, args) for name in names}
        return results, run_hardware(args.device), torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> dict:
    git = git_state()  # the code that runs, read before it runs
    p = music_split_parser(
        __doc__.split("\n\n")[0], ["musedata"], (1, "predictive draws per pass"), repeats=1
    )
    args = p.parse_args(argv)
    results, hardware, used_threads = measure_datasets(p, args, _measure)
    what = (
        "seconds of evaluate_nll over a split, file order at 64 against shortest first; one "
        "pass with mean gates plus --samples predictive draws"
    )
    return emit(music_split_record(what, args, results, hardware, used_threads, git), args.out)


def music_split_record(
    what: str,
    args: argparse.Namespace,
    results: dict,
    hardware: str,
    threads: int,
    git: dict,
    **config: object,
) -> dict:
    """The JSON of a benchmark over music splits: ``what``, the config (bBLSTM(5G+p) at the
    authors' hidden size, or 4 for ``--smoke``; the arguments; ``config``'s extra entries),
    the results by data set and the environment."""
    hidden = 4 if args.smoke else VARIANTS["bblstm5gp"].music_hidden
    return {
        "what": what,
        "config": {
            "variant": "bblstm5gp",
            "hidden": hidden,
            "split": args.split,
            "device": args.device,
            "samples": args.samples,
            "repeats": args.repeats,
            "threads": threads,
            "seed": args.seed,
            **config,
        },
        "datasets": results,
        "environment": {
            "hardware": hardware,
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            **git,
        },
    }


def split_and_model(
    name: str, args: argparse.Namespace, recurrence: str = "eager"
) -> tuple[SequenceDataset, NextStepBernoulli]:
    """Data set ``name``'s ``--split`` (the smoke split with ``--smoke``) and the bBLSTM(5G+p)
    of :func:`music_model` (hidden 4 with ``--smoke``) on ``--device``."""
    if args.smoke:
        data, model = smoke_split(args.seed), music_model(4, 0.2, args.seed, recurrence)
    else:
        data = load_benchmark(name, args.data_dir).next_step(args.split)
        variant = VARIANTS["bblstm5gp"]
        model = music_model(variant.music_hidden, variant.music_dropout, args.seed, recurrence)
    return data, model.to(args.device)


def _measure(name: str, args: argparse.Namespace) -> dict:
    data, model = split_and_model(name, args)
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else lambda: None
    seconds: dict[str, list[float]] = {s: [] for s in SCHEMES}
    nll: dict[str, float] = {}
    for _ in range(args.repeats):
        for scheme, (batch_size, shortest_first) in SCHEMES.items():
            source = data if shortest_first else FileOrder(data)
            sync()
            start = time.perf_counter()
            scores = evaluate_nll(model, source, batch_size, args.samples, args.device)
            sync()  # evaluate_nll reads its sums back, so this only makes the bound explicit
            seconds[scheme].append(time.perf_counter() - start)
            nll[scheme] = scores["nll_mean_gates"]
            print(f"{name} {scheme}: {seconds[scheme][-1]:.1f} s", file=sys.stderr, flush=True)
    best = {s: min(t) for s, t in seconds.items()}
    before, now = "file order, 64", f"shortest first, {EVAL_BATCH_SIZE}"
    return {
        "sequences": len(data),
        "seconds": seconds,
        "best_seconds": best,
        "speedup_now_over_before": best[before] / best[now],
        "work": {s: padded_work(data, *SCHEMES[s]) for s in SCHEMES},
        "nll_mean_gates": nll,
        "nll_max_relative_difference": max(
            abs(v - nll[before]) / abs(nll[before]) for v in nll.values()
        ),
    }


if __name__ == "__main__":
    main()
