"""The gate algebra, written once: a Gamma basis -> (input gate, forget gate).

Every latent gate family (:class:`~pyro_betalstm.distributions.IndependentBetaGates`,
:class:`~pyro_betalstm.distributions.BivariateBeta`,
:class:`~pyro_betalstm.distributions.FlexibleBivariateBeta`) is a :class:`GammaRatioGates`: a
basis of ``K`` independent :math:`u_k \\sim \\mathrm{Gamma}(\\alpha_k, 1)` and four index sets,
with :math:`i = N_i / (N_i + D_i)` and :math:`f = N_f / (N_f + D_f)` for the sums :math:`N, D`
of the basis variables in each set. The distributions and the recurrence (:mod:`pyro_betalstm.nn`)
both call this module, so that the gates of a network and of its distribution are one map.

**Layout of a basis tensor.** A basis tensor (concentrations ``alpha`` or a log-basis
``log u``) holds the ``K`` Gamma variables of one gate pair along one dimension, the *basis
dimension*, in the family's order ``k = 0 .. K-1`` (the order of :math:`u_1 .. u_K` in each
distribution's docstring). The basis dimension is the last one, :data:`BASIS_DIM`, everywhere a
basis tensor is stored or passed between modules: a distribution's ``concentration`` ``(..., K)``,
a gate site's value and :class:`~pyro_betalstm.nn.LayerRun`'s ``alpha`` and ``log_basis``
``(B, T, H, K)``. One exception, inside the recurrence's step loop: a step's basis is
``(B, K, H)``, :data:`STEP_BASIS_DIM`, because the ``K`` pre-activation blocks come out of the
fused projection in that order and each basis variable is then one contiguous ``(B, H)`` slice
(the Gamma draws depend on that shape, so it is kept). Callers state the layout by passing
``basis_dim``; a tensor whose basis dimension does not have ``K`` entries raises ValueError.

Every map returns a :class:`GatePair` ``(input, forget)``; :meth:`GatePair.stacked` gives the
``(..., 2)`` value layout of the distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

#: The basis dimension of every stored or exchanged basis tensor: ``(..., K)``.
BASIS_DIM = -1
#: The basis dimension of one step's basis inside the recurrence: ``(B, K, H)``.
STEP_BASIS_DIM = -2


class GatePair(NamedTuple):
    """An (input gate, forget gate) pair of equally shaped tensors (or their logits)."""

    input: torch.Tensor
    forget: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """The pair as one tensor ``(..., 2)``: ``[..., 0]`` the input gate, ``[..., 1]`` the forget."""
        return torch.stack([self.input, self.forget], dim=-1)


class MarginalConcentrations(NamedTuple):
    """``Beta(alpha_i, beta_i)`` and ``Beta(alpha_f, beta_f)``: the gates' marginal laws."""

    alpha_i: torch.Tensor
    beta_i: torch.Tensor
    alpha_f: torch.Tensor
    beta_f: torch.Tensor


@dataclass(frozen=True)
class GammaRatioGates:
    """The gate map of a family: which basis variables sum into each gate's numerator and rest.

    :param name: the family's name, for error messages.
    :param basis_size: ``K``, the number of Gamma variables per gate pair.
    :param input_numerator: indices of :math:`N_i`; ``input_rest`` of :math:`D_i`, and
        likewise ``forget_numerator`` and ``forget_rest`` for the forget gate.
    """

    name: str
    basis_size: int
    input_numerator: tuple[int, ...]
    input_rest: tuple[int, ...]
    forget_numerator: tuple[int, ...]
    forget_rest: tuple[int, ...]

    def __post_init__(self) -> None:
        for numerator, rest in (
            (self.input_numerator, self.input_rest),
            (self.forget_numerator, self.forget_rest),
        ):
            if not numerator or not rest or set(numerator) & set(rest):
                raise ValueError(
                    f"{self.name}: each gate needs a non-empty numerator and rest that share no "
                    f"index, got {numerator} and {rest}"
                )
            if len(set(numerator + rest)) != len(numerator + rest):
                # a sum counts each basis variable once: the Beta marginals (mean gates) would
                # be wrong for a repeated one
                raise ValueError(
                    f"{self.name}: an index is repeated within one gate's sets, got {numerator} "
                    f"and {rest}; each basis variable enters a sum once"
                )
            if not all(0 <= k < self.basis_size for k in numerator + rest):
                raise ValueError(f"{self.name}: indices must lie in [0, {self.basis_size})")
        used = self.input_numerator + self.input_rest + self.forget_numerator + self.forget_rest
        unused = sorted(set(range(self.basis_size)) - set(used))
        if unused:  # drawn, and in the KL, for nothing
            raise ValueError(
                f"{self.name}: basis variable(s) {unused} of {self.basis_size} enter neither "
                "gate; leave them out of the basis"
            )

    # ----- layout ------------------------------------------------------------------------------
    def check(self, basis: torch.Tensor, basis_dim: int = BASIS_DIM, what: str = "basis") -> None:
        """Raise ValueError unless ``basis`` has ``K`` entries on ``basis_dim``."""
        if basis.dim() < (-basis_dim if basis_dim < 0 else basis_dim + 1) or (
            basis.shape[basis_dim] != self.basis_size
        ):
            layout = "(..., K)" if basis_dim == BASIS_DIM else f"K on dimension {basis_dim}"
            raise ValueError(
                f"{self.name}: {what} must hold the {self.basis_size} Gamma basis variables on "
                f"dimension {basis_dim}, layout {layout} with K = {self.basis_size}; got shape "
                f"{tuple(basis.shape)}"
            )

    def _parts(self, basis: torch.Tensor, basis_dim: int, what: str) -> tuple[torch.Tensor, ...]:
        self.check(basis, basis_dim, what)
        return basis.unbind(basis_dim)

    @staticmethod
    def _sum(parts, index: tuple[int, ...], log_space: bool) -> torch.Tensor:
        # pairwise in index order: the same rounding for every caller
        total = parts[index[0]]
        for k in index[1:]:
            total = torch.logaddexp(total, parts[k]) if log_space else total + parts[k]
        return total

    # ----- maps --------------------------------------------------------------------------------
    def logits(self, log_basis: torch.Tensor, basis_dim: int = BASIS_DIM) -> GatePair:
        """Gate logits :math:`\\log(N / D)` from the log-basis :math:`\\log u`."""
        parts = self._parts(log_basis, basis_dim, "log_basis")
        return GatePair(
            self._sum(parts, self.input_numerator, True) - self._sum(parts, self.input_rest, True),
            self._sum(parts, self.forget_numerator, True)
            - self._sum(parts, self.forget_rest, True),
        )

    def gates(self, log_basis: torch.Tensor, basis_dim: int = BASIS_DIM) -> GatePair:
        """Gates :math:`\\sigma(\\log N - \\log D)` from the log-basis: finite in ``float32`` where
        a ratio of the basis itself would underflow (concentrations down to 1e-3)."""
        logit_i, logit_f = self.logits(log_basis, basis_dim)
        return GatePair(torch.sigmoid(logit_i), torch.sigmoid(logit_f))

    def marginal_concentrations(
        self, concentration: torch.Tensor, basis_dim: int = BASIS_DIM
    ) -> MarginalConcentrations:
        """The Beta marginals' parameters: the summed concentrations of each index set."""
        parts = self._parts(concentration, basis_dim, "concentration")
        return MarginalConcentrations(
            *(
                self._sum(parts, index, False)
                for index in (
                    self.input_numerator,
                    self.input_rest,
                    self.forget_numerator,
                    self.forget_rest,
                )
            )
        )

    def mean_gates(self, concentration: torch.Tensor, basis_dim: int = BASIS_DIM) -> GatePair:
        """The means of the Beta marginals, :math:`a / (a + b)`: the paper's evaluation gates."""
        a_i, b_i, a_f, b_f = self.marginal_concentrations(concentration, basis_dim)
        return GatePair(a_i / (a_i + b_i), a_f / (a_f + b_f))

    def shares(self, k: int) -> tuple[bool, bool]:
        """Whether basis variable ``k`` enters the input gate and the forget gate."""
        return (
            k in self.input_numerator or k in self.input_rest,
            k in self.forget_numerator or k in self.forget_rest,
        )
