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
an unbiased, lower-variance estimate of the KL between the two sequence laws. The step KL is
the Gamma one for a Gamma or LogGamma prior (also wrapped in ``.to_event``), else the one
``torch.distributions.kl_divergence`` knows for the prior (``Exponential``, say); with none it
raises ``NotImplementedError`` so that the ELBO falls back to Monte Carlo.

A prior may be any ``TorchDistribution`` over ``u > 0`` or over ``log u`` (real support), batch
or event shaped (``.to_event``), whose ``batch_shape + event_shape`` broadcasts to the step's
``(B, H, K)`` (see :mod:`pyro_betalstm.priors`).

The sites hold a whole recurrence, run one draw at a time, so they take no leading sample
dimension: :data:`NO_SAMPLE_DIMENSION` says what to use instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints, kl_divergence
from torch.distributions.kl import register_kl

from ..distributions import LogGamma, gamma_kl
from ..nn.layer import LayerRun
from ..priors import GatePrior, is_log_space

#: ``run_layer(log_basis_or_None) -> LayerRun``: recompute a layer run for given values.
RunLayer = Callable[[torch.Tensor | None], LayerRun]

#: Why a gate site takes no leading sample dimension, and what to use instead.
NO_SAMPLE_DIMENSION = (
    "a gate site holds a whole recurrence over time, drawn one sample at a time, so it takes no "
    "leading sample dimension: vectorised particles (Trace_ELBO(vectorize_particles=True)), "
    "Predictive(parallel=True), an outer pyro.plate around the model and sample_shape are not "
    "supported. Use sequential particles instead (Trace_ELBO(num_particles=k) or "
    "GateMeanFieldELBO(num_particles=k), with vectorize_particles=False), "
    "Predictive(..., parallel=False), or pyro_betalstm.infer.sample_gates for gate draws"
)


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
            raise NotImplementedError(
                f"cannot expand the gate site from batch shape {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}: {NO_SAMPLE_DIMENSION}"
            )
        return self


class GuideGateSequence(_GateSequence):
    """Amortised guide over one layer's log-basis: ``q(u_t | x_t, h_{t-1}) = Gamma(alpha_t, 1)``."""

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError(f"sample_shape {tuple(sample_shape)}: {NO_SAMPLE_DIMENSION}")
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
            raise NotImplementedError(f"sample_shape {tuple(sample_shape)}: {NO_SAMPLE_DIMENSION}")
        self.run = self.sample_run()
        return self.run.log_basis

    def log_prob(self, value):
        run = self.run_for(value)
        lp = prior_log_density(self.prior_distribution(run), value, self.layer)
        if lp.dim() == value.dim():  # elementwise: the basis first (the summation order of fit)
            lp = lp.sum(-1)
        return _masked_sum(lp, self.mask)


def _unwrapped(d) -> torch.distributions.Distribution:
    """``d`` without its ``Independent`` wrappers (``.to_event`` only regroups dimensions)."""
    while isinstance(d, torch.distributions.Independent):
        d = d.base_dist
    return d


def _check_prior_shape(d, shape: torch.Size, layer: int) -> None:
    prior_shape = d.batch_shape + d.event_shape
    try:
        fits = torch.broadcast_shapes(prior_shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits or len(d.event_shape) > 2:
        raise ValueError(
            f"the prior of layer {layer} has batch_shape {tuple(d.batch_shape)} and event_shape "
            f"{tuple(d.event_shape)}; together they must broadcast to the basis of one step, "
            f"(..., hidden_size, K) = (..., {shape[-2]}, {shape[-1]}), with at most those two "
            "dimensions in the event"
        )


def prior_log_density(d, log_basis: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """The prior's log-density of the log-basis ``y = log u`` ``(B, T, H, K)``, not yet summed
    (at least ``(B, T)``): the density of ``log u`` itself for a prior over the real line, and
    ``p_u(e^y) e^y`` (the Jacobian summed over the prior's event dimensions) for one over
    ``u > 0``. A Gamma or LogGamma prior is evaluated in log space, without forming ``u``
    (which underflows to 0 for small concentrations)."""
    _check_prior_shape(d, log_basis.shape, layer)
    params = prior_concentration_rate(d)
    if params is not None:
        return LogGamma(*params).log_prob(log_basis)
    if is_log_space(d):
        return d.log_prob(log_basis)
    event_dims = len(d.event_shape)
    jacobian = log_basis.flatten(-event_dims).sum(-1) if event_dims else log_basis
    return d.log_prob(log_basis.exp()) + jacobian


def sample_prior_log_basis(d, shape: torch.Size, layer: int = 0) -> torch.Tensor:
    """A draw of the log-basis of one step, ``shape = (B, H, K)``, from a prior ``d`` that is
    neither Gamma nor LogGamma (those are drawn in log space by the model): ``d`` is expanded to
    ``shape``, so every element is an independent draw."""
    _check_prior_shape(d, shape, layer)
    batch = shape[: len(shape) - len(d.event_shape)]
    if d.batch_shape != batch:
        d = d.expand(batch)
    value = d.rsample() if d.has_rsample else d.sample()
    return value if is_log_space(d) else value.log()


def prior_concentration_rate(d) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(concentration, rate)`` of a Gamma or LogGamma prior (elementwise, also inside
    ``.to_event``), else None."""
    base = _unwrapped(d)
    if isinstance(base, torch.distributions.Gamma | LogGamma):
        return base.concentration, base.rate
    return None


def basis_kl(alpha: torch.Tensor, d) -> torch.Tensor:
    """Elementwise ``KL(Gamma(alpha, 1) || d)`` over the basis, ``(B, T, H, K)``: analytic for a
    Gamma or LogGamma prior, else what ``torch.distributions.kl_divergence`` has registered for
    the pair (the Gamma guide against a prior over ``u``, or its LogGamma against one over
    ``log u``). Raises ``NotImplementedError`` when there is none."""
    params = prior_concentration_rate(d)
    if params is not None:
        return gamma_kl(alpha, params[0], 1.0, params[1])
    base = _unwrapped(d)
    if base.event_shape:  # an event over several basis variables: no elementwise KL
        raise NotImplementedError("no elementwise KL for a prior with its own event shape")
    if is_log_space(base):
        guide = LogGamma(alpha)
    else:
        guide = torch.distributions.Gamma(alpha, torch.ones_like(alpha))
    return kl_divergence(guide, base)


@register_kl(GuideGateSequence, PriorGateSequence)
def _kl_gate_sequences(q: GuideGateSequence, p: PriorGateSequence) -> torch.Tensor:
    run = q.run
    if run is None:
        raise NotImplementedError("the guide site has not been sampled")
    d = p.prior_distribution(run)
    _check_prior_shape(d, run.alpha.shape, p.layer)
    return _masked_sum(basis_kl(run.alpha, d), q.mask)
