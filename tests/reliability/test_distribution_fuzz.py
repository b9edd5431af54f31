"""Property-based fuzzing of the gate distributions with ``hypothesis``: batch shapes (empty
included), concentrations from 1e-6 to 1e6, dtypes float32/float64 (float16 must raise).

Every test is derandomized (the same examples every run) with a stated number of examples.
Properties are exact (shapes, finiteness, ranges), so no statistical tolerance is needed;
the one numeric comparison states its tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_betalstm.distributions import BivariateBeta, IndependentBetaGates
from pyro_betalstm.distributions._gate_distribution import (
    CORRELATION_MAX_SPREAD,
    CORRELATION_RANGE,
)
from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.testing import gate_family_case, gate_family_names

#: the distributions of the registered latent gate families, with their basis sizes
FAMILIES = {
    get_gate_family(name).distribution: gate_family_case(name).basis_size
    for name in gate_family_names(latent=True)
}
FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
shapes = st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple)
log10_conc = st.floats(-6.0, 6.0)
dtypes = st.sampled_from([torch.float32, torch.float64])
families = st.sampled_from(list(FAMILIES))


def _concentration(draw, family, shape, dtype) -> torch.Tensor:
    k = FAMILIES[family]
    n = math.prod(shape) * k
    values = draw(st.lists(log10_conc, min_size=n, max_size=n))
    return (10.0 ** torch.tensor(values, dtype=torch.float64)).reshape(*shape, k).to(dtype)


@st.composite
def cases(draw):
    family, shape, dtype = draw(families), draw(shapes), draw(dtypes)
    return family, _concentration(draw, family, shape, dtype)


@settings(FUZZ, max_examples=80)
@given(case=cases(), sample_shape=shapes)
def test_samples_are_inside_and_log_prob_is_finite(case, sample_shape):
    """80 examples: samples lie in the open square, so log_prob of them is finite (float32
    saturation at exactly 0 or 1 is moved inside), with the documented shapes."""
    family, conc = case
    torch.manual_seed(0)
    d = family(conc)
    x = d.rsample(sample_shape)
    assert x.shape == torch.Size(sample_shape) + conc.shape[:-1] + (2,)
    assert x.dtype == conc.dtype
    assert bool(((x > 0) & (x < 1)).all())
    lp = d.log_prob(x)
    assert lp.shape == torch.Size(sample_shape) + conc.shape[:-1]
    assert bool(torch.isfinite(lp).all()), (family.__name__, conc, x, lp)


@settings(FUZZ, max_examples=80)
@given(case=cases())
def test_moments_are_finite_and_in_range(case):
    """80 examples: mean in [0, 1] and variance in [0, 1/4], finite for every concentration in
    [1e-6, 1e6] and both dtypes; an empty batch gives empty moments."""
    family, conc = case
    d = family(conc)
    mean, var = d.mean, d.variance
    assert mean.shape == var.shape == conc.shape[:-1] + (2,)
    assert bool(torch.isfinite(mean).all() and torch.isfinite(var).all())
    assert bool(((mean >= 0) & (mean <= 1)).all())
    assert bool(((var >= 0) & (var <= 0.25)).all())


@settings(FUZZ, max_examples=40)
@given(case=cases())
def test_correlation_is_a_correlation_or_a_clear_error(case):
    """40 examples: inside CORRELATION_RANGE, for gate pairs whose concentrations differ by at
    most CORRELATION_MAX_SPREAD, the correlation is finite and in [-1, 1] (an excess of 1e-6
    is allowed for quadrature error); otherwise it raises a ValueError naming the range or the
    spread (never a silent wrong value)."""
    family, conc = case
    d = family(conc)
    low, high = CORRELATION_RANGE
    inside = conc.numel() == 0 or (float(conc.min()) >= low and float(conc.max()) <= high)
    narrow = conc.numel() == 0 or float((conc.amax(-1) / conc.amin(-1)).max()) <= (
        CORRELATION_MAX_SPREAD
    )
    if family is IndependentBetaGates:
        assert bool((d.correlation == 0).all())
    elif inside and narrow:
        corr = d.correlation
        assert corr.shape == conc.shape[:-1]
        assert bool(torch.isfinite(corr).all() and (corr.abs() <= 1 + 1e-6).all())
    elif not inside:
        with pytest.raises(ValueError, match=r"correlation is computed for concentrations in"):
            _ = d.correlation
    else:
        with pytest.raises(ValueError, match=r"concentrations differ by a factor of at most"):
            _ = d.correlation


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_unsupported_dtype_is_a_clear_error(family, dtype):
    conc = torch.ones(FAMILIES[family], dtype=dtype)
    if dtype == torch.int64:  # integers are converted to the default dtype, as torch does
        assert family(conc).concentration.dtype == torch.get_default_dtype()
        return
    with pytest.raises(TypeError, match="supported dtypes are float32 and float64"):
        family(conc)


def test_bivariate_correlation_limits():
    """Olkin-Liu correlation tends to 1/3 as all concentrations go to 0 and to 1/2 as they
    grow; at the ends of CORRELATION_RANGE it is within 2e-3 of those limits."""
    low, high = CORRELATION_RANGE
    assert float(
        BivariateBeta(torch.full((3,), low, dtype=torch.float64)).correlation
    ) == pytest.approx(1 / 3, abs=2e-3)
    assert float(
        BivariateBeta(torch.full((3,), high, dtype=torch.float64)).correlation
    ) == pytest.approx(1 / 2, abs=2e-3)
