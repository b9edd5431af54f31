"""Pathwise (reparameterised) gradients in float64, and float32 behaviour at tiny concentrations."""

from __future__ import annotations

import pytest
import torch
from gate_dist_cases import CASES, cases, marginal_params_reference

from pyro_betalstm.distributions import LogGamma

NUM_SAMPLES = 100_000


def _beta_moment(a, b, name):
    if name == "mean":
        return a / (a + b)
    return a * (a + 1) / ((a + b) * (a + b + 1))  # E[x^2]


def _analytic(family, conc, gate, name):
    params = marginal_params_reference(family, conc)[gate]
    return _beta_moment(*params, name)


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize(
    "gate, name", [(0, "mean"), (1, "mean"), (0, "square")], ids=["E[i]", "E[f]", "E[i^2]"]
)
def test_pathwise_gradient_matches_finite_differences(case, gate, name):
    # Per-sample gradients: every draw gets its own copy of the concentration, so
    # conc_rep.grad[n] is the pathwise gradient of g(x_n). Their mean estimates d/dc E[g]; its
    # standard error is std/sqrt(n). Reference: central finite differences (h = 1e-6) of the
    # analytic expectation from the Beta marginal. Tolerance 5 SE + 1e-6 (FD error ~1e-10).
    torch.manual_seed(10)
    conc = case.conc()
    conc_rep = conc.expand(NUM_SAMPLES, -1).clone().requires_grad_()
    x = case.family(conc_rep).rsample()[:, gate]
    g = x if name == "mean" else x**2
    g.sum().backward()
    per_sample = conc_rep.grad
    estimate = per_sample.mean(0)
    se = per_sample.std(0) / NUM_SAMPLES**0.5

    h = 1e-6
    fd = torch.zeros_like(conc)
    for k in range(conc.shape[0]):
        e = torch.zeros_like(conc)
        e[k] = h
        fd[k] = (
            _analytic(case.family, conc + e, gate, name)
            - _analytic(case.family, conc - e, gate, name)
        ) / (2 * h)
    assert (fd.abs() > 10 * se).any(), "test has no power: no component is well resolved"
    assert ((estimate - fd).abs() < 5 * se + 1e-6).all(), (estimate, fd, se)


@pytest.mark.parametrize("a", [0.05, 0.5, 3.0, 30.0])
def test_log_gamma_pathwise_gradient_is_trigamma(a):
    # d/da E[log u] = trigamma(a); per-sample gradients as above, tolerance 5 SE.
    torch.manual_seed(11)
    conc = torch.full((NUM_SAMPLES,), a, dtype=torch.float64, requires_grad=True)
    LogGamma(conc).rsample().sum().backward()
    est, se = conc.grad.mean(), conc.grad.std() / NUM_SAMPLES**0.5
    ref = torch.polygamma(1, torch.tensor(a, dtype=torch.float64))
    assert abs(est - ref) < 5 * se, (est, ref, se)


TINY = [
    pytest.param(case, mix, id=f"{case.family.__name__}-{mix}")
    for case in CASES
    if case.description == "moderate"
    for mix in ("all-1e-3", "1e-3-and-10")
]


@pytest.mark.parametrize("case, mix", TINY)
def test_tiny_concentrations_float32(case, mix):
    torch.manual_seed(12)
    K = case.family.basis_size
    if mix == "all-1e-3":
        conc = torch.full((K,), 1e-3)
    else:
        conc = torch.tensor([1e-3 if k % 2 == 0 else 10.0 for k in range(K)])
    conc = conc.expand(1000, K).clone().requires_grad_()
    d = case.family(conc)
    x = d.rsample((4,))
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert ((x >= 0) & (x <= 1)).all()
    x.sum().backward()
    assert torch.isfinite(conc.grad).all()
    log_u = d.sample_log_basis((4,))
    assert torch.isfinite(log_u).all()
    assert torch.isfinite(case.family.gate_logits_from_log_basis(log_u)[0]).all()
    # The draws are not degenerate: with all concentrations 1e-3, each gate is 0 or 1 up to
    # float32 rounding, and both values occur.
    if mix == "all-1e-3":
        i = x[..., 0].detach()
        assert (i < 0.5).any() and (i > 0.5).any()
