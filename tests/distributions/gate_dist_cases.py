"""The one registry of distribution cases that drives the gate-distribution tests.

Every test of ``tests/distributions`` that is not specific to one family is parametrised over
:data:`CASES` (the pattern of pyro's ``tests/distributions/conftest.py``). A case is a family, a
concentration vector and a description; ``grid_ok`` marks the cases whose density is smooth
enough inside the square for product quadrature (the 5-Gamma family with
``c1 + c2 + c5 < 1`` has an integrable singular ridge along ``i + f = 1``).

Also here: independent, from-the-contract implementations (the gate maps and the Beta marginals
of each family) and a small numpy tanh-sinh rule, so that the tests do not reuse package code to
check package code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_betalstm.distributions import (
    BivariateBeta,
    FlexibleBivariateBeta,
    IndependentBetaGates,
)
from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.testing import gate_family_case, gate_family_names

#: The distributions of the registered latent gate families, with the contract of each (the
#: index sets of its gate map, from its independent case in ``pyro_betalstm.testing``).
INDEX_SETS = {
    get_gate_family(name).distribution: gate_family_case(name).index_sets
    for name in gate_family_names(latent=True)
}
FAMILIES = tuple(INDEX_SETS)
BASIS_SIZE = {
    get_gate_family(name).distribution: gate_family_case(name).basis_size
    for name in gate_family_names(latent=True)
}


@dataclass(frozen=True)
class Case:
    family: type
    concentration: tuple[float, ...]
    description: str
    grid_ok: bool = True

    @property
    def id(self) -> str:
        return f"{self.family.__name__}-{self.description}"

    def conc(self, dtype=torch.float64) -> torch.Tensor:
        return torch.tensor(self.concentration, dtype=dtype)

    def dist(self, dtype=torch.float64, **kwargs):
        return self.family(self.conc(dtype), **kwargs)


CASES = [
    Case(BivariateBeta, (0.5, 0.6, 0.7), "small"),
    Case(BivariateBeta, (2.0, 3.0, 1.5), "moderate"),
    Case(BivariateBeta, (10.0, 12.0, 9.0), "large"),
    Case(BivariateBeta, (0.4, 8.0, 2.0), "asymmetric"),
    Case(IndependentBetaGates, (0.5, 0.6, 0.7, 0.8), "small"),
    Case(IndependentBetaGates, (2.0, 3.0, 1.5, 2.5), "moderate"),
    Case(IndependentBetaGates, (10.0, 12.0, 9.0, 11.0), "large"),
    Case(IndependentBetaGates, (0.4, 8.0, 2.0, 0.6), "asymmetric"),
    Case(FlexibleBivariateBeta, (0.5, 0.6, 0.7, 0.8, 0.9), "small"),
    Case(FlexibleBivariateBeta, (2.0, 3.0, 1.5, 2.5, 4.0), "moderate"),
    Case(FlexibleBivariateBeta, (10.0, 12.0, 9.0, 11.0, 10.0), "large"),
    Case(FlexibleBivariateBeta, (0.8, 5.0, 2.0, 0.7, 3.0), "asymmetric"),
    # c3 = c4 dominate: i ~ 1 - f, correlation about -0.91; singular ridge on i + f = 1.
    Case(FlexibleBivariateBeta, (0.3, 0.3, 5.0, 5.0, 0.3), "negative-corr", grid_ok=False),
]


def cases(*, family=None, grid_ok=None):
    """``pytest.param`` list of the registry, optionally filtered."""
    out = []
    for case in CASES:
        if family is not None and case.family is not family:
            continue
        if grid_ok is not None and case.grid_ok != grid_ok:
            continue
        out.append(pytest.param(case, id=case.id))
    return out


# ----- the contract, written independently of the package ---------------------------------------
def _sums(x, family):
    """The four index-set sums (numerators and rests) of ``x`` (numpy or torch, last dim K)."""
    return [sum(x[..., k] for k in index) for index in INDEX_SETS[family]]


def gates_from_basis_reference(family, u):
    """The gate maps of the contract, on a Gamma basis ``u`` (numpy or torch, last dim K)."""
    num_i, rest_i, num_f, rest_f = _sums(u, family)
    return num_i / (num_i + rest_i), num_f / (num_f + rest_f)


def marginal_params_reference(family, c):
    """``((alpha_i, beta_i), (alpha_f, beta_f))``: Beta marginals of the contract."""
    a_i, b_i, a_f, b_f = _sums(c, family)
    return (a_i, b_i), (a_f, b_f)


# ----- quadrature -----------------------------------------------------------------------------
def tanh_sinh(lo: float, hi: float, num: int, half_width: float = 3.0):
    """Tanh-sinh nodes and weights on ``[lo, hi]`` (endpoint singularities of integrable power)."""
    s = np.linspace(-half_width, half_width, num)
    h = s[1] - s[0]
    z = 0.5 * np.pi * np.sinh(s)
    # distances from the two endpoints, computed without cancellation
    d_lo = (hi - lo) / (1.0 + np.exp(-2 * z))
    d_hi = (hi - lo) / (1.0 + np.exp(2 * z))
    x = np.where(z < 0, lo + d_lo, hi - d_hi)
    w = (hi - lo) * 0.5 * h * 0.5 * np.pi * np.cosh(s) / np.cosh(z) ** 2
    return x, w


NUM_CELLS = 6  # a 6 x 6 grid of cells, uniform in the marginal-CDF (copula) coordinates


def cell_edges(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges in (i, f): the k/6 quantiles of the Beta marginals of the contract."""
    (ai, bi), (af, bf) = marginal_params_reference(case.family, np.array(case.concentration))
    q = np.linspace(0.0, 1.0, NUM_CELLS + 1)
    return stats.beta.ppf(q, ai, bi), stats.beta.ppf(q, af, bf)


@functools.cache
def cell_masses(case: Case) -> np.ndarray:
    """Probability of each of the 6 x 6 cells under ``case.dist().log_prob``.

    The integral runs in the copula coordinates ``(F_i(i), F_f(f))`` of the Beta marginals,
    where each cell is a square of side 1/6 and the integrand ``p(i, f) / (p_i(i) p_f(f))`` is
    much smoother than ``p`` (the marginal edge singularities cancel). Rule per cell: tanh-sinh
    with 30 nodes per side for the closed-form families (the Olkin-Liu copula has a corner
    singularity), Gauss-Legendre with 8 nodes for the 5-Gamma family (smooth copula, costly
    density). Measured against twice the nodes: cell masses agree to 5e-5 or better.
    """
    n = NUM_CELLS
    if case.family is FlexibleBivariateBeta:
        g, gw = np.polynomial.legendre.leggauss(8)
        u = (np.arange(n)[:, None] + 0.5 * (g[None, :] + 1.0)) / n
        wu = np.broadcast_to(gw / (2 * n), u.shape)
    else:
        nodes = [tanh_sinh(k / n, (k + 1) / n, 30) for k in range(n)]
        u, wu = np.stack([x for x, _ in nodes]), np.stack([w for _, w in nodes])
    m = u.shape[1]
    (ai, bi), (af, bf) = marginal_params_reference(case.family, np.array(case.concentration))
    x, y = stats.beta.ppf(u, ai, bi), stats.beta.ppf(u, af, bf)
    lpx, lpy = stats.beta.logpdf(x, ai, bi), stats.beta.logpdf(y, af, bf)
    X = np.broadcast_to(x[:, None, :, None], (n, n, m, m))
    Y = np.broadcast_to(y[None, :, None, :], (n, n, m, m))
    value = torch.from_numpy(np.stack([X, Y], -1).copy())
    log_copula = case.dist().log_prob(value).numpy() - lpx[:, None, :, None] - lpy[None, :, None, :]
    W = wu[:, None, :, None] * wu[None, :, None, :]
    integrand = np.where(np.isfinite(log_copula), np.exp(log_copula), 0.0)
    return (integrand * W).sum((-1, -2))
