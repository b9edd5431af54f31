"""What a CUDA graph needs of the recurrence, checked on the CPU.

:func:`host_syncs` lists the operations of a computation that would make the host wait for
the GPU or copy host data to it: each one breaks a CUDA-graph capture (and, in the eager loop,
stalls the launch queue at every step). It watches the ATen operations through the public
``torch.profiler``, so it works on any device.

:class:`StaticBufferStandIn` replaces :class:`~pyro_betalstm.nn.cuda_graphs.CapturedRecurrence`
on the CPU: the same call contract and the same static-buffer rule (a backward uses the
activations of the *last* forward of its signature), without a capture, so that
:class:`~pyro_betalstm.nn.LayerGraphs` (signatures, padding, the pending-backward guard,
staleness, eviction) is tested where no GPU is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from ..nn.cuda_graphs import CapturedRecurrence

#: ATen operations that need the host to see device data or send it host data, and why.
HOST_SYNC_OPS = {
    "aten::_local_scalar_dense": "reads a tensor's value on the host (item, float, int, bool)",
    "aten::is_nonzero": "bool() of a tensor",
    "aten::nonzero": "output shape depends on the data",
    "aten::masked_select": "output shape depends on the data",
    "aten::equal": "returns a Python bool",
    "aten::lift_fresh": "a tensor from Python data (torch.tensor, new_tensor): a host-to-device copy",
}


def host_syncs(fn: Callable[[], object]) -> dict[str, int]:
    """Run ``fn()`` and count its :data:`HOST_SYNC_OPS` (an empty dict: capturable as far as
    host synchronisation goes)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages() if e.key in HOST_SYNC_OPS}


class StaticBufferStandIn(CapturedRecurrence):
    """A CPU stand-in for a captured recurrence (see the module docstring). A taped "replay"
    runs the layer eagerly and keeps its autograd graph in one slot per signature; the
    backward differentiates whatever that slot holds, as a graph's backward replays on its
    static buffers, and returns its gradients as aliases of static buffers, as
    :func:`torch.cuda.make_graphed_callables` does. Draws come from the global generator as the eager loop's do, so a seeded
    stand-in run equals the eager run."""

    @staticmethod
    def supports(device: torch.device) -> bool:
        return True

    @staticmethod
    def _capture_taped(scan, args):
        params = tuple(scan.parameters())
        num_args = len(args)
        slot: dict = {}

        class Replay(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *surface):
                with torch.enable_grad():
                    static = [
                        a.detach().requires_grad_(a.requires_grad) for a in surface[:num_args]
                    ]
                    slot["inputs"], slot["outputs"] = static, scan(*static)
                return tuple(o.detach() for o in slot["outputs"])

            @staticmethod
            @torch.autograd.function.once_differentiable
            def backward(ctx, *grads):
                surface = list(slot["inputs"]) + list(params)
                pairs = [
                    (o, g) for o, g in zip(slot["outputs"], grads, strict=True) if o.requires_grad
                ]
                wanted = [t for t in surface if t.requires_grad]
                found = iter(
                    torch.autograd.grad(
                        [o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True
                    )
                )
                # like the real graph, hand back aliases of static buffers that the next
                # backward overwrites (pytorch/pytorch issue 181723)
                buffers = slot.setdefault("grads", {})
                returned = []
                for index, t in enumerate(surface):
                    g = next(found) if t.requires_grad else None
                    if g is not None:
                        g = buffers.setdefault(index, torch.empty_like(g)).copy_(g).detach()
                    returned.append(g)
                return tuple(returned)

        return lambda *new_args: Replay.apply(*new_args, *params)

    @staticmethod
    def _capture_forward(scan, args):
        return scan
