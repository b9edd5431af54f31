"""KL divergences of the Gamma bases and of the gate laws, registered with ``torch.distributions.kl``.

**The basis KL.** For two gate distributions of the same family, :func:`basis_kl` (also
:meth:`~pyro_betalstm.distributions.GateDistribution.basis_kl`) is the KL divergence between
their Gamma bases,

.. math::

    \\mathrm{KL}\\big(q(u) \\,\\|\\, p(u)\\big) = \\sum_k \\mathrm{KL}\\big(\\mathrm{Gamma}(a_k, 1)
    \\,\\|\\, \\mathrm{Gamma}(b_k, 1)\\big),

which is an **upper bound** on the KL divergence between the gate laws themselves: the gates are a
deterministic, many-to-one function of the basis, and KL cannot grow under such a map
(data-processing inequality). It is the quantity the paper's ELBO uses, and it is exact for the
latent variable of the Pyro model, which lives on the basis (its sites are
:class:`~pyro_betalstm.distributions.LogGamma`; between two of those the registered KL is exact,
the logarithm being a bijection).

**The gate laws' KL.** ``torch.distributions.kl_divergence(q, p)`` of two gate distributions is
the KL of the laws of ``(i, f)``, as torch defines it, never the bound: registered (exactly) for
:class:`~pyro_betalstm.distributions.IndependentBetaGates`, the sum of two Beta KLs, and not
registered for the bivariate families, whose gate-law KL has no closed form. So a Pyro program
with a gate pair as its latent site gets the right objective from ``TraceMeanField_ELBO``,
which estimates an unregistered KL from the draws.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch.distributions import Beta, kl_divergence
from torch.distributions.kl import register_kl

from ._gate_distribution import GateDistribution
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
        if torch.is_grad_enabled():
            # a double backward (create_graph=True): the saved digamma(a) carries no graph, so
            # it is taken again from a, and the second derivatives stay exact
            digamma_a = torch.digamma(a)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = grad * (a - b) * torch.polygamma(1, a)
        if ctx.needs_input_grad[1]:
            grad_b = grad * (torch.digamma(b) - digamma_a)
        return _sum_to(grad_a, a.shape), _sum_to(grad_b, b.shape)


def _is_one(rate) -> bool:
    """Whether a rate is known to be 1 without waiting for a device: a tensor off the CPU is
    not read (on a GPU that would stall every SVI step) and takes the rate terms, which add
    exact zeros where it is 1."""
    if isinstance(rate, torch.Tensor):
        return rate.device.type == "cpu" and bool((rate == 1).all())
    return float(rate) == 1.0


def _sum_to(grad, shape):
    if grad is None or grad.shape == shape:
        return grad
    return grad.sum_to_size(shape)


def _check_number(name: str, value) -> None:
    """A parameter given as a number (or a sequence of them): positive and finite, checked on
    the host, where it is (a plain number without making a tensor)."""
    if isinstance(value, numbers.Real):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"gamma_kl: {name} must be positive and finite, got {value!r}")
        return
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"gamma_kl: {name} must be a tensor or a number, got {type(value).__name__}"
        ) from None
    if not bool((torch.isfinite(t) & (t > 0)).all()):
        raise ValueError(f"gamma_kl: {name} must be positive and finite, got {value!r}")


def _concentrations(q, p) -> tuple[torch.Tensor, torch.Tensor]:
    """Both concentrations as tensors, with the dtype and device of the first one that is a
    tensor (the default dtype when neither is)."""
    like = q if isinstance(q, torch.Tensor) else p if isinstance(p, torch.Tensor) else None
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return (
        torch.as_tensor(q, dtype=dtype, device=device),
        torch.as_tensor(p, dtype=dtype, device=device),
    )


def gamma_kl(
    q_concentration: torch.Tensor | float,
    p_concentration: torch.Tensor | float,
    q_rate: torch.Tensor | float = 1.0,
    p_rate: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Elementwise ``KL(Gamma(q_concentration, q_rate) || Gamma(p_concentration, p_rate))``.

    Each parameter is a tensor or a number (or a sequence of numbers). Numbers are checked
    positive and finite (a ValueError otherwise). Tensors are not read: this runs on every
    SVI step, once per layer, and a check would make a GPU step wait for the device; a
    non-positive or NaN tensor gives NaN (the gate distributions and priors check theirs
    when they are made).
    """
    params = {"q_concentration": q_concentration, "p_concentration": p_concentration}
    for name, value in {**params, "q_rate": q_rate, "p_rate": p_rate}.items():
        if not isinstance(value, torch.Tensor):
            _check_number(name, value)
    a, b = _concentrations(q_concentration, p_concentration)
    # Not broadcast first: a prior's concentration is usually one value per basis, and its
    # lgamma (and digamma in the backward) is then taken once, not once per element.
    kl = _UnitRateGammaKL.apply(a, b)
    if _is_one(q_rate) and _is_one(p_rate):
        return kl
    q_rate = torch.as_tensor(q_rate, dtype=a.dtype, device=a.device)
    p_rate = torch.as_tensor(p_rate, dtype=a.dtype, device=a.device)
    return kl + b * (q_rate.log() - p_rate.log()) + a * (p_rate - q_rate) / q_rate


@register_kl(LogGamma, LogGamma)
def _kl_loggamma_loggamma(q: LogGamma, p: LogGamma) -> torch.Tensor:
    return gamma_kl(q.concentration, p.concentration, q.rate, p.rate)


def basis_kl(q: GateDistribution, p: GateDistribution) -> torch.Tensor:
    """``KL(q(u) || p(u))`` of two gate distributions' Gamma bases, summed over the basis,
    shape of the broadcast batch: an upper bound on the KL of their gate laws (see the module
    docstring). Any family, a user's own included; both must have the same gate map (else a
    ValueError: different maps have different bases)."""
    if not (isinstance(q, GateDistribution) and isinstance(p, GateDistribution)):
        raise TypeError(
            f"basis_kl takes two gate distributions, got {type(q).__name__} and {type(p).__name__}"
        )
    if type(q).algebra != type(p).algebra:
        raise ValueError(
            f"basis_kl of {type(q).__name__} and {type(p).__name__}: the two laws must be of "
            "one family (the same gate map), since their bases are otherwise different "
            "variables"
        )
    return gamma_kl(q.concentration, p.concentration).sum(-1)


@register_kl(IndependentBetaGates, IndependentBetaGates)
def _kl_independent_beta_gates(q: IndependentBetaGates, p: IndependentBetaGates) -> torch.Tensor:
    # the gates are independent Beta variables: the exact KL is the sum of two Beta KLs
    qc, pc = q.concentration, p.concentration
    return kl_divergence(Beta(qc[..., 0], qc[..., 1]), Beta(pc[..., 0], pc[..., 1])) + (
        kl_divergence(Beta(qc[..., 2], qc[..., 3]), Beta(pc[..., 2], pc[..., 3]))
    )
