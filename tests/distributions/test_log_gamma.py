"""LogGamma: the law of log u for u ~ Gamma(concentration, rate)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from pyro_betalstm.distributions import LogGamma

PARAMS = [(0.05, 1.0), (0.7, 1.0), (4.0, 2.5), (30.0, 0.3)]


def _dist(a, r, **kw):
    return LogGamma(
        torch.tensor(a, dtype=torch.float64), torch.tensor(r, dtype=torch.float64), **kw
    )


@pytest.mark.parametrize("a, r", PARAMS)
def test_log_prob_integrates_to_one_and_matches_scipy(a, r):
    d = _dist(a, r)
    logpdf = lambda y: d.log_prob(torch.tensor(y, dtype=torch.float64)).item()  # noqa: E731
    mode = math.log(a / r)
    total = sum(
        integrate.quad(lambda y: math.exp(logpdf(y)), lo, hi, limit=200)[0]
        for lo, hi in [(-np.inf, mode), (mode, np.inf)]
    )
    assert abs(total - 1.0) < 1e-7
    y = np.linspace(mode - 20 / a**0.5, mode + 3, 50)
    # log u with u ~ Gamma(a, r): log(r u) ~ scipy loggamma(a)
    ref = stats.loggamma.logpdf(y + math.log(r), a)
    got = d.log_prob(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("a, r", PARAMS)
def test_moments_entropy_and_samples(a, r):
    # 400k draws; mean/variance within 5 SE; exp(samples) KS against scipy gamma, p > 1e-3
    # (false-failure rate 0.1%).
    torch.manual_seed(30)
    d = _dist(a, r)
    y = d.sample((400_000,))
    n = y.numel()
    assert torch.isfinite(y).all()
    assert abs(y.mean() - d.mean) < 5 * (d.variance / n).sqrt()
    torch.testing.assert_close(
        d.mean, torch.tensor(stats.loggamma.mean(a) - math.log(r), dtype=torch.float64)
    )
    torch.testing.assert_close(d.variance, torch.tensor(stats.loggamma.var(a), dtype=torch.float64))
    centered2 = (y - y.mean()) ** 2
    assert abs(centered2.mean() - d.variance) < 5 * centered2.std() / math.sqrt(n)
    torch.testing.assert_close(
        d.entropy(), torch.tensor(stats.loggamma.entropy(a), dtype=torch.float64)
    )
    neg_lp = -d.log_prob(y)
    assert abs(neg_lp.mean() - d.entropy()) < 5 * neg_lp.std() / math.sqrt(n)
    p = stats.kstest(y[:100_000].exp().numpy(), stats.gamma(a, scale=1 / r).cdf).pvalue
    assert p > 1e-3


def test_shapes_expand_pickle_and_validation():
    torch.manual_seed(31)
    d = LogGamma(torch.tensor([0.5, 2.0]), 1.0)
    assert d.batch_shape == (2,) and d.event_shape == () and d.has_rsample
    assert d.rsample((3,)).shape == (3, 2)
    e = d.expand((4, 2))
    x = e.sample()
    assert x.shape == (4, 2) and torch.unique(x).numel() == 8
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    d2 = pickle.loads(pickle.dumps(d))
    torch.testing.assert_close(d2.log_prob(x), d.log_prob(x))
    assert d.support.check(x).all()
    # torch's `positive` constraint (as for torch's Gamma) admits +inf; the gate families reject it.
    for bad in [-1.0, 0.0, float("nan")]:
        with pytest.raises(ValueError, match="concentration"):
            LogGamma(torch.tensor([bad]), validate_args=True)
        with pytest.raises(ValueError, match="rate"):
            LogGamma(torch.tensor([1.0]), torch.tensor([bad]), validate_args=True)


def test_tiny_concentration_float32_finite():
    torch.manual_seed(32)
    a = torch.full((10_000,), 1e-3, requires_grad=True)
    y = LogGamma(a).rsample()
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_log_prob_at_plus_infinity_is_minus_infinity():
    """a * y - b * e^y was inf - inf = NaN at y = +inf; finite values are unchanged."""
    d = LogGamma(torch.tensor([0.5, 2.0]), torch.tensor([1.0, 3.0]))
    y = torch.tensor([float("inf"), float("inf")])
    assert torch.equal(d.log_prob(y), torch.full((2,), float("-inf")))
    assert torch.equal(d.log_prob(torch.tensor(-float("inf"))), torch.full((2,), float("-inf")))
    y = torch.tensor([-3.0, 88.0])  # e^88 is finite in float32, e^89 is not
    a, b = d.concentration, d.rate
    expected = a * b.log() + a * y - b * y.exp() - torch.lgamma(a)
    assert torch.equal(d.log_prob(y), expected)


def test_integer_concentrations_are_taken_as_the_gate_laws_take_them():
    # the gate distributions convert integer concentrations to the default dtype; LogGamma
    # raised a TypeError for the same tensor
    d = LogGamma(torch.tensor([1, 3]), torch.tensor([2, 1]))
    assert d.concentration.dtype == d.rate.dtype == torch.get_default_dtype()
    torch.testing.assert_close(d.mean, torch.digamma(torch.tensor([1.0, 3.0])) - d.rate.log())
    assert torch.isfinite(d.log_prob(d.sample((5,)))).all()
