"""Gate families: how an LSTM layer turns its gate pre-activations into input and forget gates.

A family is chosen by name from one registry, :data:`GATE_FAMILIES` (:func:`get_gate_family`):

=========== ================ ========== ==================================================
name        paper name       basis K    input / forget gates
=========== ================ ========== ==================================================
sigmoid     LSTM             --         ``i = s(z_i)``, ``f = s(z_f)``
coupled     CIFG             --         ``i = s(z_i)``, ``f = 1 - i``
gumbel      G2-LSTM          --         ``s((z + noise) / tau)`` while training
beta        BLSTM            4          independent Beta gates
                                        (:class:`~pyro_betalstm.distributions.IndependentBetaGates`)
bivariate   bBLSTM           3          Olkin–Liu bivariate Beta
                                        (:class:`~pyro_betalstm.distributions.BivariateBeta`)
bivariate5  bBLSTM(5G)       5          Arnold–Ng bivariate Beta
                                        (:class:`~pyro_betalstm.distributions.FlexibleBivariateBeta`)
constant    (ablation)       --         ``i = f = 1/2``
prior_noise (ablation)       --         Arnold–Ng gates of ``Gamma(0.5, 1)`` draws while
                                        training, ``1/2`` at evaluation
=========== ================ ========== ==================================================

The output gate is a sigmoid in every family. A :class:`LatentGateFamily` produces Gamma
concentrations ``alpha = softplus(z) + eps`` (``eps = 1e-3`` as in the authors' code) for a
basis of ``K`` Gamma variables per unit, and its gates are its distribution's gate algebra
(:mod:`pyro_betalstm.distributions.gate_algebra`, which also documents the basis layout) applied
to the log-basis. A :class:`DeterministicGateFamily` is a small strategy object that maps the
pre-activations to gates directly. To add a family, subclass one of the two and
:func:`register_gate_family` an instance.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn.functional import softplus

from .distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    GateDistribution,
    IndependentBetaGates,
)
from .distributions.gate_algebra import BASIS_DIM, STEP_BASIS_DIM, GammaRatioGates, GatePair
from .distributions.numerics import sample_log_gamma

CONCENTRATION_EPS = 1e-3
GUMBEL_NOISE_SCALE = 0.2
GUMBEL_TEMPERATURE = 0.9
#: the Gamma(0.5, 1) prior of the paper, whose draws the ``prior_noise`` family uses as gates
PRIOR_NOISE_CONCENTRATION = 0.5


@dataclass(frozen=True)
class GateFamily(ABC):
    """A gate family. ``num_gate_preactivations`` blocks of ``hidden_size`` rows feed the gates."""

    name: str
    paper_name: str
    num_gate_preactivations: int

    #: whether the gates are latent variables (a Gamma basis) in the Pyro model
    is_latent: ClassVar[bool]

    @property
    def basis_size(self) -> int:
        """``K``, the Gamma variables per gate pair (0 for a deterministic family)."""
        return 0


@dataclass(frozen=True)
class LatentGateFamily(GateFamily):
    """Gates that are a deterministic function of a latent Gamma basis, the law of ``distribution``.

    In the recurrence a step's basis tensors are ``(B, K, H)`` (``basis_dim=STEP_BASIS_DIM`` of
    the gate algebra); :class:`~pyro_betalstm.nn.LayerRun` stores them as ``(B, T, H, K)``.
    """

    distribution: type[GateDistribution]
    is_latent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        # one pre-activation per basis variable: any other count only fails at the first
        # forward pass, in a message about the basis layout
        if self.num_gate_preactivations != self.distribution.algebra.basis_size:
            raise ValueError(
                f"gate family {self.name!r}: num_gate_preactivations must be the basis size of "
                f"{self.distribution.__name__} ({self.distribution.algebra.basis_size}: one "
                f"pre-activation per Gamma variable), got {self.num_gate_preactivations}"
            )

    @property
    def algebra(self) -> GammaRatioGates:
        """The family's gate map (the distribution's): log-basis or concentrations -> gates."""
        return self.distribution.algebra

    @property
    def basis_size(self) -> int:
        return self.algebra.basis_size

    @staticmethod
    def concentration(z: torch.Tensor) -> torch.Tensor:
        """``alpha = softplus(z) + eps`` for gate pre-activations ``z`` (elementwise)."""
        return softplus(z) + CONCENTRATION_EPS

    def gates_from_log_basis(self, log_basis: torch.Tensor, basis_dim: int = BASIS_DIM) -> GatePair:
        """``(input, forget)`` gates of a log-basis in the stored layout ``(..., K)`` (a gate
        site's value, ``Predictive``'s draws ``(draw, B, T, H, K)``, ``LayerRun.log_basis``):
        ``algebra.gates``, which raises ValueError on any other layout."""
        return self.algebra.gates(log_basis, basis_dim)

    @staticmethod
    def sample_log_basis(alpha: torch.Tensor) -> torch.Tensor:
        """Reparameterised ``log u``, ``u ~ Gamma(alpha, 1)`` elementwise."""
        return sample_log_gamma(alpha)


@dataclass(frozen=True)
class DeterministicGateFamily(GateFamily):
    """Gates computed from the pre-activations alone; no latent variable, no prior."""

    is_latent: ClassVar[bool] = False
    #: whether the gates draw random numbers while training (then a compiled step, see
    #: :mod:`pyro_betalstm.nn.step`, leaves the training steps eager)
    draws_in_training: ClassVar[bool] = False

    @abstractmethod
    def gates_from_preactivations(
        self, z: torch.Tensor, training: bool, basis_offset: float = 0.0
    ) -> GatePair:
        """Input and forget gates ``(..., H)`` from pre-activations ``z`` ``(..., n_pre, H)``.

        ``basis_offset`` matters only to families that draw a Gamma basis (``prior_noise``,
        whose training draws come from ``u + basis_offset``, as the latent families' do)."""


def offset_log_basis(log_u: torch.Tensor, offset: float) -> torch.Tensor:
    """``log(u + offset)`` from ``log u``, without leaving log space (``log u`` for offset 0)."""
    if not offset:
        return log_u
    # a fill on log_u's device, not new_tensor: that is a host-to-device copy (see
    # sample_log_gamma); log(offset) rounded in float64 then cast, as new_tensor(offset).log()
    # is not, so the two differ in the last bit at most
    return torch.logaddexp(log_u, log_u.new_full((), math.log(offset)))


def _unit_shape(z: torch.Tensor) -> torch.Size:
    return z.shape[:-2] + z.shape[-1:]  # z is (..., 0, H) for the families without inputs


@dataclass(frozen=True)
class SigmoidGates(DeterministicGateFamily):
    """The LSTM's gates: ``i = sigmoid(z_i)``, ``f = sigmoid(z_f)``."""

    def gates_from_preactivations(self, z, training, basis_offset=0.0):
        # one sigmoid over both blocks, unbound: one kernel and one backward node fewer per
        # step than two, and no full-size zero fill per gate in the backward (8% of a step)
        return GatePair(*torch.sigmoid(z[..., :2, :]).unbind(-2))


@dataclass(frozen=True)
class CoupledGates(DeterministicGateFamily):
    """CIFG: ``i = sigmoid(z_i)`` and ``f = 1 - i``."""

    def gates_from_preactivations(self, z, training, basis_offset=0.0):
        i = torch.sigmoid(z[..., 0, :])
        return GatePair(i, 1.0 - i)


@dataclass(frozen=True)
class GumbelGates(DeterministicGateFamily):
    """G2-LSTM: sigmoid gates of logistic-noised, tempered pre-activations while training."""

    draws_in_training: ClassVar[bool] = True

    noise_scale: float = GUMBEL_NOISE_SCALE
    temperature: float = GUMBEL_TEMPERATURE

    def gates_from_preactivations(self, z, training, basis_offset=0.0):
        if training:
            u = torch.rand_like(z).clamp(1e-6, 1 - 1e-6)
            z = (z + self.noise_scale * (u.log() - torch.log1p(-u))) / self.temperature
        return GatePair(*torch.sigmoid(z).unbind(-2))  # one kernel for both (as SigmoidGates)


@dataclass(frozen=True)
class ConstantGates(DeterministicGateFamily):
    """``i = f = 1/2`` (the test-time gates of a gate posterior collapsed onto the prior)."""

    def gates_from_preactivations(self, z, training, basis_offset=0.0):
        half = z.new_full(_unit_shape(z), 0.5)
        return GatePair(half, half)


@dataclass(frozen=True)
class PriorNoiseGates(DeterministicGateFamily):
    """Gates of ``distribution`` from ``Gamma(concentration, 1)`` basis draws while training
    (no guide: the prior's draws), and its mean ``1/2`` at evaluation."""

    draws_in_training: ClassVar[bool] = True
    distribution: type[GateDistribution] = FlexibleBivariateBeta
    concentration: float = PRIOR_NOISE_CONCENTRATION

    def gates_from_preactivations(self, z, training, basis_offset=0.0):
        if not training:  # the mean of the symmetric gates
            half = z.new_full(_unit_shape(z), 0.5)
            return GatePair(half, half)
        algebra = self.distribution.algebra
        shape = z.shape[:-2] + (algebra.basis_size,) + z.shape[-1:]
        log_u = sample_log_gamma(z.new_full(shape, self.concentration))
        return algebra.gates(offset_log_basis(log_u, basis_offset), STEP_BASIS_DIM)


#: Every registered gate family by its name (see :func:`register_gate_family` and
#: :func:`get_gate_family`).
GATE_FAMILIES: dict[str, GateFamily] = {}
#: The names of the package's own families, which no registration may replace (set below,
#: once they are registered).
BUILT_IN_FAMILIES: frozenset[str] = frozenset()


def register_gate_family(family: GateFamily, replace: bool = False) -> GateFamily:
    """Add ``family`` to :data:`GATE_FAMILIES` under its name; returns it.

    A name already registered is refused (``ValueError``) unless ``replace=True``, which puts
    ``family`` in its place: for a notebook cell that defines and registers a family and is
    run again. Models already built keep the family they were built with. A built-in name
    (:data:`BUILT_IN_FAMILIES`) is never replaced.

    Every registered family is picked up by the test battery of :mod:`pyro_betalstm.testing`,
    which fails until the family has a test case there."""
    if not isinstance(family, LatentGateFamily | DeterministicGateFamily):
        raise TypeError(
            "a gate family is a LatentGateFamily or a DeterministicGateFamily, got "
            f"{type(family).__name__}"
        )
    if family.name in BUILT_IN_FAMILIES:
        raise ValueError(
            f"gate family {family.name!r} is built in and cannot be replaced; register yours "
            "under another name"
        )
    if family.name in GATE_FAMILIES and not replace:
        raise ValueError(
            f"gate family {family.name!r} is already registered (replace=True puts the new "
            "one in its place)"
        )
    GATE_FAMILIES[family.name] = family
    return family


for _family in (
    SigmoidGates("sigmoid", "LSTM", 2),
    CoupledGates("coupled", "CIFG", 1),
    GumbelGates("gumbel", "G2-LSTM", 2),
    LatentGateFamily("beta", "BLSTM", 4, IndependentBetaGates),
    LatentGateFamily("bivariate", "bBLSTM", 3, BivariateBeta),
    LatentGateFamily("bivariate5", "bBLSTM(5G)", 5, FlexibleBivariateBeta),
    # Ablations of bBLSTM(5G+p) whose gate posterior has collapsed onto the prior: its test-time
    # gates (i = f = 1/2), and its training gates without a guide (Gamma(0.5, 1) draws mapped by
    # the Arnold–Ng family, 1/2 at evaluation). Neither has gate pre-activations.
    ConstantGates("constant", "constant gates (1/2)", 0),
    PriorNoiseGates("prior_noise", "Gamma(0.5, 1) prior-noise gates", 0),
):
    register_gate_family(_family)
del _family
BUILT_IN_FAMILIES = frozenset(GATE_FAMILIES)


def get_gate_family(name: str | GateFamily) -> GateFamily:
    """Look a gate family up by name; raises ``ValueError`` listing the known names."""
    if isinstance(name, GateFamily):
        return name
    try:
        return GATE_FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown gate family {name!r}; expected one of {sorted(GATE_FAMILIES)} (a family "
            "of your own is added by register_gate_family; the example scripts take its "
            "module with --import MODULE)"
        ) from None
