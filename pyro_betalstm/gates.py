"""Gate families: how an LSTM layer turns its gate pre-activations into input and forget gates.

A family is chosen by name (:func:`get_gate_family`):

=========== ================ ========== ==================================================
name        paper name       basis K    input / forget gates
=========== ================ ========== ==================================================
sigmoid     LSTM             --         ``i = s(z_i)``, ``f = s(z_f)``
coupled     CIFG             --         ``i = s(z_i)``, ``f = 1 - i``
gumbel      G2-LSTM          --         ``s((z + noise) / tau)`` while training
beta        BLSTM            4          independent Beta gates (:class:`IndependentBetaGates`)
bivariate   bBLSTM           3          Olkin–Liu bivariate Beta (:class:`BivariateBeta`)
bivariate5  bBLSTM(5G)       5          Arnold–Ng bivariate Beta (:class:`FlexibleBivariateBeta`)
constant    (ablation)       --         ``i = f = 1/2``
prior_noise (ablation)       --         Arnold–Ng gates of ``Gamma(0.5, 1)`` draws while
                                        training, ``1/2`` at evaluation
=========== ================ ========== ==================================================

The output gate is a sigmoid in every family. Latent families produce Gamma concentrations
``alpha = softplus(z) + eps`` (``eps = 1e-3`` as in the authors' code) for a basis of ``K``
Gamma variables per unit; the gates are a deterministic function of the log-basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.functional import softplus

from .distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    GateDistribution,
    IndependentBetaGates,
)
from .distributions._numerics import sample_log_gamma


@dataclass(frozen=True)
class GateFamily:
    """A gate family. ``num_gate_preactivations`` blocks of ``hidden_size`` rows feed the gates."""

    name: str
    paper_name: str
    num_gate_preactivations: int
    distribution: type[GateDistribution] | None = None

    @property
    def is_latent(self) -> bool:
        """Whether the gates are latent variables (a Gamma basis) in the Pyro model."""
        return self.distribution is not None

    @property
    def basis_size(self) -> int:
        return self.distribution.basis_size if self.distribution is not None else 0

    # ----- deterministic families --------------------------------------------------------------
    def deterministic_gates(
        self, z: torch.Tensor, training: bool, basis_offset: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and forget gates from pre-activations ``z`` of shape ``(..., n_pre, H)``.

        ``basis_offset`` is used by ``prior_noise`` alone (its training draws come from
        ``u + basis_offset``, as the latent families' do)."""
        if self.name not in _DETERMINISTIC_GATES:
            raise ValueError(f"gate family {self.name!r} is latent; use the basis methods")
        return _DETERMINISTIC_GATES[self.name](z, training, basis_offset)

    # ----- latent families ---------------------------------------------------------------------
    # Inside the recurrence the basis dimension comes before the unit dimension, (..., K, H), so
    # that each basis element is one contiguous (..., H) slice.
    @staticmethod
    def concentration(z: torch.Tensor) -> torch.Tensor:
        """``alpha = softplus(z) + eps`` for gate pre-activations ``z`` of shape ``(..., K, H)``."""
        return softplus(z) + CONCENTRATION_EPS

    def sample_log_basis(self, alpha: torch.Tensor) -> torch.Tensor:
        """Reparameterised ``log u``, ``u ~ Gamma(alpha, 1)`` elementwise."""
        return sample_log_gamma(alpha)

    def _sums(self, parts, index: tuple[int, ...], log_space: bool):
        total = parts[index[0]]
        for k in index[1:]:
            total = torch.logaddexp(total, parts[k]) if log_space else total + parts[k]
        return total

    def gates_from_log_basis(self, log_basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(i, f)`` from the log-basis ``(..., K, H)``: sigmoids of log-ratios."""
        d, parts = self.distribution, log_basis.unbind(-2)
        logit_i = self._sums(parts, d.input_numerator, True) - self._sums(parts, d.input_rest, True)
        logit_f = self._sums(parts, d.forget_numerator, True) - self._sums(
            parts, d.forget_rest, True
        )
        return torch.sigmoid(logit_i), torch.sigmoid(logit_f)

    def mean_gates(self, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's evaluation gates from alpha ``(..., K, H)``: ratios of summed alphas,
        which are the means of the Beta marginals."""
        d, parts = self.distribution, alpha.unbind(-2)
        num_i, rest_i = (self._sums(parts, idx, False) for idx in (d.input_numerator, d.input_rest))
        num_f, rest_f = (
            self._sums(parts, idx, False) for idx in (d.forget_numerator, d.forget_rest)
        )
        return num_i / (num_i + rest_i), num_f / (num_f + rest_f)


CONCENTRATION_EPS = 1e-3
GUMBEL_NOISE_SCALE = 0.2
GUMBEL_TEMPERATURE = 0.9
#: the Gamma(0.5, 1) prior of the paper, whose draws the ``prior_noise`` family uses as gates
PRIOR_NOISE_CONCENTRATION = 0.5


def offset_log_basis(log_u: torch.Tensor, offset: float) -> torch.Tensor:
    """``log(u + offset)`` from ``log u``, without leaving log space (``log u`` for offset 0)."""
    if not offset:
        return log_u
    return torch.logaddexp(log_u, log_u.new_tensor(offset).log())


def _sigmoid_gates(z, training, basis_offset):
    return torch.sigmoid(z[..., 0, :]), torch.sigmoid(z[..., 1, :])


def _coupled_gates(z, training, basis_offset):
    i = torch.sigmoid(z[..., 0, :])
    return i, 1.0 - i


def _gumbel_gates(z, training, basis_offset):
    if training:
        u = torch.rand_like(z).clamp(1e-6, 1 - 1e-6)
        z = (z + GUMBEL_NOISE_SCALE * (u.log() - torch.log1p(-u))) / GUMBEL_TEMPERATURE
    return torch.sigmoid(z[..., 0, :]), torch.sigmoid(z[..., 1, :])


def _gate_shape(z: torch.Tensor) -> torch.Size:
    return z.shape[:-2] + z.shape[-1:]  # z is (..., 0, H) for the families without inputs


def _constant_gates(z, training, basis_offset):
    half = z.new_full(_gate_shape(z), 0.5)
    return half, half


def _prior_noise_gates(z, training, basis_offset):
    if not training:
        return _constant_gates(z, training, basis_offset)  # the mean of the Arnold–Ng gates
    d = FlexibleBivariateBeta
    shape = z.shape[:-2] + (d.basis_size,) + z.shape[-1:]
    log_u = sample_log_gamma(z.new_full(shape, PRIOR_NOISE_CONCENTRATION))
    return GATE_FAMILIES["bivariate5"].gates_from_log_basis(offset_log_basis(log_u, basis_offset))


_DETERMINISTIC_GATES = {
    "sigmoid": _sigmoid_gates,
    "coupled": _coupled_gates,
    "gumbel": _gumbel_gates,
    "constant": _constant_gates,
    "prior_noise": _prior_noise_gates,
}

GATE_FAMILIES: dict[str, GateFamily] = {
    "sigmoid": GateFamily("sigmoid", "LSTM", 2),
    "coupled": GateFamily("coupled", "CIFG", 1),
    "gumbel": GateFamily("gumbel", "G2-LSTM", 2),
    "beta": GateFamily("beta", "BLSTM", 4, IndependentBetaGates),
    "bivariate": GateFamily("bivariate", "bBLSTM", 3, BivariateBeta),
    "bivariate5": GateFamily("bivariate5", "bBLSTM(5G)", 5, FlexibleBivariateBeta),
    # Ablations of bBLSTM(5G+p) whose gate posterior has collapsed onto the prior: its test-time
    # gates (i = f = 1/2), and its training gates without a guide (Gamma(0.5, 1) draws mapped by
    # the Arnold–Ng family, 1/2 at evaluation). Neither has gate pre-activations.
    "constant": GateFamily("constant", "constant gates (1/2)", 0),
    "prior_noise": GateFamily("prior_noise", "Gamma(0.5, 1) prior-noise gates", 0),
}


def get_gate_family(name: str | GateFamily) -> GateFamily:
    """Look a gate family up by name; raises ``ValueError`` listing the known names."""
    if isinstance(name, GateFamily):
        return name
    try:
        return GATE_FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown gate family {name!r}; expected one of {sorted(GATE_FAMILIES)}"
        ) from None
