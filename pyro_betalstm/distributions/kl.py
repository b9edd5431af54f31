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


class _UnitRateGammaKL(torch.autograd.Function):
    """``KL(Gamma(a, 1) || Gamma(b, 1))`` with its gradient in closed form.

    Autograd of the textbook formula evaluates digamma three times more than needed: the
    gradients are ``(a - b) * trigamma(a)`` for ``a`` and ``digamma(b) - digamma(a)`` for ``b``.
    """

    @staticmethod
    def forward(ctx, a, b):
        digamma_a = torch.digamma(a)
        ctx.save_for_backward(a, b, digamma_a)
        return (a - b) * digamma_a - torch.lgamma(a) + torch.lgamma(b)

    @staticmethod
    def backward(ctx, grad):
        a, b, digamma_a = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = grad * (a - b) * torch.polygamma(1, a)
        if ctx.needs_input_grad[1]:
            grad_b = grad * (torch.digamma(b) - digamma_a)
        return _sum_to(grad_a, a.shape), _sum_to(grad_b, b.shape)


def _is_one(rate) -> bool:
    if isinstance(rate, torch.Tensor):
        return bool((rate == 1).all())
    return float(rate) == 1.0


def _sum_to(grad, shape):
    if grad is None or grad.shape == shape:
        return grad
    return grad.sum_to_size(shape)


def gamma_kl(
    q_concentration: torch.Tensor,
    p_concentration: torch.Tensor,
    q_rate: torch.Tensor | float = 1.0,
    p_rate: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Elementwise ``KL(Gamma(q_concentration, q_rate) || Gamma(p_concentration, p_rate))``."""
    a = q_concentration
    b = torch.as_tensor(p_concentration, dtype=a.dtype, device=a.device)
    if _is_one(q_rate) and _is_one(p_rate):
        # Not broadcast first: a prior's concentration is usually one value per basis, and its
        # lgamma (and digamma in the backward) is then taken once, not once per element.
        return _UnitRateGammaKL.apply(a, b)
    q_rate = torch.as_tensor(q_rate, dtype=a.dtype, device=a.device)
    p_rate = torch.as_tensor(p_rate, dtype=a.dtype, device=a.device)
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
