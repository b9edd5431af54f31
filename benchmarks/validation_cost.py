"""What Pyro's argument validation costs a training step: the library's SVI step timed with
``pyro.validation_enabled(True)`` and ``(False)``, interleaved in one process (the machines are
shared and noisy), for the ``bivariate`` and ``sigmoid`` families.

On a GPU each check reads a value back from the device and makes the CPU wait for the queue
(guides/training_on_a_gpu.md, "Pyro's validation makes a step wait for the GPU"); on the CPU
the checks only cost their own small kernels.

    python benchmarks/validation_cost.py --threads 1 --repeats 15
    python benchmarks/validation_cost.py --device cuda --out $OUT/validation_cost_cuda.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import (  # noqa: E402
    CPU_DEFAULTS,
    GPU_DEFAULTS,
    build_variants,
    device_name,
    emit,
    make_data,
    round_robin_ms,
)

from pyro_betalstm.provenance import git_state  # noqa: E402

VARIANTS = ("library_bivariate_svi", "library_sigmoid")


def main(argv: list[str] | None = None) -> dict:
    git = git_state()  # the code that runs, read before it runs
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    for key in ("batch", "hidden", "steps"):
        p.add_argument(f"--{key}", type=int, default=None, help="default: step_time.py's")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _measure(args, device, git)
    finally:
        torch.set_num_threads(threads)


def _measure(args: argparse.Namespace, device: torch.device, git: dict) -> dict:
    size = dict(GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS)
    size.update({k: getattr(args, k) for k in ("batch", "hidden", "steps") if getattr(args, k)})
    x, y = make_data(size["batch"], size["steps"], size["input"], device, args.seed)
    variants = build_variants(
        VARIANTS, size["batch"], size["input"], size["hidden"], x, y, device, args.seed
    )
    calls = {}
    for name, variant in variants.items():
        for on in (True, False):

            def step(variant=variant, on=on):
                with pyro.validation_enabled(on):
                    variant.step()

            calls[f"{name} validation {'on' if on else 'off'}"] = step
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = round_robin_ms(calls, args.repeats, args.warmup, sync=sync)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return emit(
        {
            "what": "median ms per SVI step, Pyro validation on and off, interleaved",
            "config": {
                **size,
                "device": str(device),
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "seed": args.seed,
            },  # fmt: skip
            "median_ms": medians,
            "off_over_on": {
                name: medians[f"{name} validation off"] / medians[f"{name} validation on"]
                for name in VARIANTS
            },
            "environment": {
                "device_name": device_name(device),
                "torch": torch.__version__,
                "pyro": pyro.__version__,
                **git,
            },  # fmt: skip
        },
        args.out,
    )


if __name__ == "__main__":
    main()
