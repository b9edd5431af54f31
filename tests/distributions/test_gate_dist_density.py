"""Densities, marginals and moments of the gate families against their Gamma construction.

Statistical tests fix their seeds. Where a test uses a p-value threshold of 1e-3 its false-failure
rate when the code is correct is 0.1% per test (for a new seed); where it uses 5 standard errors
(a normal approximation) the rate is below 1e-6 per comparison.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gate_dist_cases import (
    NUM_CELLS,
    cases,
    cell_edges,
    cell_masses,
    gates_from_basis_reference,
    marginal_params_reference,
)
from scipy import integrate, special, stats

from pyro_betalstm.distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    IndependentBetaGates,
)
from pyro_betalstm.distributions._gate_distribution import _laplace_correlation

P_THRESHOLD = 1e-3


@pytest.mark.parametrize("case", cases(grid_ok=True))
def test_log_prob_integrates_to_one(case):
    # cell_masses integrates exp(log_prob) over the unit square in copula coordinates (an exact
    # change of variables). Closed forms: quadrature error < 1e-6, tolerance 1e-5. 5-Gamma:
    # the docstring states "integrates to 1 within 1e-3".
    total = cell_masses(case).sum()
    tol = 1e-3 if case.family is FlexibleBivariateBeta else 1e-5
    assert abs(total - 1.0) < tol


@pytest.mark.parametrize("case", cases(grid_ok=True))
def test_cell_masses_match_gamma_construction(case):
    # Chi-square test of the 6 x 6 cell masses from log_prob against the counts of 200k draws of
    # the Gamma construction (samples built here from torch Gamma draws, not from .sample()).
    # Every cell has an expected count > 100 here; quadrature error in the masses is < 5e-5,
    # i.e. < 0.2 standard errors per cell. Threshold: p = 1e-3.
    torch.manual_seed(1)
    n = 200_000
    conc = case.conc()
    u = torch.distributions.Gamma(conc, torch.ones_like(conc)).sample((n,))
    i, f = (z.numpy() for z in gates_from_basis_reference(case.family, u))
    ei, ef = cell_edges(case)
    ei[0], ei[-1], ef[0], ef[-1] = -1.0, 2.0, -1.0, 2.0
    counts, _, _ = np.histogram2d(i, f, bins=[ei, ef])
    expected = cell_masses(case) / cell_masses(case).sum() * n
    assert expected.min() > 100  # chi-square approximation is accurate
    chi2 = ((counts - expected) ** 2 / expected).sum()
    dof = NUM_CELLS * NUM_CELLS - 1
    assert stats.chi2.sf(chi2, dof) > P_THRESHOLD, (chi2, dof)


@pytest.mark.parametrize("case", cases())
def test_marginals_ks(case):
    # KS test of each gate's samples against the contract's Beta marginal; p threshold 1e-3.
    torch.manual_seed(2)
    x = case.dist().sample((100_000,)).numpy()
    for k, (a, b) in enumerate(
        marginal_params_reference(case.family, np.array(case.concentration))
    ):
        p = stats.kstest(x[:, k], stats.beta(a, b).cdf).pvalue
        assert p > P_THRESHOLD, (k, p)


def _batch_means(values: np.ndarray, statistic, num_batches: int = 40):
    """Statistic on the whole sample and its standard error from 40 batch means."""
    batches = np.array([statistic(b) for b in np.array_split(values, num_batches)])
    return statistic(values), batches.std(ddof=1) / math.sqrt(num_batches)


@pytest.mark.parametrize("case", cases())
def test_moments_vs_monte_carlo(case):
    # 400k draws; standard errors from 40 batch means; tolerance 5 SE (+1e-4 for the O(1/n)
    # bias of the sample correlation, negligible at n = 400k).
    torch.manual_seed(3)
    d = case.dist()
    x = d.sample((400_000,)).numpy()
    for k in range(2):
        m, se = _batch_means(x[:, k], np.mean)
        assert abs(m - d.mean[k].item()) < 5 * se
        v, se = _batch_means(x[:, k], np.var)
        assert abs(v - d.variance[k].item()) < 5 * se
    r, se = _batch_means(x, lambda z: np.corrcoef(z.T)[0, 1])
    assert abs(r - d.correlation.item()) < 5 * se + 1e-4, (r, d.correlation.item(), se)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("case", cases(family=BivariateBeta))
def test_bivariate_correlation_positive_and_exact(case):
    # Independent reference: conditionally on u3 = t, i and f are independent with
    # h_s(t) = E[u/(u+t)] = s t^s U(s+1, s+1, t) (u ~ Gamma(s); U = Tricomi's function), so
    # E[if] = int h_a(t) h_b(t) Gamma(t; c) dt by adaptive 1-D quadrature (agrees with a 30-digit
    # mpmath evaluation to 1e-11). Tolerance 1e-6, the accuracy the docstring states.
    a, b, c = case.concentration
    d = case.dist()
    assert d.correlation.item() > 0

    def h(s, t):
        return s * t**s * special.hyperu(s + 1, s + 1, t)

    upper = c + 40 * math.sqrt(c) + 40  # Gamma(c) tail beyond this is < 1e-16
    exy = integrate.quad(
        lambda t: h(a, t) * h(b, t) * stats.gamma.pdf(t, c), 0, upper, epsabs=1e-11, limit=200
    )[0]
    mi, mf = a / (a + c), b / (b + c)
    vi = a * c / ((a + c) ** 2 * (a + c + 1))
    vf = b * c / ((b + c) ** 2 * (b + c + 1))
    ref = (exy - mi * mf) / math.sqrt(vi * vf)
    assert abs(d.correlation.item() - ref) < 1e-6


def test_bivariate_correlation_positive_over_a_range():
    grid = torch.tensor([1e-2, 0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    conc = torch.cartesian_prod(grid, grid, grid)
    corr = BivariateBeta(conc).correlation
    assert torch.isfinite(corr).all()
    assert (corr > 0).all() and (corr < 1).all()


def test_independent_correlation_is_zero():
    grid = torch.tensor([1e-2, 0.3, 10.0, 100.0], dtype=torch.float64)
    conc = torch.cartesian_prod(grid, grid, grid, grid)
    d = IndependentBetaGates(conc)
    assert (d.correlation == 0).all()
    # The Laplace-transform quadrature behind .correlation of the other families, applied to
    # independent gates, must return the exact zero to near machine precision.
    numeric = _laplace_correlation(d)
    assert torch.isfinite(numeric).all()
    assert numeric.abs().max() < 1e-8


@pytest.mark.parametrize(
    "family, conc",
    [
        (BivariateBeta, (1e-2, 5e-2, 2e-2)),
        (BivariateBeta, (50.0, 60.0, 40.0)),
        (FlexibleBivariateBeta, (1e-2, 1e-2, 1e-2, 1e-2, 1e-2)),
        (FlexibleBivariateBeta, (100.0, 100.0, 100.0, 100.0, 100.0)),
        (FlexibleBivariateBeta, (1e-3, 1e-2, 0.1, 1.0, 10.0)),
    ],
)
def test_correlation_at_extreme_concentrations(family, conc):
    # Regression: the quadrature overflowed (NaN) for concentrations near 1e-2 and truncated the
    # small-r range for large ones (|corr| >> 1). MC: 400k draws, 5 batch-mean SE.
    torch.manual_seed(4)
    d = family(torch.tensor(conc, dtype=torch.float64))
    corr = d.correlation.item()
    assert math.isfinite(corr) and -1 <= corr <= 1
    x = d.sample((400_000,)).numpy()
    r, se = _batch_means(x, lambda z: np.corrcoef(z.T)[0, 1])
    assert abs(r - corr) < 5 * se + 1e-4, (r, corr, se)


def test_correlation_is_accurate_in_float32_and_refused_where_the_quadrature_fails():
    # float32 concentrations: the moments were taken in float32, and exy - mean_i mean_f lost
    # its digits (1.044 for a correlation of 0.990; 0.9561 for the exact 0.94982341, an mpmath
    # value). A pair spread over 1e6 gave 618 in float64: refused, naming the spread.
    for conc, exact in (((100.0, 100.0, 0.01), None), ((10.0, 100.0, 0.01), 0.94982341)):
        single = BivariateBeta(torch.tensor(conc)).correlation.item()
        double = BivariateBeta(torch.tensor(conc, dtype=torch.float64)).correlation.item()
        assert abs(single - double) < 1e-6 and single <= 1
        if exact is not None:
            assert abs(double - exact) < 1e-7
    for family, conc in (
        (BivariateBeta, (1e4, 1e4, 0.01)),
        (FlexibleBivariateBeta, (1e4, 1e4, 1e4, 1e4, 1e-3)),
    ):
        with pytest.raises(ValueError, match="differ by a factor of at most 10000; got a pair"):
            _ = family(torch.tensor(conc, dtype=torch.float64)).correlation


def test_flexible_reaches_strong_negative_correlation():
    # c3 = c4 large, others small: i ~ u3/(u3+u4) ~ 1 - f. Numerically about -0.985.
    torch.manual_seed(5)
    d = FlexibleBivariateBeta(torch.tensor([0.1, 0.1, 10.0, 10.0, 0.1], dtype=torch.float64))
    corr = d.correlation.item()
    assert corr < -0.8
    x = d.sample((400_000,)).numpy()
    r, se = _batch_means(x, lambda z: np.corrcoef(z.T)[0, 1])
    assert r < -0.8
    assert abs(r - corr) < 5 * se + 1e-4


def _olkin_liu_log_density(x, y, a, b, c):
    log_norm = (
        special.gammaln(a) + special.gammaln(b) + special.gammaln(c) - special.gammaln(a + b + c)
    )
    return (
        (a - 1) * np.log(x)
        + (b - 1) * np.log(y)
        + (b + c - 1) * np.log1p(-x)
        + (a + c - 1) * np.log1p(-y)
        - (a + b + c) * np.log1p(-x * y)
        - log_norm
    )


def test_bivariate_log_prob_is_olkin_liu_formula():
    rng = np.random.default_rng(6)
    conc = np.exp(rng.uniform(np.log(0.05), np.log(50.0), size=(200, 3)))
    value = rng.uniform(1e-4, 1 - 1e-4, size=(200, 2))
    ref = _olkin_liu_log_density(value[:, 0], value[:, 1], *conc.T)
    got = BivariateBeta(torch.from_numpy(conc)).log_prob(torch.from_numpy(value)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    # float32 stays close to the float64 formula at interior points
    got32 = BivariateBeta(torch.from_numpy(conc).float()).log_prob(torch.from_numpy(value).float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, rtol=1e-4, atol=1e-3)


def test_independent_log_prob_is_product_of_betas():
    rng = np.random.default_rng(7)
    conc = np.exp(rng.uniform(np.log(0.05), np.log(50.0), size=(200, 4)))
    value = rng.uniform(1e-4, 1 - 1e-4, size=(200, 2))
    ref = stats.beta.logpdf(value[:, 0], conc[:, 0], conc[:, 1]) + stats.beta.logpdf(
        value[:, 1], conc[:, 2], conc[:, 3]
    )
    got = IndependentBetaGates(torch.from_numpy(conc)).log_prob(torch.from_numpy(value)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
