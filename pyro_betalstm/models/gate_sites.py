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

Several draws at once: inside an outer ``pyro.plate`` (vectorised particles,
``Trace_ELBO(num_particles=k, vectorize_particles=True)``, ``Predictive(parallel=True)``) a site
is expanded to batch shape ``(*draws, B)`` and its value is ``(*draws, B, T, H, K)``; the
``N = prod(draws)`` recurrences run at once, folded into the layer's batch (``(N * B, T, ...)``,
draw-major, see :func:`fold_draws`), and :class:`FoldedDraws` gives the task's observation the
plates' batch shape. ``sample_shape`` is not supported (Pyro draws in plates).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints, kl_divergence
from torch.distributions.kl import register_kl

from ..distributions import LogGamma, gamma_kl
from ..distributions.numerics import sample_log_gamma
from ..nn.layer import LayerRun
from ..priors import GatePrior, is_log_space

#: ``run_layer(log_basis_or_None, num_draws) -> LayerRun``: run a layer for given values (or
#: drawing them), ``num_draws`` draws folded into the batch: ``(num_draws * B, T, ...)``.
RunLayer = Callable[[torch.Tensor | None, int], LayerRun]

#: The dimensions of a gate site's event, ``(T, H, K)``.
EVENT_DIMS = 3


def draw_shape_of(value: torch.Tensor) -> torch.Size:
    """The leading sample dimensions of a gate site's value ``(*draws, B, T, H, K)``."""
    return value.shape[: value.dim() - EVENT_DIMS - 1]


def fold_draws(t: torch.Tensor, draw_shape: torch.Size) -> torch.Tensor:
    """``(*draws, B, ...)`` -> ``(N * B, ...)``, ``N = prod(draws)`` (draw-major)."""
    return t.reshape((-1,) + t.shape[len(draw_shape) + 1 :]) if draw_shape else t


def unfold_draws(t: torch.Tensor, draw_shape: torch.Size) -> torch.Tensor:
    """``(N * B, ...)`` -> ``(*draws, B, ...)``, the inverse of :func:`fold_draws`."""
    return t.reshape(draw_shape + (-1,) + t.shape[1:]) if draw_shape else t


def _masked_sum(per_step: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum ``(B, T, ...)`` over every dimension but the batch, keeping only valid steps."""
    per_step = per_step.flatten(2).sum(-1) if per_step.dim() > 2 else per_step
    if mask is not None:  # where, not a product: a non-finite padded step must not leak (inf * 0)
        per_step = torch.where(mask, per_step, per_step.new_zeros(()))
    return per_step.sum(-1)


class KeptRun:
    """The layer run behind a site's value, shared by a site and its expanded copies."""

    def __init__(self, run: LayerRun | None = None, value: torch.Tensor | None = None):
        self.run = run  # folded: (N * B, T, ...)
        self.value = value  # the site's value: (*draws, B, T, H, K)


class _GateSequence(TorchDistribution):
    """A layer's log-basis ``(B, T, H, K)``. Expanded to a batch shape ``(*draws, B)`` (by an
    outer ``pyro.plate``: vectorised particles, ``Predictive(parallel=True)``), it runs the
    ``N = prod(draws)`` recurrences at once, folded into the batch of the layer."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, EVENT_DIMS)

    def __init__(self, shape: torch.Size, mask: torch.Tensor | None, run_layer: RunLayer):
        self.mask = mask
        self.run_layer = run_layer
        self.kept = KeptRun()
        self.draw_shape = torch.Size()
        super().__init__(torch.Size(shape[:1]), torch.Size(shape[1:]), validate_args=False)

    @property
    def run(self) -> LayerRun | None:
        """The run of the last value sampled or scored (draws folded into its batch)."""
        return self.kept.run

    def _keep(self, run: LayerRun, draw_shape: torch.Size) -> torch.Tensor:
        self.kept.run, self.kept.value = run, unfold_draws(run.log_basis, draw_shape)
        return self.kept.value

    def _num_draws(self, draw_shape: torch.Size) -> int:
        return math.prod(draw_shape)

    def folded_mask(self, draw_shape: torch.Size) -> torch.Tensor | None:
        """The ``(B, T)`` step mask repeated for ``N`` folded draws, ``(N * B, T)``."""
        if self.mask is None or not draw_shape:
            return self.mask
        return self.mask.repeat(self._num_draws(draw_shape), 1)

    def run_for(self, value: torch.Tensor) -> LayerRun:
        """The layer run that produced ``value``: the kept one, or a recomputation."""
        if self.kept.run is None or self.kept.value is not value:
            self._check_value_shape(value)
            draw_shape = draw_shape_of(value)
            run = self.run_layer(fold_draws(value, draw_shape), self._num_draws(draw_shape))
            self.kept.run, self.kept.value = run, value
        return self.kept.run

    def _check_value_shape(self, value) -> None:
        """A value given to the site (``poutine.condition``, a replayed trace) must be a log-basis
        ``(*draws, B, T, H, K)`` of this batch: a longer one would be cut by the layer and
        scored whole, a shorter one fail inside the recurrence."""
        expected = self.batch_shape[-1:] + self.event_shape
        if not isinstance(value, torch.Tensor) or value.shape[-4:] != expected:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"a gate site's value must be a log-basis (*draws, batch, time, hidden, K) "
                f"ending in {tuple(expected)}, got {got}"
            )

    def _sum_per_sequence(self, per_step: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Folded per-step terms ``(N * B, T, ...)`` summed per sequence, ``(*draws, B)``."""
        draw_shape = draw_shape_of(value)
        return unfold_draws(_masked_sum(per_step, self.folded_mask(draw_shape)), draw_shape)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        if batch_shape[-1:] != self.batch_shape[-1:]:
            raise ValueError(
                f"cannot expand the gate site from batch shape {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}: only leading sample dimensions (*draws, "
                f"{self.batch_shape[-1]}) may be added"
            )
        new = copy.copy(self)  # shares the kept run with this site
        new.draw_shape = batch_shape[:-1]
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        return new

    def _check_sample_shape(self, sample_shape) -> None:
        if sample_shape:
            raise NotImplementedError(
                f"sample_shape {tuple(sample_shape)}: draw several gate samples in a pyro.plate "
                "(vectorised particles, Predictive(parallel=True)) or one at a time"
            )


class GuideGateSequence(_GateSequence):
    """Amortised guide over one layer's log-basis: ``q(u_t | x_t, h_{t-1}) = Gamma(alpha_t, 1)``."""

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()):
        self._check_sample_shape(sample_shape)
        run = self.run_layer(None, self._num_draws(self.draw_shape))
        return self._keep(run, self.draw_shape)

    def log_prob(self, value):
        """The guide's log density of a log-basis ``(*draws, B, T, H, K)``, summed over each
        sequence's valid steps: ``(*draws, B)``."""
        run = self.run_for(value)
        lp = LogGamma(run.alpha).log_prob(fold_draws(value, draw_shape_of(value)))
        return self._sum_per_sequence(lp, value)


class PriorGateSequence(_GateSequence):
    """Model side of a gate site: the user's prior evaluated along the layer's recurrence.

    ``sample`` runs the recurrence drawing each step's basis from the prior given
    ``(x_t, h_{t-1})``; ``log_prob`` evaluates the prior of the given values.
    ``sample_run(num_draws)`` runs the layer drawing from the prior.
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
        self._check_sample_shape(sample_shape)
        run = self.sample_run(self._num_draws(self.draw_shape))
        return self._keep(run, self.draw_shape)

    def log_prob(self, value):
        """The prior's log density of a log-basis ``(*draws, B, T, H, K)``, summed over each
        sequence's valid steps: ``(*draws, B)``."""
        run = self.run_for(value)
        folded = fold_draws(value, draw_shape_of(value))
        lp = prior_log_density(self.prior_distribution(run), folded, self.layer)
        if lp.dim() == folded.dim():  # elementwise: the basis first (the summation order of fit)
            lp = lp.sum(-1)
        return self._sum_per_sequence(lp, value)


class FoldedDraws(TorchDistribution):
    """A distribution of batch shape ``(N * B, *rest)`` (a task's observation of ``N`` folded
    draws) seen as batch shape ``(*draws, B, *rest)``, the shape the enclosing plates expect."""

    arg_constraints: dict = {}

    def __init__(self, base: torch.distributions.Distribution, draw_shape: torch.Size):
        self.base, self.draw_shape = base, torch.Size(draw_shape)
        per_draw = base.batch_shape[0] // math.prod(self.draw_shape)
        batch = self.draw_shape + (per_draw,) + base.batch_shape[1:]
        super().__init__(batch, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    def expand(self, batch_shape, _instance=None):
        """This distribution itself when ``batch_shape`` is its own batch shape; a ValueError for
        any other shape (the folded draws cannot be expanded)."""
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError(f"cannot expand {tuple(self.batch_shape)} to {tuple(batch_shape)}")
        return self

    def _fold(self, value: torch.Tensor) -> torch.Tensor:
        value = value.expand(self.batch_shape + self.event_shape)
        return fold_draws(value, self.draw_shape)

    def log_prob(self, value):
        """The base's log density of ``value`` ``(*draws, B, ...)``, computed folded."""
        return unfold_draws(self.base.log_prob(self._fold(value)), self.draw_shape)

    def sample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("FoldedDraws draws one sample per batch element")
        return unfold_draws(self.base.sample(), self.draw_shape)

    def rsample(self, sample_shape=torch.Size()):
        if sample_shape:
            raise NotImplementedError("FoldedDraws draws one sample per batch element")
        return unfold_draws(self.base.rsample(), self.draw_shape)


def _unwrapped(d) -> torch.distributions.Distribution:
    """``d`` without its ``Independent`` wrappers (``.to_event`` only regroups dimensions)."""
    while isinstance(d, torch.distributions.Independent):
        d = d.base_dist
    return d


def _is_positive_support(support) -> bool:
    """Whether ``support`` is ``u > 0`` or ``u >= 0`` (a bound that is a tensor, such as a
    Pareto's scale, is not read: a host sync, and not all of ``u > 0`` anyway)."""
    bound = getattr(support, "lower_bound", None)
    kinds = (type(constraints.positive), type(constraints.nonnegative))
    return isinstance(support, kinds) and isinstance(bound, numbers.Number) and bound == 0


def _check_prior_kind(d, layer: int) -> None:
    """A prior must give a distribution over ``u > 0`` or over ``log u`` (real support): anything
    else fails deep in the ELBO (not a Distribution) or gives an infinite loss (a support, such
    as a Beta's, that the Gamma guide's draws leave)."""
    expected = (
        "a prior must return a torch Distribution whose support is all of u > 0 (Gamma, "
        "Exponential, LogNormal...) or all of the real line, taken as log u (LogGamma, Normal...)"
    )
    if not isinstance(d, torch.distributions.Distribution):
        raise ValueError(f"the prior of layer {layer} returned {type(d).__name__}; {expected}")
    support = d.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if not (is_log_space(d) or _is_positive_support(support)):
        raise ValueError(
            f"the prior of layer {layer} is a {type(d).__name__} with support {support}; {expected}"
        )


def _check_prior_shape(d, shape: torch.Size, layer: int) -> None:
    _check_prior_kind(d, layer)
    prior_shape = d.batch_shape + d.event_shape
    try:
        fits = torch.broadcast_shapes(prior_shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits or len(d.event_shape) > 2:
        raise ValueError(
            f"the prior of layer {layer} has batch_shape {tuple(d.batch_shape)} and event_shape "
            f"{tuple(d.event_shape)}; together they must broadcast to the basis they score, "
            f"{tuple(shape)} (leading dimensions, then hidden_size {shape[-2]} and K "
            f"{shape[-1]}), with at most those last two dimensions in the event"
        )


def _check_prior_device(d, device: torch.device, layer: int) -> None:
    """The prior's parameters (its tensors of one or more dimensions; a 0-d CPU tensor mixes
    with any device) must be on the basis's device: a prior that keeps a plain tensor
    attribute does not move with ``model.to("cuda")``, and torch's error would not name it."""
    parts = [_unwrapped(d)]
    base = getattr(parts[0], "base_dist", None)  # a TransformedDistribution (LogNormal...)
    if isinstance(base, torch.distributions.Distribution):
        parts.append(_unwrapped(base))
    for part in parts:
        for name, value in vars(part).items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.device != device:
                raise ValueError(
                    f"the prior of layer {layer} returned a {type(part).__name__} whose "
                    f"{name.lstrip('_')} is on {value.device}, but the network runs on {device}: "
                    "make such tensors on prev_hidden.device, or keep them in the prior as "
                    "buffers (register_buffer) so that they move with the model"
                )


def prior_log_density(d, log_basis: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """The prior's log-density of the log-basis ``y = log u`` ``(B, T, H, K)``, not yet summed
    (at least ``(B, T)``): the density of ``log u`` itself for a prior over the real line, and
    ``p_u(e^y) e^y`` (the Jacobian summed over the prior's event dimensions) for one over
    ``u > 0``. A Gamma or LogGamma prior is evaluated in log space, without forming ``u``
    (which underflows to 0 for small concentrations)."""
    _check_prior_shape(d, log_basis.shape, layer)
    _check_prior_device(d, log_basis.device, layer)
    params = prior_concentration_rate(d)
    if params is not None:
        return LogGamma(*params).log_prob(log_basis)
    if is_log_space(d):
        return d.log_prob(log_basis)
    event_dims = len(d.event_shape)
    jacobian = log_basis.flatten(-event_dims).sum(-1) if event_dims else log_basis
    return d.log_prob(log_basis.exp()) + jacobian


def sample_prior_log_basis(
    d, shape: torch.Size, layer: int = 0, like: torch.Tensor | None = None
) -> torch.Tensor:
    """A draw of the log-basis of one step, ``shape = (B, H, K)``, from the prior ``d``, every
    element an independent draw. A Gamma or LogGamma prior is drawn in log space (no float32
    underflow for small concentrations); any other prior is expanded and drawn, then its log
    taken unless it is already over log u. With ``like``, the draw is checked to be on its
    device and returned in its dtype (a float32 prior in a float64 model)."""
    _check_prior_shape(d, shape, layer)
    if like is not None:
        _check_prior_device(d, like.device, layer)
    params = prior_concentration_rate(d)
    if params is not None:
        dtype = like.dtype if like is not None else params[0].dtype
        conc, rate = (p.expand(shape).to(dtype) for p in params)
        return sample_log_gamma(conc) - rate.log()
    batch = shape[: len(shape) - len(d.event_shape)]
    if d.batch_shape != batch:
        d = d.expand(batch)
    value = d.rsample() if d.has_rsample else d.sample()
    value = value if is_log_space(d) else value.log()
    return value if like is None else value.to(like.dtype)


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
    return q._sum_per_sequence(basis_kl(run.alpha, d), q.kept.value)
