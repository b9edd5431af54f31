"""Data-parallel SVI across processes (``torchrun``): who this process is, and the few
collectives :func:`~pyro_betalstm.infer.fit` needs.

``torchrun`` starts one process per device and tells each its place in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, and ``MASTER_ADDR``/``MASTER_PORT`` for the
rendezvous). :func:`start_workers` joins the process group they describe: gloo on the CPU,
NCCL on CUDA with device ``cuda:LOCAL_RANK`` per rank. The gradients are summed with one
all-reduce of a flat buffer per step rather than through ``DistributedDataParallel``, whose
hooks need the module's ``forward`` while Pyro calls ``model.model`` and ``model.guide``.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..checks import is_real_number

#: The variables ``torchrun`` sets for every process it starts.
LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Workers:
    """The processes of one training run and this process's place among them."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether the run is data-parallel (more than one process)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints progress."""
        return self.rank == 0


def launch_environment() -> Workers | None:
    """The :class:`Workers` that ``torchrun`` describes in the environment, or None when
    ``WORLD_SIZE`` is unset (a plain ``python`` start). A malformed value raises ValueError."""
    if "WORLD_SIZE" not in os.environ:
        return None
    values = {}
    for name in LAUNCH_VARIABLES:
        text = os.environ.get(name, "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
    world_size, rank, local_rank = (values[n] for n in LAUNCH_VARIABLES)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(
            f"inconsistent launch environment WORLD_SIZE={world_size}, RANK={rank}, "
            f"LOCAL_RANK={local_rank}: expected WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE"
        )
    return Workers(world_size, rank, local_rank)


def current_workers() -> Workers:
    """This process's :class:`Workers`: the joined process group's, else a single process."""
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return Workers(dist.get_world_size(), dist.get_rank(), local_rank)
    return Workers()


def start_workers(
    device: str | torch.device = "cpu",
    distributed: bool | None = None,
    timeout_s: float = 600.0,
) -> tuple[Workers, torch.device]:
    """Join the process group of a ``torchrun`` launch (once per process) and pick the device.

    ``distributed``: None joins when the environment names more than one process (or a group
    is already joined); True requires such a launch (ValueError otherwise); False trains in
    this process alone. Backend: gloo for a CPU ``device``, NCCL for CUDA, where rank ``r``
    uses ``cuda:LOCAL_RANK``. ``timeout_s``: how long a collective waits for a rank that does
    not answer before it fails (a rank that dies closes its connections, so its peers
    usually fail sooner). Returns the workers and this rank's device.
    """
    device = torch.device(device)
    if distributed is False:
        return Workers(), device
    if dist.is_available() and dist.is_initialized():
        workers = current_workers()
    else:
        workers = launch_environment() or Workers()
        if distributed and not workers.active:
            raise ValueError(
                "TrainConfig.distributed=True needs a launch by torchrun with more than one "
                "process (WORLD_SIZE > 1), e.g. torchrun --standalone --nproc_per_node 2 "
                "script.py; found WORLD_SIZE=" + os.environ.get("WORLD_SIZE", "<unset>")
            )
        if workers.active:
            _init_process_group(device, workers, timeout_s)
    if workers.active and device.type == "cuda":
        device = torch.device("cuda", workers.local_rank)
        torch.cuda.set_device(device)
    return workers, device


def _init_process_group(device: torch.device, workers: Workers, timeout_s: float) -> None:
    if not dist.is_available():
        raise ValueError("torch.distributed is not available in this torch build")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but CUDA is not available")
        count = torch.cuda.device_count()
        if workers.local_rank >= count:  # CUDA's own "invalid device ordinal" names no cause
            raise ValueError(
                f"rank {workers.rank} has LOCAL_RANK {workers.local_rank}, but this machine has "
                f"{count} CUDA device(s): each rank uses its own GPU, so start at most {count} "
                "processes per machine (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(torch.device("cuda", workers.local_rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))


def stop_workers() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s global random generators: ``seed`` itself on rank 0 (so a
    one-process run is unchanged), a well-mixed derived 31-bit seed on every other rank."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0] >> 1)


def _collective_device(tensor_device: torch.device) -> torch.device:
    # NCCL reduces CUDA tensors only; gloo takes CPU tensors
    return tensor_device if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (the same start everywhere)."""
    for tensor in module.state_dict().values():
        if not isinstance(tensor, torch.Tensor):
            continue
        buffer = tensor.detach().to(_collective_device(tensor.device))
        dist.broadcast(buffer, src=0)
        with torch.no_grad():
            tensor.copy_(buffer.to(tensor.device))


def sum_gradients(parameters: Sequence[torch.Tensor], loss: torch.Tensor | float) -> float:
    """Sum every parameter's gradient and ``loss`` over the ranks (one all-reduce).

    A parameter without a gradient on this rank (an idle rank, an unused branch) adds zero;
    it gets a gradient after the sum only if some rank had one, as in one process. Returns the
    summed loss. ``loss`` may be a one-element tensor on the parameters' device: it is read
    after the sum, with the gradient flags, so a GPU step waits for the device once here.
    """
    if not parameters:
        return float(loss)
    device = _collective_device(parameters[0].device)
    dtype = parameters[0].dtype
    pieces = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).to(device)
        for p in parameters
    ]
    flags = torch.tensor([float(p.grad is not None) for p in parameters], dtype=dtype)
    local_loss = torch.as_tensor(loss).detach().to(device=device, dtype=dtype).reshape(1)
    flat = torch.cat([*pieces, flags.to(device), local_loss])
    dist.all_reduce(flat)
    offset = 0
    for p, piece in zip(parameters, pieces, strict=True):
        size = piece.numel()
        p.grad = flat[offset : offset + size].view_as(p).to(p.device).clone()
        offset += size
    *had_grad, total = flat[offset:].tolist()  # the flags and the loss in one read
    for p, used in zip(parameters, had_grad, strict=True):
        if used == 0:
            p.grad = None
    return total


def all_gather(value) -> list:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def from_main(value):
    """Rank 0's ``value`` on every rank (e.g. a decision that must be the same everywhere)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank arrives (e.g. before reading a file rank 0 wrote)."""
    dist.barrier()


#: Metric keys that are counts (summed across ranks), not means.
COUNT_KEYS = frozenset({"num_predictions"})


def combine_metrics(parts: Iterable[tuple[dict | None, float]]) -> dict:
    """One metrics dict from every rank's ``(metrics, weight)`` on its shard: each mean (a
    floating-point value: a Python, numpy or one-element torch float) weighted by its shard's
    weight (the number of predictions it averages over) and returned as a float, counts in
    :data:`COUNT_KEYS` summed; anything else (an integer setting, a string) taken from the
    first rank with metrics. A rank with an empty shard passes ``(None, 0)``."""
    parts = [(m, w) for m, w in parts if m is not None and w > 0]
    if not parts:
        raise ValueError("no rank evaluated any sequence: the validation set is empty")
    total = sum(w for _, w in parts)
    combined = {}
    for key, first in parts[0][0].items():
        values = [m.get(key) for m, _ in parts]
        means = [_floating_value(v) for v in values]
        if key in COUNT_KEYS:
            combined[key] = sum(values)
        elif all(v is not None for v in means):
            combined[key] = math.fsum(v * w for v, (_, w) in zip(means, parts, strict=True))
            combined[key] /= total
        else:
            combined[key] = first
    return combined


def _floating_value(value) -> float | None:
    """``value`` as a float if it is a floating-point number (np.float32 and a one-element
    float tensor included: a custom evaluate may return either), else None."""
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 and value.is_floating_point() else None
    if is_real_number(value) and not isinstance(value, numbers.Integral):
        return float(value)
    return None
