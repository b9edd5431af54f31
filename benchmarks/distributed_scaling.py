"""Seconds per training epoch of data-parallel :func:`~pyro_betalstm.infer.fit` with 1 and 2
processes (``torchrun``; gloo on the CPU, NCCL with ``--device cuda``), in the same run.

The fixed configuration: a 2-layer bBLSTM(5G+p)-style next-step model (``bivariate5`` gates,
Gamma prior, hidden 64) on synthetic 88-key piano rolls (``--sequences`` of ``--steps``
frames), a global minibatch of ``--global-batch`` 16 sequences (one process: 16; two: 8 per
rank, so all take the same number of steps over the same data), Adam, no validation, one CPU
thread per process. Each of ``--world-sizes`` (1 2) is launched ``--repeats`` times,
alternating, through
``python -m torch.distributed.run --standalone --nproc_per_node N``; each launch trains
``--epochs`` epochs and the first is dropped as warm-up. Rank 0 reports its epoch seconds
(``FitResult.history[*]["seconds"]``). Writes one JSON object to ``--out``.

    python benchmarks/distributed_scaling.py --out docs/results/distributed_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pyro_betalstm.io import atomic_write_text
from pyro_betalstm.provenance import git_state


def worker(args: argparse.Namespace) -> None:
    """One rank: train the fixed configuration and (rank 0) write its epoch seconds."""
    from pyro_betalstm.data import SequenceDataset
    from pyro_betalstm.infer import TrainConfig, fit
    from pyro_betalstm.infer.distributed import current_workers
    from pyro_betalstm.models import NextStepBernoulli
    from pyro_betalstm.nn import StochasticLSTM

    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    g = torch.Generator().manual_seed(0)
    rolls = [
        (torch.rand(args.steps + 1, 88, generator=g) < 0.1).float() for _ in range(args.sequences)
    ]
    data = SequenceDataset([r[:-1] for r in rolls], [r[1:] for r in rolls], name="synthetic")
    torch.manual_seed(0)
    lstm = StochasticLSTM(88, 64, 2, gate="bivariate5", batch_first=True)
    model = NextStepBernoulli(lstm, 88, prior="gamma", kl_weight=1e-3)
    config = TrainConfig(
        num_epochs=args.epochs,
        batch_size=args.global_batch // world_size,
        device=args.device,
        lr=2e-3,
        progress=False,
        seed=0,
        seed_globals=True,
    )
    result = fit(model, data, None, config)
    if current_workers().is_main:
        seconds = [r["seconds"] for r in result.history]
        atomic_write_text(
            args.worker_out, json.dumps({"world_size": world_size, "epoch_seconds": seconds})
        )


def launch(world_size: int, args: argparse.Namespace) -> dict:
    """Run the worker under torchrun with ``world_size`` processes; rank 0's report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(world_size),
            __file__,
            "--worker-out",
            str(report),
            "--epochs",
            str(args.epochs),
            "--sequences",
            str(args.sequences),
            "--steps",
            str(args.steps),
            "--global-batch",
            str(args.global_batch),
            "--device",
            args.device,
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, timeout=args.timeout_s, capture_output=True)
        record = json.loads(report.read_text())
    record["launch_seconds"] = time.perf_counter() - started
    return record


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=4, help="per launch; the first is warm-up")
    p.add_argument("--sequences", type=int, default=128)
    p.add_argument("--steps", type=int, default=40, help="frames per training sequence")
    p.add_argument("--repeats", type=int, default=2, help="launches per world size")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per step, all ranks")
    p.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--out", default=None)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_out is not None:
        worker(args)
        return {}
    for n in args.world_sizes:
        if n < 1 or args.global_batch % n:
            raise ValueError(
                f"every world size must divide --global-batch {args.global_batch}, got {n}"
            )
    load_before = os.getloadavg()[0]  # other jobs on the machine: the numbers' noise
    git = git_state()  # the code that runs, read before it runs
    timed: dict[int, list[float]] = {n: [] for n in args.world_sizes}
    for _ in range(args.repeats):
        for world_size in args.world_sizes:  # alternating, so machine noise hits both alike
            timed[world_size] += launch(world_size, args)["epoch_seconds"][1:]
    median = {n: statistics.median(s) for n, s in timed.items()}
    record = {
        "what": "seconds per training epoch of fit, rank 0's clock, first epoch of each launch dropped",
        "config": {
            "model": "NextStepBernoulli, StochasticLSTM(88, 64, 2 layers, gate bivariate5), Gamma prior",
            "data": f"{args.sequences} synthetic 88-key rolls of {args.steps} steps",
            "global_batch": args.global_batch,
            "per_rank_batch": {str(n): args.global_batch // n for n in timed},
            "device": args.device,
            "epochs_per_launch": args.epochs,
            "launches_per_world_size": args.repeats,
            "threads_per_process": 1,
            "backend": "nccl" if args.device.startswith("cuda") else "gloo",
        },
        "epoch_seconds": {str(n): s for n, s in timed.items()},
        "median_epoch_seconds": {str(n): m for n, m in median.items()},
        "speedup_over_1": {str(n): median[1] / m for n, m in median.items()}
        if 1 in median
        else None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "torch": torch.__version__,
        "git": git,
    }
    print(json.dumps(record, indent=1))
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
