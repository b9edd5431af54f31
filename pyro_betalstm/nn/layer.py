"""One LSTM layer whose input and forget gates come from a gate family, run over a sequence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..gates import GateFamily, offset_log_basis

GateMode = Literal["sample", "mean", "given", "prior"]
#: ``probe(t, z_gate, i, f, valid)`` sees each step's gate pre-activations ``(B, n_pre, H)``,
#: gates ``(B, H)`` and valid-row mask ``(B,)`` (or None) while a gradient is being taped.
GateProbe = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]
#: ``sampler(t, x_t, h_prev) -> log_basis_t`` draws the basis at step ``t`` in ``prior`` mode.
BasisSampler = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LayerRun:
    """What one pass of a layer over a batch of sequences produced (batch first).

    ``outputs``: ``(B, T, H)``, zero at padded steps. ``alpha`` and ``log_basis``:
    ``(B, T, H, K)`` for latent families (``log_basis`` is None in ``mean`` mode), else None.
    ``h_n``, ``c_n``: ``(B, H)`` states at each sequence's last valid step.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor
    h_n: torch.Tensor
    c_n: torch.Tensor
    h_0: torch.Tensor
    alpha: torch.Tensor | None = None
    log_basis: torch.Tensor | None = None
    gates: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def previous_hidden(self) -> torch.Tensor:
        """``h_{t-1}`` for every step ``t``, ``(B, T, H)``: the context of the gate network."""
        return torch.cat([self.h_0.unsqueeze(1), self.outputs[:, :-1]], dim=1)


class GateLayer(nn.Module):
    """LSTM layer: one fused input projection for all steps, one hidden projection per step.

    Pre-activation blocks, each ``hidden_size`` rows, are ordered ``[gate blocks..., g, o]``;
    for the ``sigmoid`` family that is ``[i, f, g, o]``, the order of ``torch.nn.LSTM``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        family: GateFamily,
        bias: bool = True,
        basis_offset: float = 0.0,
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

    def forward(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        mode: GateMode = "sample",
        log_basis: torch.Tensor | None = None,
        record_gates: bool = False,
        sampler: BasisSampler | None = None,
    ) -> LayerRun:
        """Run over ``inputs`` ``(B, T, input_size)``; ``mask`` ``(B, T)`` marks valid steps.

        ``mode``: ``sample`` draws the latent basis from ``Gamma(alpha, 1)`` (reparameterised),
        ``mean`` uses the paper's mean gates, ``given`` uses ``log_basis`` ``(B, T, H, K)``,
        ``prior`` asks ``sampler`` for each step's basis. Deterministic families ignore ``mode``.
        """
        B, T, _ = inputs.shape
        H, fam = self.hidden_size, self.family
        ng = fam.num_gate_preactivations
        if state is None:
            h = inputs.new_zeros(B, H)
            c = inputs.new_zeros(B, H)
        else:
            h, c = state
        h_0 = h
        nb = self.num_blocks
        # unbind, not x_proj[:, t]: each select's backward would zero-fill the whole tensor
        x_steps = self.input_proj(inputs).unbind(1)
        # the basis is (B, K, H) inside the loop and (B, T, H, K) outside
        given_steps = log_basis.transpose(-1, -2).unbind(1) if mode == "given" else None
        w_h = self.hidden_proj.weight.t()
        outputs, alphas, log_bases, i_gates, f_gates = [], [], [], [], []
        for t in range(T):
            z = torch.addmm(x_steps[t], h, w_h).view(B, nb, H)
            z_gate = z[:, :ng]  # one view, so that a probe's hook sees the gradient the gates use
            if fam.is_latent:
                alpha = fam.concentration(z_gate)
                alphas.append(alpha)
                if mode == "mean":
                    i, f = fam.mean_gates(alpha)
                else:
                    if mode == "sample":
                        log_u = fam.sample_log_basis(alpha)
                    elif mode == "given":
                        log_u = given_steps[t]
                    else:
                        log_u = sampler(t, inputs[:, t], h).transpose(-1, -2)
                    log_bases.append(log_u)
                    i, f = fam.gates_from_log_basis(offset_log_basis(log_u, self.basis_offset))
                g, o = z[:, ng], z[:, ng + 1]
            else:
                i, f = fam.deterministic_gates(z_gate, self.training, self.basis_offset)
                g, o = z[:, ng], z[:, ng + 1]
            if self.gate_probe is not None and z_gate.requires_grad:
                self.gate_probe(t, z_gate, i, f, None if mask is None else mask[:, t])
            c_new = torch.addcmul(i * torch.tanh(g), f, c)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            if mask is not None:
                m = mask[:, t, None]
                c = torch.where(m, c_new, c)
                h = torch.where(m, h_new, h)
                outputs.append(h_new * m)
            else:
                c, h = c_new, h_new
                outputs.append(h)
            if record_gates:
                i_gates.append(i)
                f_gates.append(f)
        stack = lambda xs: torch.stack(xs, dim=1) if xs else None  # noqa: E731
        basis_stack = lambda xs: torch.stack(xs, dim=1).transpose(-1, -2) if xs else None  # noqa: E731
        return LayerRun(
            inputs=inputs,
            outputs=torch.stack(outputs, dim=1),
            h_n=h,
            c_n=c,
            h_0=h_0,
            alpha=basis_stack(alphas),
            log_basis=log_basis if mode == "given" else basis_stack(log_bases),
            gates=(stack(i_gates), stack(f_gates)) if record_gates else None,
        )
