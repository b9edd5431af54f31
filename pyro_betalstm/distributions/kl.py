"""Analytic KL divergences between Gamma bases, registered with ``torch.distributions.kl``.

For gate distributions of the same family, the registered
``kl_divergence(q, p)`` is the KL divergence between their Gamma bases,

.. math::

    \\mathrm{KL}\\big(q(u) \\,\\|\\, p(u)\\big) = \\sum_k \\mathrm{KL}\\big(\\mathrm{Gamma}(a_k, 1)
    \\,\\|\\, \\mathrm{Gamma}(b_k, 1)\\big),

which is an **upper bound** on the KL divergence between the gate laws themselves: the gates are a
deterministic, many-to-one function of the basis, and KL cannot grow under such a map
(data-processing inequality). It is the quantity the paper's ELBO uses, and it is exact for the
latent variable of the Pyro model, which lives on the basis. Between two :class:`LogGamma` laws the
KL is exact (the logarithm is a bijection).
"""

from __future__ import annotations

import torch
from torch.distributions.kl import register_kl

from .bivariate_beta import BivariateBeta
from .flexible_bivariate_beta import FlexibleBivariateBeta
from .independent_beta import IndependentBetaGates
from .log_gamma import LogGamma


def gamma_kl(
    q_concentration: torch.Tensor,
    p_concentration: torch.Tensor,
    q_rate: torch.Tensor | float = 1.0,
    p_rate: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Elementwise ``KL(Gamma(q_concentration, q_rate) || Gamma(p_concentration, p_rate))``."""
    q_rate = torch.as_tensor(q_rate, dtype=q_concentration.dtype, device=q_concentration.device)
    p_rate = torch.as_tensor(p_rate, dtype=q_concentration.dtype, device=q_concentration.device)
    a, b = q_concentration, p_concentration
    return (
        (a - b) * torch.digamma(a)
        - torch.lgamma(a)
        + torch.lgamma(b)
        + b * (q_rate.log() - p_rate.log())
        + a * (p_rate - q_rate) / q_rate
    )


@register_kl(LogGamma, LogGamma)
def _kl_loggamma_loggamma(q: LogGamma, p: LogGamma) -> torch.Tensor:
    return gamma_kl(q.concentration, p.concentration, q.rate, p.rate)


def _kl_gate_bases(q, p) -> torch.Tensor:
    return gamma_kl(q.concentration, p.concentration).sum(-1)


for _family in (BivariateBeta, FlexibleBivariateBeta, IndependentBetaGates):
    register_kl(_family, _family)(_kl_gate_bases)
