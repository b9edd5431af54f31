"""The latent gate sites: one Pyro sample site per layer per minibatch of sequences.

Each site's value is the log Gamma basis of every gate pair of one layer, with
``batch_shape == (B,)`` (the sequence plate) and ``event_shape == (T, H, K)``. The guide's
distribution runs the layer's recurrence when it is sampled, drawing each step's basis from
the amortised ``q(u_t | x_t, h_{t-1}) = Gamma(alpha_t, 1)``, and keeps the run; the model's
distribution reuses that run when it is given the very tensor the guide sampled, and recomputes
the recurrence otherwise. Padded steps are excluded from ``log_prob`` and from the KL on both
sides.

``kl_divergence(guide_site, prior_site)`` is registered: the sum over steps of the analytic
``KL(Gamma(alpha_t, 1) || prior_t)`` at the sampled ``h_{t-1}``, which by the chain rule of KL is
an unbiased, lower-variance estimate of the KL between the two sequence laws. It raises
``NotImplementedError`` for non-Gamma priors so that Pyro falls back to Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from ..distributions import LogGamma, gamma_kl
from ..nn.layer import LayerRun
from ..priors import GatePrior, is_log_space

#: ``run_layer(log_basis_or_None) -> LayerRun``: recompute a layer run for given values.
RunLayer = Callable[[torch.Tensor | None], LayerRun]


def _masked_sum(per_step: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum ``(B, T, ...)`` over every dimension but the batch, keeping only valid steps."""
    per_step = per_step.flatten(2).sum(-1) if per_step.dim() > 2 else per_step
    if mask is not None:  # where, not a product: a non-finite padded step must not leak (inf * 0)
        per_step = torch.where(mask, per_step, per_step.new_zeros(()))
    return per_step.sum(-1)


class _GateSequence(TorchDistribution):
    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 3)

    def __init__(self, shape: torch.Size, mask: torch.Tensor | None, run_layer: RunLayer):
        self.mask = mask
        self.run_layer = run_layer
        self.run: LayerRun | None = None
        super().__init__(torch.Size(shape[:1]), torch.Size(shape[1:]), validate_args=False)

    def run_for(self, value: torch.Tensor) -> LayerRun:
        """The layer run that produced ``value``: the kept one, or a recomputation."""
        if self.run is None or self.run.log_basis is not value:
            self.run = self.run_layer(value)
        return self.run

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise NotImplementedError("gate sequence sites cannot be expanded")
        return self


class GuideGateSequence(_GateSequence):
    """Amortised guide over one layer's log-basis: ``q(u_t | x_t, h_{t-1}) = Gamma(alpha_t, 1)``."""

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("draw several gate samples with pyro.plate, not sample_shape")
        self.run = self.run_layer(None)
        return self.run.log_basis

    def log_prob(self, value):
        run = self.run_for(value)
        return _masked_sum(LogGamma(run.alpha).log_prob(value), self.mask)


class PriorGateSequence(_GateSequence):
    """Model side of a gate site: the user's prior evaluated along the layer's recurrence.

    ``sample`` runs the recurrence drawing each step's basis from the prior given
    ``(x_t, h_{t-1})``; ``log_prob`` evaluates the prior of the given values.
    """

    has_rsample = True

    def __init__(self, shape, mask, run_layer, prior: GatePrior, layer: int, sample_run):
        super().__init__(shape, mask, run_layer)
        self.prior = prior
        self.layer = layer
        self.sample_run = sample_run

    def prior_distribution(self, run: LayerRun):
        return self.prior.distribution(self.layer, run.inputs, run.previous_hidden)

    def rsample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("draw several gate samples with pyro.plate, not sample_shape")
        self.run = self.sample_run()
        return self.run.log_basis

    def log_prob(self, value):
        run = self.run_for(value)
        d = self.prior_distribution(run)
        params = prior_concentration_rate(d)
        if params is not None:  # Gamma or LogGamma prior: density of log u without forming u,
            lp = LogGamma(*params).log_prob(value)  # which underflows to 0 for small alpha
        elif is_log_space(d):
            lp = d.log_prob(value)
        else:  # density of y = log u: p_u(e^y) e^y
            lp = d.log_prob(value.exp()) + value
        if lp.dim() == value.dim():  # elementwise prior over the basis
            lp = lp.sum(-1)
        return _masked_sum(lp, self.mask)


def prior_concentration_rate(d) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(concentration, rate)`` of a Gamma or LogGamma prior (elementwise), else None."""
    base = d
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    if isinstance(base, torch.distributions.Gamma) and base is d:
        return base.concentration, base.rate
    if isinstance(base, LogGamma) and base is d:
        return base.concentration, base.rate
    return None


@register_kl(GuideGateSequence, PriorGateSequence)
def _kl_gate_sequences(q: GuideGateSequence, p: PriorGateSequence) -> torch.Tensor:
    run = q.run
    if run is None:
        raise NotImplementedError("the guide site has not been sampled")
    params = prior_concentration_rate(p.prior_distribution(run))
    if params is None:
        raise NotImplementedError("no analytic KL for this prior: Monte Carlo is used")
    concentration, rate = params
    kl = gamma_kl(run.alpha, concentration, 1.0, rate)
    return _masked_sum(kl, q.mask)
