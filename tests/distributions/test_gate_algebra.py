"""The one gate algebra: its layout convention, its checks and its agreement across layouts."""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm.distributions import FlexibleBivariateBeta
from pyro_betalstm.distributions.gate_algebra import (
    BASIS_DIM,
    STEP_BASIS_DIM,
    GammaRatioGates,
    GatePair,
)

ALGEBRA = FlexibleBivariateBeta.algebra


def test_the_basis_dimension_can_be_any_and_gives_the_same_gates():
    log_u = torch.randn(2, 6, 5, dtype=torch.float64)  # (B, H, K): the basis last
    last = ALGEBRA.gates(log_u)
    step = ALGEBRA.gates(log_u.transpose(-1, -2), STEP_BASIS_DIM)  # (B, K, H)
    first = ALGEBRA.gates(log_u.movedim(-1, 0), 0)  # (K, B, H)
    for other in (step, first):
        torch.testing.assert_close(other.input, last.input)
        torch.testing.assert_close(other.forget, last.forget)
    assert BASIS_DIM == -1 and isinstance(last, GatePair)


def test_gate_pair_stacks_to_the_distribution_value_layout():
    pair = GatePair(torch.zeros(3), torch.ones(3))
    assert pair.stacked().shape == (3, 2)
    assert torch.equal(pair.stacked()[:, 1], torch.ones(3))
    i, f = pair
    assert i is pair.input and f is pair.forget


def test_mean_gates_are_the_marginal_means():
    conc = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    a_i, b_i, a_f, b_f = ALGEBRA.marginal_concentrations(conc)
    assert [float(a_i), float(b_i), float(a_f), float(b_f)] == [4.0, 9.0, 6.0, 8.0]
    i, f = ALGEBRA.mean_gates(conc)
    assert float(i) == pytest.approx(4 / 13) and float(f) == pytest.approx(6 / 14)


@pytest.mark.parametrize(
    "shape, basis_dim", [((3, 4), -1), ((5,), -2), ((), -1), ((2, 5, 6), 0), ((5, 3), 1)]
)
def test_a_wrong_layout_says_what_was_expected(shape, basis_dim):
    with pytest.raises(ValueError, match=rf"5 Gamma basis variables on dimension {basis_dim}"):
        ALGEBRA.gates(torch.zeros(shape), basis_dim)


def test_the_index_sets_are_checked():
    with pytest.raises(ValueError, match="share no index"):
        GammaRatioGates("bad", 3, (0,), (0, 1), (1,), (2,))
    with pytest.raises(ValueError, match="share no index"):
        GammaRatioGates("bad", 3, (), (1,), (1,), (2,))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\)"):
        GammaRatioGates("bad", 3, (0,), (3,), (1,), (2,))
    # a repeated index was summed twice while the mean gates count it once (wrong means); an
    # index in no set was drawn and charged in the KL for nothing
    with pytest.raises(ValueError, match="an index is repeated within one gate's sets"):
        GammaRatioGates("bad", 2, (0, 0), (1,), (1,), (0,))
    with pytest.raises(ValueError, match=r"basis variable\(s\) \[3\] of 4 enter neither gate"):
        GammaRatioGates("bad", 4, (0,), (1,), (1,), (2,))
