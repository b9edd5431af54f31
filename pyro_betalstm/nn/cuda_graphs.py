"""CUDA graphs of a layer's recurrence: ``recurrence="cuda_graph"`` (or ``"auto"``).

On a GPU a layer's eager recurrence is launch-bound: each of its ``T`` steps launches a few
dozen small kernels forward and more backward, and the GPU mostly waits for Python. Here the
layer's own eager recurrence (:meth:`~pyro_betalstm.nn.GateLayer.run_eager`) is captured once
per call signature (batch size, length, dtype, autocast, gate mode, which inputs need a
gradient, ...) and replayed at every later call with that signature: forward and backward as
two graphs (:func:`torch.cuda.make_graphed_callables`) when a gradient is taped, the forward
alone otherwise (evaluation, posterior-predictive draws). A training step then launches two
graphs per layer instead of thousands of kernels.

Exactness. A graph replays the eager path's kernels on the same values: with a given basis
(:class:`~pyro_betalstm.nn.gate_modes.GivenBasis`) outputs and gradients equal the eager path's
to float32 round-off (tests/core/test_cuda_graphs.py, on a GPU). In ``"sample"`` mode the gate
bases are torch's exact reparameterised Gamma draws from the generator's Philox stream, which a
replay advances as an eager call would; the numbers differ from an eager call's from the same
seed (the stream offsets differ), not their law. Gradients that leave a graph are copied out
of its static buffers (``_fresh_gradient``), so accumulating them stays right.

Lengths. A signature's length is the input's while a layer has seen at most
:data:`EXACT_LENGTHS` lengths (fixed-length tasks: no padding ever). Past that, inputs are padded
to the next of about eight lengths per octave (:func:`bucket_length`) with the padded steps
masked, which leaves every valid step's values unchanged (padded steps keep the state and give
zero outputs) and bounds the number of graphs for variable-length data. At most
``max_graphs`` graphs are kept per layer (least recently used dropped first; a dropped
graph's device memory is freed at once).

When the eager path runs instead (counted in :attr:`~pyro_betalstm.nn.LayerGraphs.stats`):
inputs not on CUDA (``"auto"``; ``"cuda_graph"`` raises), a gradient probe on the layer, a gate
mode with a Python callback per step (:class:`~pyro_betalstm.nn.gate_modes.PriorBasis`, user
modes), a call inside another capture, a capture that failed (``"auto"`` warns once and keeps
the eager loop; ``"cuda_graph"`` raises), and a second call of one taped signature before the
first call's backward ran (the graph keeps the activations its backward needs in static
buffers, which a second replay would overwrite: the particles of an ELBO that differentiates
them together run eagerly).
"""

from __future__ import annotations

import gc
import warnings
import weakref
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from .gate_modes import GateMode, GivenBasis, MeanGates, SampledBasis

if TYPE_CHECKING:
    from .layer import GateLayer

#: ``"eager"``: the Python loop (the reference, and the CPU path); ``"cuda_graph"``: graphs,
#: CUDA inputs required; ``"auto"``: graphs for CUDA inputs, the loop otherwise.
RECURRENCES = ("eager", "auto", "cuda_graph")
#: distinct input lengths a layer captures exactly before it pads to :func:`bucket_length`
EXACT_LENGTHS = 8
#: graphs kept per layer by default
MAX_GRAPHS = 32
#: eager calls (on a side stream) before a capture: lazy initialisation (cuBLAS workspaces,
#: allocator pools) must not happen inside it
WARMUP_CALLS = 2


def check_recurrence(name: str) -> str:
    """``name`` if it is one of :data:`RECURRENCES`, else ValueError."""
    if name not in RECURRENCES:
        raise ValueError(f"unknown recurrence {name!r}; expected one of {RECURRENCES}")
    return name


def bucket_length(length: int) -> int:
    """``length`` rounded up to a multiple of ``2**(bit_length - 4)``: lengths up to 16 stay,
    longer ones land on about eight values per octave (at most 1/8 padding)."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    step = 1 << max(0, length.bit_length() - 4)
    return -(-length // step) * step


@dataclass(frozen=True)
class Signature:
    """What a graph is specialised to. ``grads``: whether each tensor argument needs a gradient
    (all False when nothing is taped)."""

    batch: int
    length: int
    dtype: torch.dtype
    device: torch.device
    mode: str  # "sample", "mean" or "given"
    has_mask: bool
    has_state: bool
    taped: bool
    grads: tuple[bool, ...]
    training: bool
    record_gates: bool
    #: the autocast dtype in force on the inputs' device (None: autocast off): a graph replays
    #: the kernels, and so the precision, of its capture
    autocast: torch.dtype | None = None


@dataclass
class GraphStats:
    """Counts of a layer's calls by how they ran."""

    replays: int = 0
    captures: int = 0
    eager: dict[str, int] = field(default_factory=dict)

    def ran_eagerly(self, reason: str) -> None:
        self.eager[reason] = self.eager.get(reason, 0) + 1


def _mode_name(mode: GateMode) -> str | None:
    """The graphable modes by name (exact types: a subclass may add a per-step callback)."""
    return {SampledBasis: "sample", MeanGates: "mean", GivenBasis: "given"}.get(type(mode))


#: the returned tensors with a time dimension (second), cut back after padding
TIME_FIELDS = frozenset(
    {"outputs", "alpha", "log_basis", "input_gate", "forget_gate", "cell_states"}
)


def _output_fields(layer: GateLayer, sig: Signature) -> tuple[str, ...]:
    """The run's tensors a graph returns, in order (the given basis is the caller's own)."""
    fields = ["outputs", "h_n", "c_n"]
    if layer.family.is_latent:
        fields.append("alpha")
        if sig.mode == "sample":
            fields.append("log_basis")
    if sig.record_gates:
        fields += ["input_gate", "forget_gate", "cell_states"]
    return tuple(fields)


class _Scan(nn.Module):
    """The layer's eager recurrence as a function of tensors alone: what a graph captures.
    The layer is a submodule so that :func:`torch.cuda.make_graphed_callables` sees its
    parameters."""

    def __init__(self, layer: GateLayer, sig: Signature):
        super().__init__()
        self.layer = layer
        self.sig = sig
        self.fields = _output_fields(layer, sig)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs, mask, state, mode = _unpack(self.sig, args)
        run = self.layer.run_eager(inputs, mask, state, mode, self.sig.record_gates)
        return run.arrays(self.fields)


def _unpack(sig: Signature, args):
    """``(inputs, [mask], [h_0, c_0], [log_basis])`` -> inputs, mask, state, mode."""
    args = list(args)
    inputs = args.pop(0)
    mask = args.pop(0) if sig.has_mask else None
    state = (args.pop(0), args.pop(0)) if sig.has_state else None
    if sig.mode == "given":
        mode = GivenBasis(args.pop(0))
    else:
        mode = SampledBasis() if sig.mode == "sample" else MeanGates()
    return inputs, mask, state, mode


class CapturedRecurrence:
    """One captured signature: calling it replays it on new arguments and returns fresh output
    tensors (clones: the next replay overwrites the static ones)."""

    def __init__(self, scan: _Scan, args: tuple[torch.Tensor, ...]):
        self.sig = scan.sig
        self.fields = scan.fields
        self._pending: weakref.ref | None = None  # the autograd node of an unfinished backward
        if self.sig.taped:
            self._taped = self._capture_taped(scan, args)
        else:
            self._forward = self._capture_forward(scan, args)

    @staticmethod
    def supports(device: torch.device) -> bool:
        """Whether inputs on ``device`` can be captured."""
        return device.type == "cuda"

    @staticmethod
    def _capture_taped(scan: _Scan, args):
        samples = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        return torch.cuda.make_graphed_callables(
            scan, samples, num_warmup_iters=WARMUP_CALLS, allow_unused_input=True
        )

    @staticmethod
    def _capture_forward(scan: _Scan, args):
        static_args = tuple(a.detach().clone() for a in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                scan(*static_args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_outputs = scan(*static_args)

        def replay(*new_args):
            for static, arg in zip(static_args, new_args, strict=True):
                static.copy_(arg)
            graph.replay()
            return static_outputs

        return replay

    @property
    def backward_pending(self) -> bool:
        """Whether the last taped replay's backward has yet to run (while its graph lives)."""
        return self._pending is not None and self._pending() is not None

    def __call__(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not self.sig.taped:
            return tuple(o.clone() for o in self._forward(*args))
        outputs = self._taped(*args)
        node = next((o.grad_fn for o in outputs if o.grad_fn is not None), None)
        if node is not None:
            self._pending = weakref.ref(node)
            node.register_hook(self._backward_done)
        return tuple(o.clone() for o in outputs)

    def _backward_done(self, grad_inputs, grad_outputs) -> None:
        self._pending = None


class LayerGraphs:
    """A :class:`~pyro_betalstm.nn.GateLayer`'s captured graphs, by
    :class:`~pyro_betalstm.nn.cuda_graphs.Signature` (see the module docstring).

    ``capture``: the class that captures one signature
    (:class:`~pyro_betalstm.nn.cuda_graphs.CapturedRecurrence`; the tests
    give a CPU stand-in with the same static-buffer rules to check everything but the capture).
    """

    def __init__(
        self,
        layer: GateLayer,
        max_graphs: int = MAX_GRAPHS,
        capture: type[CapturedRecurrence] = CapturedRecurrence,
    ):
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self._layer = weakref.ref(layer)
        self.max_graphs = max_graphs
        self.capture = capture
        #: counts of the layer's calls by how they ran
        #: (:class:`~pyro_betalstm.nn.cuda_graphs.GraphStats`)
        self.stats = GraphStats()
        self._graphs: OrderedDict[Signature, CapturedRecurrence] = OrderedDict()
        self._lengths: set[int] = set()
        self._params: tuple = ()
        self._hooks: list = []
        self._failed: str | None = None

    # A copy of the layer starts with no graphs (they hold the original's buffers and
    # parameters), and none are pickled.
    def __deepcopy__(self, memo):
        layer = self._layer()
        new_layer = memo.get(id(layer), layer)
        return LayerGraphs(new_layer, self.max_graphs, self.capture)

    def __getstate__(self):
        raise TypeError("LayerGraphs are not picklable: save the layer's state_dict")

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every graph (they are recaptured on demand)."""
        had_graphs = bool(self._graphs)
        self._graphs.clear()
        self._lengths.clear()
        if had_graphs:
            _free_dropped_graphs()

    def close(self) -> None:
        """Drop every graph and the gradient hooks on the layer's parameters (the layer no
        longer uses this cache)."""
        self.clear()
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._params = [], ()

    def run(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor | None,
        state: tuple[torch.Tensor, torch.Tensor] | None,
        mode: GateMode,
        record_gates: bool,
        require: bool,
    ) -> dict[str, torch.Tensor] | None:
        """The run's tensors from a graph, by :class:`~pyro_betalstm.nn.LayerRun` field
        (``input_gate`` and ``forget_gate`` for its gates; no ``log_basis`` for a given basis,
        the caller's own), or None where the layer must run eagerly (counted in :attr:`stats`)."""
        layer = self._layer()
        reason = self._eager_reason(layer, inputs, mode, require)
        if reason is not None:
            self.stats.ran_eagerly(reason)
            return None
        self._drop_stale_graphs(layer)
        length = inputs.shape[1]
        padded = self._length_for(length)
        args, has_mask = _arguments(inputs, mask, state, mode, padded)
        sig = self._signature(layer, args, mode, padded, has_mask, state, record_gates)
        graph = self._graphs.get(sig)
        if graph is not None and graph.backward_pending:
            self.stats.ran_eagerly("backward pending")
            return None
        if graph is None:
            graph = self._capture(layer, sig, args, require)
            if graph is None:
                return None
        self._graphs.move_to_end(sig)
        self.stats.replays += 1
        if sig.taped:  # the graph hands back its static gradient buffers: see _fresh_gradient
            args = tuple(_FreshGradient.apply(a) if a.requires_grad else a for a in args)
        with _on_device(sig.device):
            values = dict(zip(graph.fields, graph(args), strict=True))
        if padded != length:  # cut back to the caller's length (views: gradients flow through)
            for name in TIME_FIELDS.intersection(values):
                values[name] = values[name][:, :length]
        return values

    def _eager_reason(self, layer, inputs, mode, require) -> str | None:
        if not self.capture.supports(inputs.device):
            if require:
                raise ValueError(
                    f"recurrence='cuda_graph' needs CUDA inputs, got {inputs.device}: move the "
                    "model and data to a GPU, or use recurrence='auto' (graphs on CUDA, the "
                    "eager loop elsewhere)"
                )
            return "not cuda"
        if self._failed is not None:
            return "capture failed"
        if layer.gate_probe is not None:
            return "gradient probe"
        if _mode_name(mode) is None:
            return f"gate mode {type(mode).__name__}"
        if inputs.is_cuda and torch.cuda.is_current_stream_capturing():
            return "inside another capture"
        return None

    def _drop_stale_graphs(self, layer) -> None:
        """Graphs read the parameters' memory: after ``.to()`` or a reassignment, recapture
        (and hook the parameters that are new, see :func:`_fresh_gradient`)."""
        params = tuple((id(p), p.data_ptr(), p.requires_grad) for p in layer.parameters())
        if params != self._params:
            self.close()
            self._params = params
            self._hooks = [
                p.register_hook(_fresh_gradient) for p in layer.parameters() if p.requires_grad
            ]

    def _length_for(self, length: int) -> int:
        if length in self._lengths or len(self._lengths) < EXACT_LENGTHS:
            return length
        return bucket_length(length)

    def _signature(self, layer, args, mode, padded, has_mask, state, record_gates) -> Signature:
        # the parameters' requires_grad flags, as _drop_stale_graphs just recorded them
        params_need_grad = any(requires_grad for _, _, requires_grad in self._params)
        taped = torch.is_grad_enabled() and (params_need_grad or any(a.requires_grad for a in args))
        inputs = args[0]
        kind = inputs.device.type
        autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        return Signature(
            batch=inputs.shape[0],
            length=padded,
            dtype=inputs.dtype,
            device=inputs.device,
            mode=_mode_name(mode),
            has_mask=has_mask,
            has_state=state is not None,
            taped=taped,
            grads=tuple(bool(taped and a.requires_grad) for a in args),
            training=layer.training,
            record_gates=record_gates,
            autocast=autocast,
        )

    def _capture(self, layer, sig, args, require) -> CapturedRecurrence | None:
        stream = torch.cuda.current_stream(sig.device) if sig.device.type == "cuda" else None
        try:
            with _on_device(sig.device):
                graph = self.capture(_Scan(layer, sig), args)
        except Exception as err:  # also AssertionError, FailOnRecompileLimitHit
            # a failed capture_end leaves torch.cuda.graph's capture stream current
            if stream is not None:
                torch.cuda.set_stream(stream)
            if require:
                raise RuntimeError(
                    f"capturing a CUDA graph of the layer's recurrence failed ({err}); "
                    "recurrence='auto' falls back to the eager loop instead"
                ) from err
            self._failed = str(err)
            warnings.warn(
                f"CUDA-graph capture of the recurrence failed ({err}); this layer runs its eager "
                "loop from now on",
                RuntimeWarning,
                stacklevel=4,
            )
            self.stats.ran_eagerly("capture failed")
            return None
        self.stats.captures += 1
        self._graphs[sig] = graph
        self._lengths.add(sig.length)
        if len(self._graphs) > self.max_graphs:
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
            _free_dropped_graphs()  # once, however many were dropped
        return graph


def _on_device(device: torch.device):
    """Make ``device`` the current CUDA device for a capture or a replay, which use the current
    device's stream (a no-op context for another device type)."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def _free_dropped_graphs() -> None:
    """Free the memory of graphs just dropped. A module given to make_graphed_callables gets a
    forward that refers back to it, a reference cycle: its graph and static buffers would stay
    allocated on the device until Python's cycle collector happened to run."""
    gc.collect()


def _fresh_gradient(grad: torch.Tensor) -> torch.Tensor:
    """A parameter's gradient, copied out of the graph's static buffer.

    :func:`torch.cuda.make_graphed_callables` returns the parameters' gradients as aliases of
    its static buffers, and autograd may keep such a tensor as ``.grad`` itself: the next
    backward replay would then overwrite (or double) an accumulated gradient (pytorch/pytorch
    issue 181723). One copy per parameter per backward keeps ``.grad`` the caller's own."""
    return grad.clone()


class _FreshGradient(torch.autograd.Function):
    """Identity forward; the backward copies the gradient out of the graph's static buffer
    (see :func:`_fresh_gradient`), for an argument that is a leaf a caller reads later."""

    @staticmethod
    def forward(ctx, tensor):
        return tensor.view_as(tensor)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _fresh_gradient(grad)


def _arguments(inputs, mask, state, mode, padded: int) -> tuple[tuple[torch.Tensor, ...], bool]:
    """The graph's tensor arguments, padded to ``padded`` steps (a mask marks the real ones),
    and whether they include a mask."""
    B, T, _ = inputs.shape
    pad = padded - T
    if pad:
        inputs = nn.functional.pad(inputs, (0, 0, 0, pad))
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool, device=inputs.device)
        mask = nn.functional.pad(mask, (0, pad), value=False)
    args = [inputs]
    if mask is not None:
        args.append(mask)
    if state is not None:
        args += list(state)
    if isinstance(mode, GivenBasis):
        basis = mode.log_basis
        args.append(nn.functional.pad(basis, (0, 0, 0, 0, 0, pad)) if pad else basis)
    return tuple(args), mask is not None


__all__ = [
    "EXACT_LENGTHS",
    "MAX_GRAPHS",
    "RECURRENCES",
    "CapturedRecurrence",
    "GraphStats",
    "LayerGraphs",
    "Signature",
    "bucket_length",
    "check_recurrence",
]
