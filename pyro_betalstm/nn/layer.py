"""One LSTM layer whose input and forget gates come from a gate family, run over a sequence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..gates import GateFamily
from .cuda_graphs import MAX_GRAPHS, LayerGraphs, check_recurrence
from .gate_modes import GateMode, GateModeName, GivenBasis, as_gate_mode
from .step import StepFunctions

#: ``probe(t, z_gate, i, f, valid)`` sees each step's gate pre-activations ``(B, n_pre, H)``,
#: gates ``(B, H)`` and valid-row mask ``(B,)`` (or None) while a gradient is being taped.
GateProbe = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]


@dataclass
class LayerRun:
    """What one pass of a layer over a batch of sequences produced (batch first).

    ``outputs``: ``(B, T, H)``, zero at padded steps. ``alpha`` and ``log_basis``:
    ``(B, T, H, K)`` for latent families (``log_basis`` is None in ``mean`` mode), else None.
    ``h_n``, ``c_n``: ``(B, H)`` states at each sequence's last valid step. ``gates`` (input,
    forget) and ``cell_states`` ``(B, T, H)``: kept only when the layer ran with
    ``record_gates=True`` (the cell state stays unchanged at padded steps).
    """

    inputs: torch.Tensor
    outputs: torch.Tensor
    h_n: torch.Tensor
    c_n: torch.Tensor
    h_0: torch.Tensor
    alpha: torch.Tensor | None = None
    log_basis: torch.Tensor | None = None
    gates: tuple[torch.Tensor, torch.Tensor] | None = None
    cell_states: torch.Tensor | None = None

    @property
    def previous_hidden(self) -> torch.Tensor:
        """``h_{t-1}`` for every step ``t``, ``(B, T, H)``: the context of the gate network."""
        return torch.cat([self.h_0.unsqueeze(1), self.outputs[:, :-1]], dim=1)

    def arrays(self, names: tuple[str, ...]) -> tuple[torch.Tensor | None, ...]:
        """The named arrays: :data:`LAYER_ARRAYS` names (``input_gate``...) or fields."""
        return tuple(
            LAYER_ARRAYS[n](self) if n in LAYER_ARRAYS else getattr(self, n) for n in names
        )


#: The per-layer arrays :func:`stack_layers` can gather, and the :class:`LayerRun` field of each.
LAYER_ARRAYS = {
    "input_gate": lambda run: None if run.gates is None else run.gates[0],
    "forget_gate": lambda run: None if run.gates is None else run.gates[1],
    "alpha": lambda run: run.alpha,
    "log_basis": lambda run: run.log_basis,
}


def stack_layers(
    runs: list[LayerRun], names: tuple[str, ...] = tuple(LAYER_ARRAYS)
) -> dict[str, torch.Tensor]:
    """The runs' arrays with a layer dimension after time: gates ``(B, T, L, H)``, ``alpha`` and
    ``log_basis`` ``(B, T, L, H, K)``. ``names`` picks from :data:`LAYER_ARRAYS`; an array that
    the runs do not have (gates not recorded, a deterministic family's basis) is left out."""
    out = {}
    for name in names:
        arrays = [LAYER_ARRAYS[name](run) for run in runs]
        if arrays and arrays[0] is not None:
            out[name] = torch.stack(arrays, dim=2)
    return out


class GateLayer(nn.Module):
    """LSTM layer: one fused input projection for all steps, one hidden projection per step.

    Pre-activation blocks, each ``hidden_size`` rows, are ordered ``[gate blocks..., g, o]``;
    for the ``sigmoid`` family that is ``[i, f, g, o]``, the order of ``torch.nn.LSTM``.

    ``recurrence`` (:meth:`set_recurrence`): ``"eager"`` runs the Python loop of
    :meth:`run_eager`; ``"cuda_graph"`` and ``"auto"`` (the default) replay CUDA graphs of that
    loop (:mod:`~pyro_betalstm.nn.cuda_graphs`), ``"auto"`` only for CUDA inputs (the loop runs
    for any other). ``compile_cell``:
    each step's elementwise work through ``torch.compile`` (:mod:`~pyro_betalstm.nn.step`),
    with either recurrence.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        family: GateFamily,
        bias: bool = True,
        basis_offset: float = 0.0,
        recurrence: str = "auto",
        compile_cell: bool = False,
    ):
        super().__init__()
        #: drawn gates come from ``u + basis_offset`` (see :class:`StochasticLSTM`)
        self.basis_offset = float(basis_offset)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.family = family
        self.num_blocks = family.num_gate_preactivations + 2
        self.input_proj = nn.Linear(input_size, self.num_blocks * hidden_size, bias=bias)
        self.hidden_proj = nn.Linear(hidden_size, self.num_blocks * hidden_size, bias=False)
        bound = hidden_size**-0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)  # torch.nn.LSTM's initialisation
        #: set by :class:`~pyro_betalstm.nn.gradient_probe.GateGradientProbe`; None: no probe.
        self.gate_probe: GateProbe | None = None
        self.graphs: LayerGraphs | None = None
        #: the most graphs a CUDA-graph recurrence keeps; remembered while eager too, so that
        #: ``set_recurrence`` without ``max_graphs`` keeps it
        self.max_graphs = MAX_GRAPHS
        self.set_recurrence(recurrence, compile_cell=compile_cell)

    def set_recurrence(
        self,
        recurrence: str,
        max_graphs: int | None = None,
        compile_cell: bool | None = None,
    ) -> None:
        """Run the recurrence eagerly or from CUDA graphs, each step's elementwise work plain
        or compiled (see the class docstring); drops any graphs captured so far.
        ``max_graphs`` or ``compile_cell`` None (the default) keeps the layer's current
        setting: a call that changes the recurrence changes nothing else."""
        self.recurrence = check_recurrence(recurrence)
        max_graphs = self.max_graphs if max_graphs is None else max_graphs
        compile_cell = self.compile_cell if compile_cell is None else bool(compile_cell)
        if self.graphs is not None:
            self.graphs.close()
        self.graphs = None if recurrence == "eager" else LayerGraphs(self, max_graphs)
        self.max_graphs = max_graphs
        self.step_functions = StepFunctions(self.family, self.basis_offset, compile_cell)

    @property
    def compile_cell(self) -> bool:
        """Whether each step's elementwise work runs through ``torch.compile``."""
        return self.step_functions.compiled

    def extra_repr(self) -> str:
        parts = [f"recurrence={self.recurrence!r}"] if self.recurrence != "auto" else []
        return ", ".join(parts + (["compile_cell=True"] if self.compile_cell else []))

    def forward(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        mode: GateModeName | GateMode = "sample",
        record_gates: bool = False,
    ) -> LayerRun:
        """Run over ``inputs`` ``(B, T, input_size)``; ``mask`` ``(B, T)`` marks valid steps.

        ``mode`` (see :mod:`~pyro_betalstm.nn.gate_modes`) says where a latent family's basis
        comes from: ``"sample"`` (:class:`SampledBasis`), ``"mean"`` (:class:`MeanGates`),
        :class:`GivenBasis` or :class:`PriorBasis`. Deterministic families ignore it.
        """
        mode = as_gate_mode(mode)
        if self.graphs is not None:
            require = self.recurrence == "cuda_graph"
            values = self.graphs.run(inputs, mask, state, mode, record_gates, require)
            if values is not None:
                return _run_from_graph(values, inputs, state, mode, record_gates)
        return self.run_eager(inputs, mask, state, mode, record_gates)

    def run_eager(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor | None,
        state: tuple[torch.Tensor, torch.Tensor] | None,
        mode: GateMode,
        record_gates: bool = False,
    ) -> LayerRun:
        """:meth:`forward` as a Python loop over the steps: the reference path, and what a
        CUDA graph captures."""
        B, T, _ = inputs.shape
        H, fam = self.hidden_size, self.family
        ng = fam.num_gate_preactivations
        h, c = (inputs.new_zeros(B, H), inputs.new_zeros(B, H)) if state is None else state
        h_0 = h
        # unbind, not x_proj[:, t]: each select's backward would zero-fill the whole tensor
        x_steps = self.input_proj(inputs).unbind(1)
        w_h = self.hidden_proj.weight.t()
        outputs, alphas, log_bases, i_gates, f_gates, cells = [], [], [], [], [], []
        step = self.step_functions
        for t in range(T):
            z = torch.addmm(x_steps[t], h, w_h).view(B, self.num_blocks, H)
            # split, not z[:, k] per block: the backward is then one cat, not a full-size zero
            # fill per block. z_gate is one view, so a probe's hook sees the gates' gradient.
            z_gate, z_cell, z_out = z.split((ng, 1, 1), dim=1)
            g, o = z_cell.squeeze(1), z_out.squeeze(1)
            m = None if mask is None else mask[:, t, None]
            if fam.is_latent:
                alpha = step.concentration(z_gate)  # (B, K, H): the step layout of the basis
                alphas.append(alpha)
                log_u = mode.step_log_basis(fam, t, alpha, inputs, h)
                if log_u is None:
                    h_new, c, out, i, f = step.from_mean(alpha, g, o, h, c, m)
                else:
                    log_bases.append(log_u)
                    h_new, c, out, i, f = step.from_basis(log_u, g, o, h, c, m)
            else:
                h_new, c, out, i, f = step.deterministic(z_gate, g, o, h, c, m, self.training)
            if self.gate_probe is not None and z_gate.requires_grad:
                self.gate_probe(t, z_gate, i, f, None if mask is None else mask[:, t])
            h = h_new
            outputs.append(out)
            if record_gates:
                i_gates.append(i)
                f_gates.append(f)
                cells.append(c)
        stack = lambda xs: torch.stack(xs, dim=1) if xs else None  # noqa: E731
        return LayerRun(
            inputs=inputs,
            outputs=torch.stack(outputs, dim=1),
            h_n=h,
            c_n=c,
            h_0=h_0,
            alpha=torch.stack(alphas, dim=1).transpose(-1, -2) if alphas else None,
            log_basis=mode.run_log_basis(log_bases),
            gates=(stack(i_gates), stack(f_gates)) if record_gates else None,
            cell_states=stack(cells) if record_gates else None,
        )


def set_recurrence(
    module: nn.Module,
    recurrence: str,
    max_graphs: int | None = None,
    compile_cell: bool | None = None,
) -> nn.Module:
    """Set how every :class:`GateLayer` inside ``module`` (a model, say) runs its recurrence:
    ``"eager"``, ``"auto"`` or ``"cuda_graph"`` (:mod:`~pyro_betalstm.nn.cuda_graphs`), and
    whether each step's elementwise work is compiled (:mod:`~pyro_betalstm.nn.step`); returns
    ``module``. ``max_graphs`` or ``compile_cell`` None (the default) keeps each layer's own
    setting."""
    check_recurrence(recurrence)
    for layer in module.modules():
        if isinstance(layer, GateLayer):
            layer.set_recurrence(recurrence, max_graphs, compile_cell)
    return module


def _run_from_graph(values, inputs, state, mode, record_gates) -> LayerRun:
    """A :class:`LayerRun` from the tensors a graph returned (see :meth:`LayerGraphs.run`)."""
    h_0 = state[0] if state is not None else values["h_n"].new_zeros(values["h_n"].shape)
    given = mode.log_basis if isinstance(mode, GivenBasis) else None
    return LayerRun(
        inputs=inputs,
        outputs=values["outputs"],
        h_n=values["h_n"],
        c_n=values["c_n"],
        h_0=h_0,
        alpha=values.get("alpha"),
        log_basis=given if given is not None else values.get("log_basis"),
        gates=(values["input_gate"], values["forget_gate"]) if record_gates else None,
        cell_states=values.get("cell_states"),
    )
