"""Shared machinery of the gate distributions: gates as ratios of sums of Gamma variables."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pyro.distributions import Gamma, TorchDistribution
from torch.distributions import constraints

from .gate_algebra import GammaRatioGates, GatePair, MarginalConcentrations
from .log_gamma import LogGamma, check_dtype
from .numerics import exp_sinh_nodes, into_open_unit_interval, sample_log_gamma

#: Concentrations for which :attr:`GateDistribution.correlation` is accurate (its quadrature
#: breaks down outside; measured against the limits 1/3 and 1/2 of :class:`BivariateBeta`).
CORRELATION_RANGE = (1e-4, 1e5)
#: The largest ratio between the concentrations of one gate pair for which
#: :attr:`GateDistribution.correlation` is accurate: at 1e5 and beyond, with large
#: concentrations (tiny variances), its covariance loses the digits (0.990 for (1e4, 1e4, 0.1)
#: against 0.9999 from draws; 618 for (1e4, 1e4, 0.01)).
CORRELATION_MAX_SPREAD = 1e4


def _validated_concentration(
    name: str, concentration, size: int, check_values: bool
) -> torch.Tensor:
    if not isinstance(concentration, torch.Tensor):
        concentration = torch.as_tensor(concentration, dtype=torch.get_default_dtype())
    if concentration.dim() == 0 or concentration.shape[-1] != size:
        raise ValueError(
            f"{name}: concentration must have last dimension {size} (one entry per Gamma basis "
            f"variable), got shape {tuple(concentration.shape)}"
        )
    if not concentration.is_floating_point():
        concentration = concentration.to(torch.get_default_dtype())
    check_dtype(name, concentration.dtype)
    if check_values and not torch.jit.is_tracing():
        bad = ~(torch.isfinite(concentration) & (concentration > 0))
        if bad.any():
            raise ValueError(
                f"{name}: concentration must be positive and finite; found "
                f"{int(bad.sum())} invalid value(s), e.g. {concentration[bad].flatten()[:4].tolist()}"
            )
    return concentration


class GateDistribution(TorchDistribution):
    r"""Base class of distributions over an (input gate, forget gate) pair built from Gamma variables.

    A subclass sets :attr:`algebra`, a :class:`~.gate_algebra.GammaRatioGates` of
    ``basis_size`` = :math:`K` independent :math:`u_k \sim \mathrm{Gamma}(c_k, 1)` and four
    index sets, so that

    .. math::

        i = \frac{\sum_{k \in N_i} u_k}{\sum_{k \in N_i} u_k + \sum_{k \in D_i} u_k}, \qquad
        f = \frac{\sum_{k \in N_f} u_k}{\sum_{k \in N_f} u_k + \sum_{k \in D_f} u_k}.

    Values have ``event_shape == (2,)``: ``value[..., 0]`` is the input gate, ``value[..., 1]`` the
    forget gate. The Gamma basis is exposed (:meth:`basis_distribution`,
    :meth:`log_basis_distribution`, :meth:`gates_from_basis`, :meth:`gates_from_log_basis`) so
    that a model can put its latent variable on the basis and map it to gates deterministically;
    basis tensors have the basis on the last dimension (the layout of
    :mod:`~pyro_betalstm.distributions.gate_algebra`). The gates are computed as
    :math:`\sigma(\log \text{numerator} - \log \text{rest})` from log-space basis draws, which
    keeps them finite in ``float32`` for concentrations down to 1e-3.

    Samples are kept inside the open square :math:`(0, 1)^2`: a gate that rounds to exactly 0 or
    1 in the working precision (frequent in ``float32`` for concentrations far below 1) is moved
    to the nearest representable value inside, so that ``log_prob`` of the distribution's
    own samples is finite. ``float32`` and ``float64`` are supported; other dtypes raise a
    TypeError. Empty batch shapes are supported.
    """

    #: the family's gate map; set by each subclass
    algebra: ClassVar[GammaRatioGates]
    #: ``K``, the number of Gamma basis variables (``algebra.basis_size``)
    basis_size: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "algebra" in cls.__dict__:
            cls.basis_size = cls.algebra.basis_size

    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.independent(constraints.unit_interval, 1)
    has_rsample = True

    def __init__(self, concentration, validate_args=None):
        check = validate_args if validate_args is not None else self._validate_args
        self.concentration = _validated_concentration(
            type(self).__name__, concentration, self.basis_size, bool(check)
        )
        empty = self.concentration.numel() == 0
        # torch's independent-constraint check cannot reshape an empty batch (torch's own
        # Dirichlet and Beta fail the same way); the values were checked above
        super().__init__(
            self.concentration.shape[:-1],
            torch.Size((2,)),
            validate_args=False if empty else validate_args,
        )
        if empty and validate_args is not None:
            self._validate_args = validate_args

    def expand(self, batch_shape, _instance=None):
        """This distribution with batch shape ``batch_shape``: an instance of its own class whose
        concentrations are expanded (a view, not a copy), as
        :meth:`torch.distributions.Distribution.expand` specifies."""
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration = self.concentration.expand(batch_shape + (self.basis_size,))
        super(GateDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ----- the Gamma basis -------------------------------------------------------------------
    def basis_distribution(self) -> torch.distributions.Distribution:
        """The Gamma basis :math:`u \\sim \\mathrm{Gamma}(c, 1)`, event shape ``(basis_size,)``."""
        return Gamma(self.concentration, torch.ones_like(self.concentration)).to_event(1)

    def log_basis_distribution(self) -> torch.distributions.Distribution:
        """The log-space basis :math:`\\log u`, a :class:`LogGamma` with event shape ``(basis_size,)``."""
        return LogGamma(self.concentration).to_event(1)

    def sample_log_basis(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Reparameterised draw of :math:`\\log u` with shape ``sample_shape + batch_shape + (basis_size,)``."""
        shape = torch.Size(sample_shape) + self.concentration.shape
        return sample_log_gamma(self.concentration.expand(shape))

    def basis_kl(self, other: GateDistribution) -> torch.Tensor:
        """``KL(self(u) || other(u))`` of the two laws' Gamma bases, summed over the basis: the
        term of the paper's ELBO, an upper bound on the KL of the gate laws (which
        ``torch.distributions.kl_divergence`` gives where it has a closed form, see
        :mod:`~pyro_betalstm.distributions.kl`). ``other`` must be of the same family."""
        from .kl import basis_kl  # kl.py builds on this module

        return basis_kl(self, other)

    @classmethod
    def gate_logits_from_log_basis(cls, log_basis: torch.Tensor) -> GatePair:
        """Logits of the input and forget gates, :math:`\\log(\\text{numerator}/\\text{rest})`,
        from :math:`\\log u` ``(..., basis_size)``."""
        return cls.algebra.logits(log_basis)

    @classmethod
    def gates_from_log_basis(cls, log_basis: torch.Tensor) -> torch.Tensor:
        """Map :math:`\\log u` ``(..., basis_size)`` to a value of the distribution, ``(..., 2)``."""
        return cls.algebra.gates(log_basis).stacked()

    @classmethod
    def gates_from_basis(cls, basis: torch.Tensor) -> torch.Tensor:
        """Map the Gamma basis :math:`u > 0` ``(..., basis_size)`` to a value ``(..., 2)``."""
        return cls.gates_from_log_basis(basis.log())

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} has no log_prob: a subclass writes its gate pair's density "
            "where it wants one (training, sampling, moments and the basis KL need none)"
        )

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        gates = self.gates_from_log_basis(self.sample_log_basis(sample_shape))
        # inside the open interval (see the class docstring); no gradient through a moved value
        return into_open_unit_interval(gates)

    # ----- moments ---------------------------------------------------------------------------
    def marginal_concentrations(self) -> MarginalConcentrations:
        """``(alpha_i, beta_i, alpha_f, beta_f)``: the gates are marginally ``Beta(alpha, beta)``."""
        return self.algebra.marginal_concentrations(self.concentration)

    @property
    def mean(self) -> torch.Tensor:
        return self.algebra.mean_gates(self.concentration).stacked()

    @property
    def variance(self) -> torch.Tensor:
        a_i, b_i, a_f, b_f = self.marginal_concentrations()
        return torch.stack([_beta_variance(a_i, b_i), _beta_variance(a_f, b_f)], dim=-1)

    @property
    def correlation(self) -> torch.Tensor:
        r"""Pearson correlation of (i, f), shape ``batch_shape``; not differentiable.

        Computed from :math:`E[if] = \int_0^\infty\!\int_0^\infty
        E\big[N_i N_f e^{-r(N_i + D_i) - q(N_f + D_f)}\big]\,dr\,dq`, where :math:`N, D` are the
        numerator and rest sums; the inner expectation is a closed-form product over the
        independent Gammas. The double integral uses exp-sinh quadrature in ``float64``; its
        absolute error in the correlation is below 1e-6 for concentrations in [1e-2, 1e2]
        (tested against the exact zero of :class:`IndependentBetaGates`, an independent 1-D
        quadrature for :class:`BivariateBeta`, and Monte Carlo). Concentrations outside
        ``CORRELATION_RANGE`` (1e-4 to 1e5), or a gate pair whose largest concentration is more
        than ``CORRELATION_MAX_SPREAD`` (1e4) times its smallest, where the quadrature breaks
        down, raise a ValueError; so does a result outside [-1, 1] (by more than 1e-6), which
        would mean it broke down all the same. The means and variances are taken in float64
        for every dtype (in float32 the covariance lost its digits to cancellation).
        """
        conc = self.concentration.detach()
        if conc.numel() == 0:
            return conc.new_empty(self.batch_shape)
        name = f"{type(self).__name__}.correlation"
        low, high = CORRELATION_RANGE
        lo, hi = float(conc.min()), float(conc.max())
        if lo < low or hi > high:
            raise ValueError(
                f"{name} is computed for concentrations in [{low:g}, {high:g}]; got values "
                f"from {lo:.3g} to {hi:.3g}"
            )
        spread = float((conc.amax(-1) / conc.amin(-1)).max())
        if spread > CORRELATION_MAX_SPREAD:
            raise ValueError(
                f"{name} is computed for gate pairs whose concentrations differ by a factor of "
                f"at most {CORRELATION_MAX_SPREAD:g}; got a pair with a factor of {spread:.3g}"
            )
        corr = _laplace_correlation(self)
        if bool((corr.abs() > 1 + 1e-6).any()):
            raise ValueError(
                f"{name}: the quadrature did not converge for these concentrations (a result "
                f"of {float(corr.abs().max()):.4g} in absolute value)"
            )
        return corr

    def _log_prob_checks(self, value: torch.Tensor) -> None:
        if value.shape[-1:] != (2,):
            raise ValueError(
                f"{type(self).__name__}.log_prob: value must have last dimension 2 "
                f"(input gate, forget gate), got shape {tuple(value.shape)}"
            )
        if self._validate_args and value.numel() > 0:  # see __init__ on empty shapes
            self._validate_sample(value)


def _beta_variance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # (a/t)(b/t)/(t+1) rather than ab/(t^2 (t+1)): no overflow for huge concentrations
    total = a + b
    return (a / total) * (b / total) / (total + 1)


def _laplace_correlation(
    d: GateDistribution, num_nodes: int = 241, chunk: int = 64
) -> torch.Tensor:
    conc = d.concentration.detach().to(torch.float64)
    batch_shape = conc.shape[:-1]
    conc = conc.reshape(-1, d.basis_size)
    a_min = float(conc.min().clamp(min=1e-3))
    total_max = float(conc.sum(-1).max())
    # Upper tail: the integrand decays like exp(-a * log r); extend the range until that is below
    # exp(-36). Lower tail: the neglected strip (0, r_min) contributes at most r_min * (total
    # concentration), so also extend until log r_min < -(36 + log(1 + total)).
    half_width = max(
        math.asinh(2.0 * 36.0 / (math.pi * a_min)),
        math.asinh(2.0 * (36.0 + math.log1p(total_max)) / math.pi),
    )
    log_r, log_w = exp_sinh_nodes(num_nodes, half_width, device=conc.device)
    n = log_r.shape[0]
    log_r_, log_q_ = log_r[:, None].expand(n, n), log_r[None, :].expand(n, n)  # (n, n) grid
    log_wrq = log_w[:, None] + log_w[None, :]
    ni, nf = d.algebra.input_numerator, d.algebra.forget_numerator
    # log(1 + lambda_k), lambda_k = r [k in gate i] + q [k in gate f], all in log space: the
    # nodes reach r = exp(+-3600) for small concentrations, where r itself overflows.
    zero = torch.zeros_like(log_wrq)
    log1p_lam = []
    for k in range(d.basis_size):
        in_i, in_f = d.algebra.shares(k)
        if in_i and in_f:
            log_lam = torch.logaddexp(log_r_, log_q_)
        elif in_i:
            log_lam = log_r_
        elif in_f:
            log_lam = log_q_
        else:
            log_lam = torch.full_like(zero, -math.inf)
        log1p_lam.append(torch.logaddexp(log_lam, zero))
    log1p_lam = torch.stack(log1p_lam)  # (K, n, n)
    results = []
    for start in range(0, conc.shape[0], chunk):
        c = conc[start : start + chunk][:, :, None, None]  # (B, K, 1, 1)
        log_l = -(c * log1p_lam).sum(1)  # (B, n, n)
        log_terms = []
        for j in ni:
            for m in nf:
                if j == m:
                    log_terms.append(c[:, j].log() + torch.log1p(c[:, j]) - 2 * log1p_lam[j])
                else:
                    log_terms.append(c[:, j].log() + c[:, m].log() - log1p_lam[j] - log1p_lam[m])
        log_terms = torch.logsumexp(torch.stack(log_terms), dim=0)
        exy = torch.exp(log_l + log_wrq + log_terms).sum((-1, -2))
        results.append(exy)
    exy = torch.cat(results).reshape(batch_shape)
    # the moments in float64 too: exy - mean_i mean_f cancels, and in float32 lost its digits
    a_i, b_i, a_f, b_f = (m.reshape(batch_shape) for m in d.algebra.marginal_concentrations(conc))
    cov = exy - (a_i / (a_i + b_i)) * (a_f / (a_f + b_f))
    corr = cov / (_beta_variance(a_i, b_i) * _beta_variance(a_f, b_f)).sqrt()
    return corr.to(d.concentration.dtype)
