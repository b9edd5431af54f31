"""KL divergences: the Gamma-basis KL of same-family gate laws (basis_kl), the exact gate-law KL
where torch registers one (IndependentBetaGates), the exact KL of LogGamma laws."""

from __future__ import annotations

import math

import pytest
import torch
from gate_dist_cases import cases
from torch.distributions import Gamma, kl_divergence

from pyro_betalstm.distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    GateDistribution,
    IndependentBetaGates,
    LogGamma,
    basis_kl,
    gamma_kl,
)
from pyro_betalstm.distributions.gate_algebra import GammaRatioGates


def _prior_like(case):
    """A different member of the same family (reversed, shrunk concentrations)."""
    return case.family(0.5 + 0.5 * case.conc().flip(-1))


@pytest.mark.parametrize("case", cases())
def test_basis_kl_is_sum_of_gamma_kls(case):
    q, p = case.dist(), _prior_like(case)
    kl = q.basis_kl(p)
    ref = kl_divergence(Gamma(q.concentration, 1.0), Gamma(p.concentration, 1.0)).sum(-1)
    torch.testing.assert_close(kl, ref)
    torch.testing.assert_close(basis_kl(q, p), ref)
    assert kl.shape == () and kl > 0
    torch.testing.assert_close(q.basis_kl(q), torch.zeros((), dtype=torch.float64))
    # batched, and broadcast against a single prior
    qb = q.expand((3,))
    assert qb.basis_kl(p.expand((3,))).shape == (3,)


@pytest.mark.parametrize("case", cases(family=BivariateBeta) + cases(family=IndependentBetaGates))
def test_basis_kl_upper_bounds_gate_law_kl(case):
    # Data processing: KL between gate laws <= KL between bases. MC estimate of the gate-law KL
    # from 200k draws; the bound must hold up to 4 SE (false-failure rate < 1e-4 if the MC
    # estimate is unbiased and the bound holds).
    torch.manual_seed(20)
    q, p = case.dist(), _prior_like(case)
    x = q.sample((200_000,))
    diff = q.log_prob(x) - p.log_prob(x)
    mc, se = diff.mean(), diff.std() / math.sqrt(diff.numel())
    assert q.basis_kl(p) >= mc - 4 * se
    if case.family is IndependentBetaGates:
        # the gate laws are then sums of Beta KLs, strictly below the basis KL (the ratio map
        # loses the scale u1 + u2): checks the bound is not trivially an equality; and the
        # registered kl_divergence is the gate laws' own KL, equal to the MC estimate (4 SE)
        assert q.basis_kl(p) > mc + 4 * se
        assert abs(kl_divergence(q, p) - mc) < 4 * se


def test_kl_divergence_of_gate_laws_is_never_the_basis_bound():
    # torch's kl_divergence means the KL of the gate laws: exact for independent Beta gates
    # (two Beta KLs), unregistered for the bivariate families (no closed form; Pyro's
    # TraceMeanField_ELBO then estimates it), and never the larger basis KL
    from torch.distributions import Beta

    a, b = torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([2.0, 2.0, 2.0, 2.0])
    exact = kl_divergence(Beta(a[0], a[1]), Beta(b[0], b[1])) + kl_divergence(
        Beta(a[2], a[3]), Beta(b[2], b[3])
    )
    q, p = IndependentBetaGates(a), IndependentBetaGates(b)
    torch.testing.assert_close(kl_divergence(q, p), exact)
    assert q.basis_kl(p) > exact
    for family, k in ((BivariateBeta, 3), (FlexibleBivariateBeta, 5)):
        with pytest.raises(NotImplementedError):
            kl_divergence(family(torch.ones(k)), family(2 * torch.ones(k)))


def test_basis_kl_refuses_mixed_families():
    q = BivariateBeta(torch.ones(3))
    p = FlexibleBivariateBeta(torch.ones(5))
    with pytest.raises(ValueError, match="must be of one family"):
        q.basis_kl(p)
    with pytest.raises(TypeError, match="two gate distributions"):
        basis_kl(q, Gamma(torch.ones(3), 1.0))


class _ChainedGates(GateDistribution):
    """A family defined outside the package: i = u1/(u1+u2), f = u2/(u2+u3)."""

    algebra = GammaRatioGates("_ChainedGates", 3, (0,), (1,), (1,), (2,))


class _SharedRestCopy(GateDistribution):
    """Another class with BivariateBeta's gate map (the same family under another name)."""

    algebra = BivariateBeta.algebra


def test_a_family_defined_outside_the_package_has_the_basis_kl():
    # a user's subclass gets the Gamma-basis KL, the same basis under another class name too,
    # and a different gate map on a basis of the same size (3 Gammas, as BivariateBeta's) is
    # refused, not silently compared
    q_conc = torch.tensor([0.7, 1.5, 2.0], dtype=torch.float64)
    p_conc = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    ref = gamma_kl(q_conc, p_conc).sum(-1)
    torch.testing.assert_close(_ChainedGates(q_conc).basis_kl(_ChainedGates(p_conc)), ref)
    torch.testing.assert_close(_SharedRestCopy(q_conc).basis_kl(BivariateBeta(p_conc)), ref)
    with pytest.raises(ValueError, match="_ChainedGates and BivariateBeta"):
        _ChainedGates(q_conc).basis_kl(BivariateBeta(p_conc))


@pytest.mark.parametrize(
    "qa, qr, pa, pr", [(0.5, 1.0, 2.0, 1.0), (3.0, 2.0, 0.7, 0.5), (0.05, 1.0, 0.5, 1.0)]
)
def test_log_gamma_kl_exact(qa, qr, pa, pr):
    # Exact: equals the Gamma KL (log is a bijection) and the MC estimate within 5 SE (400k).
    torch.manual_seed(21)
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    q, p = LogGamma(f64(qa), f64(qr)), LogGamma(f64(pa), f64(pr))
    kl = kl_divergence(q, p)
    torch.testing.assert_close(kl, kl_divergence(Gamma(f64(qa), f64(qr)), Gamma(f64(pa), f64(pr))))
    torch.testing.assert_close(kl, gamma_kl(f64(qa), f64(pa), f64(qr), f64(pr)))
    y = q.sample((400_000,))
    diff = q.log_prob(y) - p.log_prob(y)
    se = diff.std() / math.sqrt(diff.numel())
    assert abs(diff.mean() - kl) < 5 * se
    torch.testing.assert_close(kl_divergence(q, q), f64(0.0))


def test_gamma_kl_takes_numbers():
    """gamma_kl(1.0, 2.0) raised AttributeError ('float' object has no attribute 'dtype')."""
    expected = gamma_kl(torch.tensor(1.0), torch.tensor(2.0))
    assert torch.equal(gamma_kl(1.0, 2.0), expected)
    assert torch.equal(gamma_kl([1.0, 3.0], [2.0, 2.0]), gamma_kl(torch.tensor([1.0, 3.0]), 2.0))
    p = torch.tensor([2.0, 0.5], dtype=torch.float64)  # a number takes the tensor's dtype
    assert gamma_kl(1.0, p).dtype == torch.float64
    rates = gamma_kl(1.0, 2.0, 0.5, 3)
    torch.testing.assert_close(rates, kl_divergence(Gamma(1.0, 0.5), Gamma(2.0, 3.0)))


def test_gamma_kl_with_unit_rate_tensors_is_exact_and_reads_no_device_tensor():
    """The paper's prior has a rate tensor of ones. On the CPU gamma_kl reads it to skip the
    rate terms; elsewhere it must not read it (a GPU would stall every SVI step) and adds the
    rate terms, which are exact zeros: value and gradients equal the unit-rate path's."""
    a = torch.rand(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    b = torch.tensor([0.5, 2.0, 0.7], dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.float64)
    grads = []
    for rates in ((1.0, 1.0), (ones, ones), (1.0, ones)):
        qa, pb = a.clone().requires_grad_(), b.clone().requires_grad_()
        kl = gamma_kl(qa, pb, *rates)
        kl.sum().backward()
        grads.append((kl.detach(), qa.grad, pb.grad))
    for got in grads[1:]:
        for x, y in zip(got, grads[0], strict=True):
            assert torch.equal(x, y)
    # the general path against torch's own Gamma KL, rates not one
    rate = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(
        gamma_kl(a, b, rate, 1.0), kl_divergence(Gamma(a, rate), Gamma(b, 1.0))
    )
    # on the meta device (no data, like a GPU tensor it is not read) it runs: reading would raise
    meta = gamma_kl(a.to("meta"), b.to("meta"), ones.to("meta"), ones.to("meta"))
    assert meta.shape == (4, 3) and meta.device.type == "meta"


@pytest.mark.parametrize(
    "args, name",
    [
        ((-1.0, 2.0), "q_concentration"),
        ((1.0, 0.0), "p_concentration"),
        ((1.0, [2.0, float("nan")]), "p_concentration"),
        ((torch.ones(2), torch.ones(2), -1.0), "q_rate"),
        ((torch.ones(2), torch.ones(2), 1.0, float("inf")), "p_rate"),
    ],
)
def test_gamma_kl_refuses_non_positive_numbers(args, name):
    """Numbers are checked on the host; tensors are not read (see gamma_kl's docstring)."""
    with pytest.raises(ValueError, match=f"gamma_kl: {name} must be positive and finite"):
        gamma_kl(*args)


def test_gamma_kl_second_derivatives_are_exact():
    # the closed-form backward reuses the forward's digamma(a), which has no graph; a double
    # backward (Hessians, Newton or Laplace steps) must still differentiate it
    a = torch.tensor([0.7, 2.5], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.5, 0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(gamma_kl, (a, b))
    hessian = torch.autograd.functional.hessian(lambda x, y: gamma_kl(x, y).sum(), (a, b))
    torch.testing.assert_close(hessian[0][1], hessian[1][0].T)
