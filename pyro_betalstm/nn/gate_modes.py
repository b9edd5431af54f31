"""Where a latent gate family's basis comes from at each step of a layer's recurrence.

A :class:`~pyro_betalstm.nn.GateLayer` asks its mode for each step's log-basis ``(B, K, H)``
(the step layout of :mod:`pyro_betalstm.distributions.gate_algebra`): :class:`SampledBasis`
draws it from ``Gamma(alpha_t, 1)``, :class:`GivenBasis` reads it from a tensor, and
:class:`PriorBasis` asks a sampler; :class:`MeanGates` has none and the layer uses the paper's
mean gates. Deterministic gate families ignore the mode. The strings ``"sample"`` and ``"mean"``
name the two modes that need no argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..gates import LatentGateFamily

#: ``sampler(t, x_t, h_prev) -> log_basis_t`` ``(B, H, K)`` draws the basis at step ``t``.
BasisSampler = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
GateModeName = Literal["sample", "mean", "given", "prior"]


class GateMode:
    """Base class: the log-basis of step ``t``, or None for the mean gates."""

    def step_log_basis(
        self,
        family: LatentGateFamily,
        t: int,
        alpha: torch.Tensor,
        inputs: torch.Tensor,
        h_prev: torch.Tensor,
    ) -> torch.Tensor | None:
        """``log u_t`` ``(B, K, H)`` given the step's concentrations ``alpha`` ``(B, K, H)``,
        the layer's ``inputs`` ``(B, T, D)`` and ``h_{t-1}`` ``(B, H)``."""
        raise NotImplementedError

    def run_log_basis(self, steps: list[torch.Tensor]) -> torch.Tensor | None:
        """The run's log-basis ``(B, T, H, K)`` from the steps' ``(B, K, H)`` (None if none)."""
        return torch.stack(steps, dim=1).transpose(-1, -2) if steps else None


class SampledBasis(GateMode):
    """Reparameterised draws ``u_t ~ Gamma(alpha_t, 1)``: the guide's law (``"sample"``)."""

    def step_log_basis(self, family, t, alpha, inputs, h_prev):
        return family.sample_log_basis(alpha)


class MeanGates(GateMode):
    """No basis: the gates are the means of their Beta marginals, the paper's evaluation
    (``"mean"``)."""

    def step_log_basis(self, family, t, alpha, inputs, h_prev):
        return None


class GivenBasis(GateMode):
    """The basis ``log_basis`` ``(B, T, H, K)`` given by the caller (a gate site's value); the
    run keeps that very tensor as its ``log_basis``."""

    def __init__(self, log_basis: torch.Tensor):
        if not isinstance(log_basis, torch.Tensor) or log_basis.dim() != 4:
            shape = tuple(getattr(log_basis, "shape", ()))
            raise ValueError(f"log_basis must be a (B, T, H, K) tensor, got shape {shape}")
        self.log_basis = log_basis
        self._steps = log_basis.transpose(-1, -2).unbind(1)

    def step_log_basis(self, family, t, alpha, inputs, h_prev):
        return self._steps[t]

    def run_log_basis(self, steps):
        return self.log_basis


class PriorBasis(GateMode):
    """Each step's basis from ``sampler(t, x_t, h_{t-1})`` ``(B, H, K)``: a draw from the prior."""

    def __init__(self, sampler: BasisSampler):
        self.sampler = sampler

    def step_log_basis(self, family, t, alpha, inputs, h_prev):
        return self.sampler(t, inputs[:, t], h_prev).transpose(-1, -2)


def as_gate_mode(mode: GateModeName | GateMode) -> GateMode:
    """A :class:`GateMode` for ``mode`` (one, or the name of one that needs no argument)."""
    if isinstance(mode, GateMode):
        return mode
    if mode == "sample":
        return SampledBasis()
    if mode == "mean":
        return MeanGates()
    if mode == "given":
        raise ValueError("gate mode 'given' needs the basis: pass GivenBasis(log_basis)")
    if mode == "prior":
        raise ValueError("gate mode 'prior' needs a sampler: pass PriorBasis(sampler)")
    raise ValueError(
        f"unknown gate mode {mode!r}; expected 'sample', 'mean' or a GateMode "
        "(SampledBasis, MeanGates, GivenBasis, PriorBasis)"
    )
