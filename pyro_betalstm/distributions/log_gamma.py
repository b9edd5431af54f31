"""The distribution of ``log u`` for ``u ~ Gamma(concentration, rate)``."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from .numerics import sample_log_gamma

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def check_dtype(name: str, dtype: torch.dtype) -> None:
    """The Gamma samplers exist in float32 and float64 only (not float16 or bfloat16 on CPU)."""
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name}: concentration has dtype {dtype}; supported dtypes are float32 and float64 "
            "(convert with .float() or .double())"
        )


class LogGamma(TorchDistribution):
    r"""Logarithm of a Gamma random variable (``scipy.stats.loggamma`` when ``rate = 1``).

    If :math:`u \sim \mathrm{Gamma}(\alpha, \beta)` then :math:`y = \log u` has density

    .. math::

        p(y) = \frac{\beta^{\alpha}}{\Gamma(\alpha)} \exp\left(\alpha y - \beta e^{y}\right).

    Working with :math:`\log u` instead of :math:`u` keeps gate computations finite where
    ``float32`` Gamma draws underflow (concentrations below about 0.05). Samples are drawn with
    :math:`\log u = \log g + \log(U)/\alpha`, :math:`g \sim \mathrm{Gamma}(\alpha + 1, \beta)`,
    :math:`U \sim \mathrm{Uniform}(0, 1)`, which is exact in distribution and reparameterised.

    Because ``log`` is a bijection, the KL divergence between two ``LogGamma`` laws equals the KL
    divergence between the corresponding Gamma laws; it is registered in
    :mod:`pyro_betalstm.distributions.kl`.

    :param concentration: shape parameter :math:`\alpha > 0`.
    :param rate: rate parameter :math:`\beta > 0` (default 1).
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, concentration, rate=1.0, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        if not self.concentration.is_floating_point():  # integers: as the gate laws take them
            dtype = torch.get_default_dtype()
            self.concentration, self.rate = self.concentration.to(dtype), self.rate.to(dtype)
        check_dtype("LogGamma", self.concentration.dtype)
        check = validate_args if validate_args is not None else self._validate_args
        if check and not torch.jit.is_tracing():
            for name, value in (("concentration", self.concentration), ("rate", self.rate)):
                if not bool((torch.isfinite(value) & (value > 0)).all()):
                    raise ValueError(f"LogGamma: {name} must be positive and finite")
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        """This distribution with batch shape ``batch_shape``: a :class:`LogGamma` whose
        concentration and rate are expanded (views, not copies), as
        :meth:`torch.distributions.Distribution.expand` specifies."""
        new = self._get_checked_instance(LogGamma, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        super(LogGamma, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return sample_log_gamma(self.concentration.expand(shape)) - self.rate.expand(shape).log()

    def log_prob(self, value):
        """Log density at ``value`` (``-inf`` at ``+inf``, where the density vanishes)."""
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration, self.rate
        log_p = a * b.log() + a * value - b * value.exp() - torch.lgamma(a)
        # at y = +inf, a * y - b * e^y is inf - inf = NaN; the density's limit there is 0
        return log_p.masked_fill(value == float("inf"), float("-inf"))

    @property
    def mean(self):
        return torch.digamma(self.concentration) - self.rate.log()

    @property
    def variance(self):
        return torch.polygamma(1, self.concentration)

    def entropy(self):
        """Differential entropy, of shape ``batch_shape``."""
        a = self.concentration
        return torch.lgamma(a) - a * torch.digamma(a) + a  # the rate only shifts y
