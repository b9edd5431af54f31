"""Shapes, ``expand``, broadcasting, pickling, support and the Gamma-basis API of the gate families."""

from __future__ import annotations

import pickle

import pytest
import torch
from gate_dist_cases import (
    BASIS_SIZE,
    CASES,
    FAMILIES,
    cases,
    gates_from_basis_reference,
    marginal_params_reference,
)
from pyro.distributions import TorchDistribution

from pyro_betalstm.distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    IndependentBetaGates,
    LogGamma,
)


def _batched(case, batch=(3,)):
    """A batch of distinct concentrations around the case's (scaled per batch element)."""
    scale = torch.linspace(0.8, 1.2, batch[-1], dtype=torch.float64)
    conc = case.conc()[None, :] * scale[:, None]
    return case.family(conc.expand(*batch, case.conc().shape[-1]).clone())


@pytest.mark.parametrize("case", cases())
def test_contract_attributes(case):
    d = case.dist()
    assert isinstance(d, TorchDistribution)
    assert d.has_rsample
    assert d.event_shape == (2,) and d.batch_shape == ()
    assert "concentration" in d.arg_constraints
    assert d.support.event_dim == 1
    assert type(d).basis_size == BASIS_SIZE[case.family]


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize("sample_shape", [(), (5,), (4, 2)])
def test_sample_shapes(case, sample_shape):
    torch.manual_seed(0)
    d = _batched(case)
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    expected = torch.Size(sample_shape) + (3, 2)
    assert d.sample(sample_shape).shape == expected
    x = d.rsample(sample_shape)
    assert x.shape == expected and x.dtype == torch.float64
    assert d.log_prob(x).shape == expected[:-1]
    assert d.mean.shape == d.variance.shape == (3, 2)
    assert d.correlation.shape == (3,)
    assert d.sample_log_basis(sample_shape).shape == torch.Size(sample_shape) + (
        3,
        case.family.basis_size,
    )


@pytest.mark.parametrize("case", cases())
def test_expand(case):
    torch.manual_seed(0)
    d = case.dist()
    e = d.expand((4, 3))
    assert e.batch_shape == (4, 3) and e.event_shape == (2,)
    assert e.concentration.shape == (4, 3, case.family.basis_size)
    x = e.sample((2,))
    assert x.shape == (2, 4, 3, 2)
    # the expanded batch draws independent samples, not one sample broadcast
    assert torch.unique(x[..., 0]).numel() == x[..., 0].numel()
    lp = e.log_prob(x)
    assert lp.shape == (2, 4, 3)
    torch.testing.assert_close(lp, d.log_prob(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.mean, d.mean.expand(4, 3, 2))
    # expand of a batched distribution, and through pyro's expand_by
    b = _batched(case).expand((2, 3))
    assert b.batch_shape == (2, 3) and b.sample().shape == (2, 3, 2)
    assert d.expand_by((5,)).batch_shape == (5,)


@pytest.mark.parametrize("case", cases())
def test_log_prob_broadcasting(case):
    torch.manual_seed(0)
    d = _batched(case)  # batch (3,)
    value = case.dist().sample((7, 1))  # (7, 1, 2) broadcasts against batch (3,)
    lp = d.log_prob(value)
    assert lp.shape == (7, 3)
    for j in range(3):
        single = case.family(d.concentration[j])
        # the 5-Gamma quadrature sums in float32: a different batch layout changes the order
        torch.testing.assert_close(lp[:, j], single.log_prob(value[:, 0]), rtol=1e-5, atol=1e-5)
    # a single value against the whole batch
    assert d.log_prob(value[0, 0]).shape == (3,)


@pytest.mark.parametrize("case", cases())
def test_pickle_round_trip(case):
    torch.manual_seed(0)
    d = _batched(case)
    d2 = pickle.loads(pickle.dumps(d))
    assert type(d2) is type(d) and d2.batch_shape == d.batch_shape
    x = d.sample((4,))
    torch.testing.assert_close(d2.log_prob(x), d.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(d2.concentration, d.concentration)


@pytest.mark.parametrize("case", cases())
def test_support_check_of_samples(case):
    torch.manual_seed(0)
    d = case.dist()
    x = d.sample((500,))
    assert d.support.check(x).all()
    assert torch.isfinite(d.log_prob(x)).all()
    assert not d.support.check(torch.tensor([[0.5, 1.5], [-0.1, 0.5]], dtype=torch.float64)).any()


@pytest.mark.parametrize("case", cases())
def test_basis_api(case):
    torch.manual_seed(0)
    d = _batched(case)
    K = case.family.basis_size
    basis = d.basis_distribution()
    assert basis.batch_shape == (3,) and basis.event_shape == (K,)
    log_basis = d.log_basis_distribution()
    assert log_basis.batch_shape == (3,) and log_basis.event_shape == (K,)
    assert isinstance(log_basis.base_dist, LogGamma)

    u = basis.sample((6,))
    gates = case.family.gates_from_basis(u)
    i_ref, f_ref = gates_from_basis_reference(case.family, u)
    torch.testing.assert_close(gates, torch.stack([i_ref, f_ref], -1))
    torch.testing.assert_close(case.family.gates_from_log_basis(u.log()), gates)
    logit_i, logit_f = case.family.gate_logits_from_log_basis(u.log())
    torch.testing.assert_close(torch.stack([logit_i, logit_f], -1).sigmoid(), gates)

    log_u = d.sample_log_basis((6,))
    assert log_u.shape == (6, 3, K) and torch.isfinite(log_u).all()
    assert torch.isfinite(log_basis.log_prob(log_u)).all()
    torch.testing.assert_close(
        basis.log_prob(log_u.exp()) + log_u.sum(-1), log_basis.log_prob(log_u)
    )

    (ai, bi), (af, bf) = marginal_params_reference(case.family, d.concentration)
    for got, want in zip(d.marginal_concentrations(), (ai, bi, af, bf), strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(d.mean, torch.stack([ai / (ai + bi), af / (af + bf)], -1))
    var = lambda a, b: a * b / ((a + b) ** 2 * (a + b + 1))  # noqa: E731
    torch.testing.assert_close(d.variance, torch.stack([var(ai, bi), var(af, bf)], -1))


@pytest.mark.parametrize("case", cases())
def test_gate_map_wrong_basis_size_raises(case):
    with pytest.raises(ValueError, match="basis"):
        case.family.gates_from_log_basis(torch.zeros(2, case.family.basis_size + 1))


# ----- bad input --------------------------------------------------------------------------------
BAD_VALUES = [-1.0, 0.0, float("nan"), float("inf")]


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize("bad", BAD_VALUES, ids=["negative", "zero", "nan", "inf"])
def test_invalid_concentration_raises(case, bad):
    conc = case.conc()
    conc[1] = bad
    with pytest.raises(ValueError, match="concentration") as info:
        case.family(conc, validate_args=True)
    assert "positive" in str(info.value)


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize("validate_args", [True, False])
def test_wrong_last_dimension_raises_always(case, validate_args):
    K = case.family.basis_size
    for shape in [(K - 1,), (2, K + 1), ()]:
        with pytest.raises(ValueError, match="concentration") as info:
            case.family(torch.ones(shape, dtype=torch.float64), validate_args=validate_args)
        assert str(K) in str(info.value)


@pytest.mark.parametrize("case", cases())
def test_log_prob_value_checks(case):
    d = case.dist(validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.full((4, 3), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError):
        case.dist(validate_args=False).log_prob(torch.full((3,), 0.5, dtype=torch.float64))
    outside = torch.tensor([[0.5, 1.5], [-0.2, 0.5], [1.0, 0.5], [0.5, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError):
        d.log_prob(outside[:1])
    lp = case.dist(validate_args=False).log_prob(outside)
    assert (lp == -float("inf")).all()


def test_every_registered_gate_distribution_has_cases():
    """A newly registered latent family fails here until CASES covers its distribution."""
    covered = {case.family for case in CASES}
    assert set(FAMILIES) <= covered, f"no cases for {set(FAMILIES) - covered}"
    assert all(BASIS_SIZE[f] == f.basis_size for f in FAMILIES)


@pytest.mark.parametrize(
    "family, k", [(BivariateBeta, 3), (FlexibleBivariateBeta, 5), (IndependentBetaGates, 4)]
)
def test_log_prob_dtype_promotes_the_value_and_the_concentration(family, k):
    # torch's rule (a batched float64 law scores a float32 value in float64); the flexible
    # family returned the value's dtype, a float32 downcast of its float64 density
    law = family(torch.full((1, k), 1.5, dtype=torch.float64))
    value = torch.tensor([[0.3, 0.6]], dtype=torch.float32)
    assert law.log_prob(value).dtype == torch.float64
    assert law.log_prob(value[:0]).dtype == torch.float64  # an empty batch too
    single = family(torch.full((1, k), 1.5, dtype=torch.float32))
    assert single.log_prob(value).dtype == torch.float32
