"""Priors over the Gamma basis of the gates, the part of the model users write themselves.

A prior says, for layer ``layer``, what distribution the Gamma basis ``u`` of every gate pair
follows given the layer's input ``x_t`` and previous hidden state ``h_{t-1}``. It returns any
``TorchDistribution`` whose ``batch_shape + event_shape`` broadcasts to ``(..., hidden_size, K)``,
batch or event shaped (``Gamma(c, 1).to_event(1)`` is as good as ``Gamma(c, 1)``): either over
``u > 0`` (for instance :class:`~pyro.distributions.Gamma`) or over ``log u`` (a distribution
with real support, such as :class:`~pyro_betalstm.distributions.LogGamma`). When the prior is
Gamma or LogGamma (also inside ``.to_event``) the ELBO uses the analytic KL divergence; for
another prior the KL that ``torch.distributions.kl_divergence`` has registered from the Gamma
guide (``Exponential``, say), and a Monte Carlo estimate where there is none (``LogNormal``).

Built-in priors (also by name through :func:`get_prior`):

* :class:`GammaPrior` (``"gamma"``): the paper's ``Gamma(0.5, 1)`` on each basis element.
* :class:`BivariateBetaPrior`: a bivariate Beta given by its parameters (no name: it needs them).
* :class:`LearnableGammaPrior` (``"learnable"``): concentrations learnt by empirical Bayes.
* :class:`ConditionalGammaPrior` (``"conditional"``): concentrations from ``(x_t, h_{t-1})``.
* :class:`HierarchicalGammaPrior` (``"hierarchical"``): a global concentration with a hyper-prior.
* :class:`FunctionPrior`: wrap any Python function.

Writing a new prior takes a few lines::

    import torch
    from pyro.distributions import Gamma

    from pyro_betalstm.priors import GatePrior


    class SkewedForgetPrior(GatePrior):
        def distribution(self, layer, inputs, prev_hidden):
            # bivariate5 basis: make the forget gate's numerator large
            c = torch.tensor([0.5, 2.0, 0.5, 2.0, 0.5], device=prev_hidden.device)
            return Gamma(c, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from .checks import is_integer, is_real_number
from .gates import GateFamily

#: A prior as a plain function ``fn(layer, inputs, prev_hidden) -> distribution``, called as
#: :meth:`GatePrior.distribution` is (see :class:`FunctionPrior`).
PriorFunction = Callable[[int, torch.Tensor, torch.Tensor], torch.distributions.Distribution]


class GatePrior(nn.Module):
    """Base class: subclass and implement :meth:`distribution`.

    :meth:`setup` is called once by the model with the gate family and layer sizes, so that a
    prior can check its parameters or build networks. A prior with its own global latent
    variables samples them in :meth:`model` and gives their variational distribution in
    :meth:`guide` (every site :meth:`model` samples, under the same name); both are called once
    per execution, before the gate sites. Tensors a prior keeps belong in buffers
    (``register_buffer``) or parameters, so that they move with the model (``.to("cuda")``);
    tensors it makes in :meth:`distribution` go on ``prev_hidden.device``.
    """

    def setup(self, family: GateFamily, input_sizes: list[int], hidden_size: int) -> None:
        """Called once by the model before training. Sets ``self.family`` (the
        :class:`~pyro_betalstm.gates.GateFamily`), ``self.basis_size`` (its number of Gammas
        ``K``) and ``self.hidden_size`` (``H``); ``input_sizes`` has one entry per layer (the
        layer's input width). An override builds the prior's networks or checks its parameters,
        and must call ``super().setup(family, input_sizes, hidden_size)`` first."""
        self.family = family
        self.basis_size = family.basis_size
        self.hidden_size = hidden_size

    def model(self) -> None:
        """Sample global latent variables of the prior (none by default)."""

    def guide(self) -> None:
        """Variational distributions of the prior's global latent variables (none by default)."""

    def distribution(
        self, layer: int, inputs: torch.Tensor, prev_hidden: torch.Tensor
    ) -> torch.distributions.Distribution:
        """Distribution of the basis for inputs ``(..., input_size)`` and ``h_{t-1}`` ``(..., H)``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define distribution(self, layer, inputs, "
            "prev_hidden), which every GatePrior must"
        )

    def _check_basis(self, concentration: torch.Tensor, what: str) -> None:
        if concentration.dim() > 0 and concentration.shape[-1] not in (1, self.basis_size):
            raise ValueError(
                f"{type(self).__name__}: {what} has last dimension {concentration.shape[-1]}, but "
                f"the {self.family.name!r} gate family has a basis of {self.basis_size} Gammas"
            )


def _positive_tensor(value, name: str) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if not torch.all(torch.isfinite(value) & (value > 0)):
        raise ValueError(f"{name} must be positive and finite, got {value.tolist()}")
    return value


class GammaPrior(GatePrior):
    """``u_k ~ Gamma(concentration_k, rate)`` independently; the paper's prior is ``Gamma(0.5, 1)``.

    :param concentration: scalar or a vector of length ``K`` (one per basis element), positive
        and finite (a ValueError otherwise; a length other than 1 or ``K`` is refused at
        :meth:`setup`).
    :param rate: the Gamma rate, positive and finite (a scalar, or a tensor broadcasting with
        ``concentration``).
    """

    def __init__(
        self,
        concentration: float | Sequence[float] | torch.Tensor = 0.5,
        rate: float | torch.Tensor = 1.0,
    ):
        super().__init__()
        self.register_buffer("concentration", _positive_tensor(concentration, "concentration"))
        self.register_buffer("rate", _positive_tensor(rate, "rate"))

    def setup(self, family, input_sizes, hidden_size):
        super().setup(family, input_sizes, hidden_size)
        self._check_basis(self.concentration, "concentration")

    def distribution(self, layer, inputs, prev_hidden):
        return dist.Gamma(self.concentration, self.rate)


class BivariateBetaPrior(GammaPrior):
    """The gates follow the bivariate Beta with the given parameters.

    ``params`` are the concentrations of the family's Gamma basis: ``(a, b, c)`` for
    ``bivariate`` (Olkin–Liu), five numbers for ``bivariate5`` (Arnold–Ng), four for ``beta``.

    :param params: a vector of positive concentrations, as many as the family's basis (a
        ValueError otherwise, the count at :meth:`setup`).
    """

    def __init__(self, params: Sequence[float] | torch.Tensor):
        params = torch.as_tensor(params, dtype=torch.get_default_dtype())
        if params.dim() != 1:
            raise ValueError(
                f"params must be a vector of concentrations, got shape {tuple(params.shape)}"
            )
        super().__init__(params, 1.0)

    def setup(self, family, input_sizes, hidden_size):
        GatePrior.setup(self, family, input_sizes, hidden_size)
        if self.concentration.shape[-1] != self.basis_size:
            raise ValueError(
                f"BivariateBetaPrior has {self.concentration.shape[-1]} parameters; the "
                f"{family.name!r} family needs {self.basis_size}"
            )


#: The floor of a learnt concentration, ``softplus(raw) + CONCENTRATION_FLOOR``.
CONCENTRATION_FLOOR = 1e-3


def inverse_softplus(c: float) -> float:
    """``x`` with ``softplus(x) = c > 0``: ``log(expm1(c))`` in float32 (the starting values
    of earlier versions, unchanged), and ``c + log(-expm1(-c))`` in float64 where that
    overflows (``c`` above about 88.7)."""
    x = torch.tensor(c).expm1().log()
    if torch.isfinite(x):
        return float(x)
    c64 = torch.tensor(c, dtype=torch.float64)
    return float(c64 + torch.log(-torch.expm1(-c64)))


class LearnableGammaPrior(GatePrior):
    """``Gamma(c, 1)`` with ``c`` learnt (empirical Bayes), one per layer, unit and basis element.

    ``c = softplus(raw) + 1e-3`` (:data:`CONCENTRATION_FLOOR`); ``raw`` starts at the inverse
    softplus of ``init_concentration`` (positive and finite), so ``c`` starts at
    ``init_concentration + 1e-3``.

    :param init_concentration: the starting concentration, positive and finite (a ValueError
        otherwise).
    :param per_unit: learn a concentration per layer, unit and basis element, ``(H, K)`` per
        layer; False: one per layer and basis element, ``(K,)`` per layer, shared by the units.
    """

    def __init__(self, init_concentration: float = 0.5, per_unit: bool = True):
        super().__init__()
        self.init_concentration = float(_positive_tensor(init_concentration, "init_concentration"))
        self.per_unit = per_unit
        self.raw_concentration = nn.ParameterList()

    def setup(self, family, input_sizes, hidden_size):
        super().setup(family, input_sizes, hidden_size)
        shape = (hidden_size, self.basis_size) if self.per_unit else (self.basis_size,)
        raw = inverse_softplus(self.init_concentration)
        self.raw_concentration = nn.ParameterList(
            nn.Parameter(torch.full(shape, raw)) for _ in input_sizes
        )

    def concentration(self, layer: int) -> torch.Tensor:
        """The learnt concentrations ``c`` of ``layer``: ``(H, K)`` with ``per_unit``, else
        ``(K,)``. Available after :meth:`setup`."""
        return nn.functional.softplus(self.raw_concentration[layer]) + CONCENTRATION_FLOOR

    def distribution(self, layer, inputs, prev_hidden):
        return dist.Gamma(self.concentration(layer), 1.0)


class ConditionalGammaPrior(GatePrior):
    """``Gamma(c_t, 1)`` with ``c_t = softplus(net([x_t, h_{t-1}])) + 1e-3`` from a small network.

    :param width: hidden width of the per-layer network (one tanh layer), a positive integer
        (a TypeError or ValueError otherwise).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        # checked now: nn.Linear would only fail (or build an empty layer) at setup
        if not is_integer(width):
            raise TypeError(f"width must be an integer, got {width!r}")
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        self.width = int(width)
        self.nets = nn.ModuleList()

    def setup(self, family, input_sizes, hidden_size):
        super().setup(family, input_sizes, hidden_size)
        self.nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(size + hidden_size, self.width),
                nn.Tanh(),
                nn.Linear(self.width, hidden_size * self.basis_size),
            )
            for size in input_sizes
        )
        for net in self.nets:  # start near the paper's Gamma(0.5, 1)
            nn.init.zeros_(net[2].weight)
            nn.init.constant_(net[2].bias, float(torch.tensor(0.5).expm1().log()))

    def distribution(self, layer, inputs, prev_hidden):
        raw = self.nets[layer](torch.cat([inputs, prev_hidden], dim=-1))
        conc = nn.functional.softplus(raw).unflatten(-1, (self.hidden_size, self.basis_size))
        return dist.Gamma(conc + 1e-3, 1.0)


class HierarchicalGammaPrior(GatePrior):
    """``u ~ Gamma(kappa, 1)`` with a global ``kappa_k ~ LogNormal(loc, scale)`` per basis element.

    ``kappa`` is a latent variable (site ``"prior_concentration"``) with a LogNormal variational
    distribution, so the ELBO includes its KL term; the gate KL is analytic given ``kappa``.

    :param loc: the hyper-prior's ``loc`` (``log kappa ~ Normal(loc, scale)``), a finite number
        (a ValueError otherwise); the variational location starts there too.
    :param scale: the hyper-prior's ``scale``, positive and finite (a ValueError otherwise).
    """

    site_name = "prior_concentration"

    def __init__(self, loc: float = -0.7, scale: float = 0.5):
        super().__init__()
        if not (is_real_number(loc) and math.isfinite(loc)):
            raise ValueError(
                f"loc must be a finite number (the log of kappa's median), got {loc!r}"
            )
        self.hyper_loc = float(loc)
        self.hyper_scale = float(_positive_tensor(scale, "scale"))
        self._kappa: torch.Tensor | None = None

    def setup(self, family, input_sizes, hidden_size):
        super().setup(family, input_sizes, hidden_size)
        self.q_loc = nn.Parameter(torch.full((self.basis_size,), self.hyper_loc))
        self.q_raw_scale = nn.Parameter(torch.full((self.basis_size,), -2.0))

    def model(self):
        hyper = dist.LogNormal(
            torch.full(
                (self.basis_size,), self.hyper_loc, dtype=self.q_loc.dtype, device=self.q_loc.device
            ),
            self.hyper_scale,
        ).to_event(1)
        self._kappa = pyro.sample(self.site_name, hyper)

    def guide(self):
        scale = nn.functional.softplus(self.q_raw_scale) + 1e-4
        pyro.sample(self.site_name, dist.LogNormal(self.q_loc, scale).to_event(1))

    def distribution(self, layer, inputs, prev_hidden):
        if self._kappa is None:
            raise RuntimeError("HierarchicalGammaPrior.model() must run before distribution()")
        kappa = self._kappa
        if kappa.dim() > 1:  # one kappa per draw of an outer plate, (*draws, 1, K): the gate
            # sites fold the draws into the batch, draw-major (see models.gate_sites)
            per_draw = kappa.reshape(-1, self.basis_size)
            kappa = per_draw.repeat_interleave(inputs.shape[0] // per_draw.shape[0], dim=0)
            kappa = kappa.reshape(inputs.shape[0], *[1] * (inputs.dim() - 1), self.basis_size)
        return dist.Gamma(kappa, 1.0)


class FunctionPrior(GatePrior):
    """A prior given by a function ``fn(layer, inputs, prev_hidden) -> distribution``.

    :param fn: called as :meth:`GatePrior.distribution` is; a ValueError if not callable.
    """

    def __init__(self, fn: PriorFunction):
        super().__init__()
        if not callable(fn):
            raise ValueError("FunctionPrior needs a callable fn(layer, inputs, prev_hidden)")
        self.fn = fn

    def distribution(self, layer, inputs, prev_hidden):
        return self.fn(layer, inputs, prev_hidden)


#: The built-in priors :func:`get_prior` makes by name, each a class called without arguments.
PRIORS: dict[str, Callable[[], GatePrior]] = {
    "gamma": GammaPrior,
    "learnable": LearnableGammaPrior,
    "conditional": ConditionalGammaPrior,
    "hierarchical": HierarchicalGammaPrior,
}


#: What a model's ``prior`` argument may be: a name from :data:`PRIORS`, a :class:`GatePrior`,
#: a :data:`PriorFunction`, or None for the paper's ``Gamma(0.5, 1)`` (see :func:`get_prior`).
PriorSpec = str | GatePrior | PriorFunction | None


def get_prior(prior: PriorSpec) -> GatePrior:
    """A :class:`GatePrior` from a name, an instance or a function (``None``: the paper's prior)."""
    if prior is None:
        return GammaPrior()
    if isinstance(prior, GatePrior):
        if type(prior).distribution is GatePrior.distribution:
            raise ValueError(
                f"{type(prior).__name__} does not define distribution(self, layer, inputs, "
                "prev_hidden), the method every GatePrior must implement (is its name misspelt?)"
            )
        return prior
    if isinstance(prior, type) and issubclass(prior, GatePrior):
        raise ValueError(
            f"prior={prior.__name__} is the class; pass an instance: prior={prior.__name__}()"
        )
    if isinstance(prior, str):
        try:
            return PRIORS[prior]()
        except KeyError:
            raise ValueError(
                f"unknown prior {prior!r}; expected one of {sorted(PRIORS)}, a GatePrior or a "
                "function (layer, inputs, prev_hidden) -> distribution (a prior of your own "
                "is added to PRIORS; the example scripts take its module with --import MODULE)"
            ) from None
    if callable(prior):
        return FunctionPrior(prior)
    raise ValueError(f"cannot make a gate prior from {prior!r}")


def is_log_space(d: torch.distributions.Distribution) -> bool:
    """Whether a prior distribution is over ``log u`` (real support) rather than ``u > 0``."""
    support = d.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real
