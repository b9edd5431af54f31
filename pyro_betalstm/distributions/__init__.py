"""Distributions over LSTM gate pairs built from Gamma variables, and their Gamma bases.

Every gate distribution has ``event_shape == (2,)`` with ``value[..., 0]`` the input gate and
``value[..., 1]`` the forget gate, is reparameterised, and exposes its Gamma basis.
"""

from . import kl
from ._gate_distribution import GateDistribution
from .bivariate_beta import BivariateBeta
from .flexible_bivariate_beta import FlexibleBivariateBeta
from .independent_beta import IndependentBetaGates
from .kl import basis_kl, gamma_kl
from .log_gamma import LogGamma

__all__ = [
    "BivariateBeta",
    "FlexibleBivariateBeta",
    "GateDistribution",
    "IndependentBetaGates",
    "LogGamma",
    "basis_kl",
    "gamma_kl",
    "kl",
]
