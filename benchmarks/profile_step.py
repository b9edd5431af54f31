"""Where the time of one training step goes: ``torch.profiler`` over a step_time.py variant.

Profiles ``--steps`` training steps (zero_grad, loss, backward, as ``step_time.py`` defines a
step) of one variant after ``--warmup`` untimed ones and lists the operators by self CPU time,
each as a share of the profiled total, so the shares stay meaningful on a shared, noisy machine.

    python benchmarks/profile_step.py --variant library_bivariate_svi --threads 1 \\
        --out docs/results/profile_step_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from pyro_betalstm.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import VARIANTS, build_variants, make_data  # noqa: E402

from pyro_betalstm.provenance import git_state  # noqa: E402

#: ATen operations that launch no kernel (views, metadata, allocation without a fill)
NO_KERNEL_OPS = frozenset(
    "aten::" + name
    for name in (
        "view", "unbind", "split", "split_with_sizes", "select", "squeeze", "unsqueeze", "t",
        "transpose", "expand", "expand_as", "as_strided", "detach", "alias", "slice", "narrow",
        "permute", "reshape", "_reshape_alias", "view_as", "empty", "empty_like",
        "empty_strided", "_unsafe_view", "lift_fresh", "result_type", "resolve_conj",
        "resolve_neg", "contiguous", "broadcast_tensors", "to", "numpy_T", "chunk",
    )
)  # fmt: skip


def top_level_kernel_ops(events) -> int:
    """ATen operations called from outside any other ATen operation, views and metadata left
    out: about the kernels a step launches (on a GPU, what a CUDA graph replays)."""
    return sum(
        1
        for e in events
        if e.name.startswith("aten::")
        and e.name not in NO_KERNEL_OPS
        and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))
    )


def profile_variant(args: argparse.Namespace, git: dict | None = None) -> dict:
    device = torch.device(args.device)
    x, y = make_data(args.batch, args.steps_per_sequence, args.input_size, device, args.seed)
    variant = build_variants(
        [args.variant], args.batch, args.input_size, args.hidden, x, y, device, args.seed
    )[args.variant]
    for _ in range(args.warmup):
        variant.step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            variant.step()
    ops_per_step = top_level_kernel_ops(prof.events()) / args.steps
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [
        {
            "op": e.key,
            "self_cpu_share": e.self_cpu_time_total / total_us,
            "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / args.steps,
            "calls_per_step": e.count / args.steps,
        }
        for e in ranked[: args.top]
    ]
    device_fields = {}
    if device.type == "cuda":  # launch-bound: how many kernels, and how busy the device is
        device_us = lambda e: getattr(e, "self_device_time_total", 0.0)  # noqa: E731
        device_fields = {
            # kernels launched one by one; those inside a replayed CUDA graph are not counted
            # here, each replay is one graph launch
            "kernel_launches_per_step": sum(
                e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel")
            )
            / args.steps,
            "graph_launches_per_step": sum(
                e.count for e in events if e.key in ("cudaGraphLaunch", "cuGraphLaunch")
            )
            / args.steps,
            "self_device_ms_per_step_total": sum(device_us(e) for e in events) / 1e3 / args.steps,
            "top_device": [
                {"op": e.key, "self_device_ms_per_step": device_us(e) / 1e3 / args.steps}
                for e in sorted(events, key=device_us, reverse=True)[: args.top]
            ],
        }
    return {
        "what": "operators by self CPU time over profiled training steps (zero_grad, loss, "
        "backward), shares of the profiled total",
        "variant": args.variant,
        "config": {
            "batch": args.batch,
            "hidden": args.hidden,
            "steps_per_sequence": args.steps_per_sequence,
            "input_size": args.input_size,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "profiled_steps": args.steps,
            "seed": args.seed,
        },
        "self_cpu_ms_per_step_total": total_us / 1e3 / args.steps,
        "aten_ops_per_step": ops_per_step,
        # the per-sequence work (loss, KL, optimiser-free bookkeeping) spread over the T steps
        "aten_ops_per_time_step": ops_per_step / args.steps_per_sequence,
        "top": top,
        **device_fields,
        "environment": {"torch": torch.__version__, **(git or git_state())},
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="library_bivariate_svi", choices=VARIANTS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--steps-per-sequence", dest="steps_per_sequence", type=int, default=100)
    p.add_argument("--input-size", dest="input_size", type=int, default=88)
    p.add_argument("--steps", type=int, default=5, help="profiled training steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=20, help="operators listed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.steps < 1 or args.top < 1:
        p.error("--steps and --top must be positive")
    return args


def main(argv=None) -> dict:
    git = git_state()  # the code that runs, read before it runs
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = profile_variant(args, git)
    print(f"{result['variant']}: {result['self_cpu_ms_per_step_total']:.1f} ms self CPU per step")
    for row in result["top"]:
        print(
            f"{row['self_cpu_share']:6.1%}  {row['self_cpu_ms_per_step']:8.2f} ms  "
            f"{row['calls_per_step']:7.0f} calls  {row['op']}"
        )
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
