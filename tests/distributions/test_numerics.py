"""The exact draws the gate bases are built from: ``standard_exponential`` and ``sample_log_gamma``
in float32, the dtype training uses (test_log_gamma.py checks the float64 law)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from pyro_betalstm.distributions.numerics import (
    into_open_unit_interval,
    log1mexp,
    sample_log_gamma,
    standard_exponential,
)


def test_standard_exponential_law_dtype_and_layout():
    # 200k draws; mean and variance within 5 SE of 1, KS against Exp(1) with p > 1e-3
    # (false-failure rate about 0.1%).
    torch.manual_seed(40)
    e = standard_exponential(torch.Size((400, 500)), torch.float32)
    assert e.dtype == torch.float32 and e.shape == (400, 500) and e.is_contiguous()
    assert (e >= 0).all() and torch.isfinite(e).all()
    x = e.flatten().double()
    n = x.numel()
    assert abs(x.mean().item() - 1.0) < 5 / math.sqrt(n)
    assert abs(x.var().item() - 1.0) < 5 * math.sqrt(8 / n)  # var of (E-1)^2 is 8
    assert stats.kstest(x.numpy(), stats.expon.cdf).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 1000), (3, 5)])  # the inversion path, and the small one
def test_standard_exponential_reproduces_torchs_kernel(dtype, shape):
    # The faster draw must not change any result made with Tensor.exponential_: same generator
    # state in, bit-identical numbers out, and the same generator state after.
    torch.manual_seed(43)
    ours = standard_exponential(torch.Size(shape), dtype)
    after_ours = torch.rand(3)
    torch.manual_seed(43)
    theirs = torch.empty(shape, dtype=dtype).exponential_()
    after_theirs = torch.rand(3)
    assert ours.dtype == dtype and torch.equal(ours, theirs)
    assert torch.equal(after_ours, after_theirs)


@pytest.mark.parametrize("alpha", [0.02, 0.5, 3.0])
def test_sample_log_gamma_float32_law(alpha):
    # log u for u ~ Gamma(alpha): KS of 100k float32 draws against scipy's loggamma(alpha),
    # p > 1e-3 (false-failure rate 0.1% per case). At alpha 0.02 the law lives far below
    # float32's smallest normal u, so the test also shows the log-space draw does not underflow.
    torch.manual_seed(41)
    y = sample_log_gamma(torch.full((100_000,), alpha))
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert stats.kstest(y.double().numpy(), stats.loggamma(alpha).cdf).pvalue > 1e-3


@pytest.mark.parametrize("alpha", [0.1, 0.9, 4.0])
def test_sample_log_gamma_gradient_is_unbiased(alpha):
    # The reparameterised gradient is unbiased for the gradient of an expectation:
    # E[d log u / d alpha] = d E[log u] / d alpha = trigamma(alpha), and E[d u / d alpha] = 1.
    # 200k float64 draws; both sample means within 5 SE (false-failure rate < 1e-6 each).
    torch.manual_seed(42)
    a = torch.full((200_000,), alpha, dtype=torch.float64, requires_grad=True)
    log_u = sample_log_gamma(a)
    (d_log_u,) = torch.autograd.grad(log_u.sum(), a, retain_graph=True)
    (d_u,) = torch.autograd.grad(log_u.exp().sum(), a)
    n = a.numel()
    trigamma = float(torch.polygamma(1, torch.tensor(alpha, dtype=torch.float64)))
    assert abs(d_log_u.mean().item() - trigamma) < 5 * d_log_u.std().item() / math.sqrt(n)
    assert abs(d_u.mean().item() - 1.0) < 5 * d_u.std().item() / math.sqrt(n)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_into_open_unit_interval_moves_only_the_ends_inside(dtype):
    x = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=dtype)
    inside = into_open_unit_interval(x)
    below_one = torch.nextafter(torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype))
    assert inside.dtype == dtype
    assert inside[0] == torch.finfo(dtype).tiny and inside[3] == below_one  # nearest inside
    assert torch.equal(inside[1:3], x[1:3])  # values already inside are kept, bit for bit


def test_log1mexp_gradient_is_finite_near_zero():
    # the formula not chosen near 0 (log1p(-exp(x))) has an infinite derivative as x -> 0 in
    # float32; torch.where's backward turned its 0 * inf into NaN
    x = torch.tensor([-1e-9, -1e-6, -0.5, -0.7, -5.0], requires_grad=True)
    log1mexp(x).sum().backward()
    expected = -torch.exp(x.detach()) / -torch.expm1(x.detach())  # d/dx log(1 - e^x)
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=0)
