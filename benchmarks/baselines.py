"""Reference implementations timed by ``step_time.py`` against the library.

Every module here has the same task as the library's :class:`~pyro_betalstm.models.NextStepBernoulli`
with one recurrent layer: inputs ``x`` and targets ``y`` are ``(B, T, D)`` binary frames, the head
is ``nn.Linear(hidden, D)`` and the likelihood is ``Bernoulli(logits = head(h_t))`` summed over
batch, time and keys. Each ``loss(x, y)`` returns a scalar to call ``backward`` on (the negative
log-likelihood, or the negative ELBO for the latent-gate models).

Recurrent weights are initialised like ``torch.nn.LSTM`` (``U(-1/sqrt(H), 1/sqrt(H))``), as the
library's :class:`~pyro_betalstm.nn.GateLayer` does, so that the Gamma concentrations -- whose
values change the cost of the Gamma sampler -- are distributed the same way in every variant.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from pyro_betalstm.distributions import LogGamma, gamma_kl
from pyro_betalstm.distributions.numerics import sample_log_gamma

#: ``alpha = softplus(z) + CONCENTRATION_EPS`` (the authors' value, as in the library).
CONCENTRATION_EPS = 1e-3
#: The paper's prior ``Gamma(0.5, 1)`` on every basis element.
PRIOR_CONCENTRATION = 0.5


def _lstm_init_(module: nn.Module, hidden_size: int) -> None:
    bound = hidden_size**-0.5
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


def bernoulli_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-sum log Bernoulli(targets | logits)``: the Pyro likelihood's value, summed."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")


class TorchLSTM(nn.Module):
    """``torch.nn.LSTM`` (cuDNN on GPU) + linear head + Bernoulli NLL."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, output_size)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return bernoulli_nll(self.head(out), y)


class EagerSigmoidLoop(nn.Module):
    """Eager sigmoid LSTM: one fused ``nn.Linear(input + hidden, 4 * hidden)`` on ``cat([x_t, h])``
    per step, gates ordered ``[i, f, g, o]``; same head and loss."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        _lstm_init_(self.cell, hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        h = x.new_zeros(B, self.hidden_size)
        c = x.new_zeros(B, self.hidden_size)
        outputs = []
        for x_t in x.unbind(1):
            i, f, g, o = self.cell(torch.cat([x_t, h], dim=1)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return bernoulli_nll(self.head(torch.stack(outputs, dim=1)), y)


class _BivariateCellParams(nn.Module):
    """Parameters of one bivariate (Olkin--Liu, 3-Gamma) layer + head, blocks ``[a, b, c, g, o]``."""

    num_blocks = 5

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_proj = nn.Linear(input_size, self.num_blocks * hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, self.num_blocks * hidden_size, bias=False)
        _lstm_init_(self, hidden_size)
        self.head = nn.Linear(hidden_size, output_size)

    def input_projections(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The input projection of every step at once, as ``T`` tensors ``(B, 5H)``.

        ``unbind`` (not ``x_proj[:, t]``) so that backward stacks the ``T`` gradients once
        instead of accumulating ``T`` zero-padded full-size copies.
        """
        return self.input_proj(x).unbind(1)

    def step(self, xp_t, h, c, log_u_fn):
        """One step: ``z = xp_t + h W_h``; ``log_u_fn(alpha)`` gives the log-basis ``(B, 3H)``."""
        H = self.hidden_size
        z = torch.addmm(xp_t, h, self.hidden_proj.weight.t())
        z_gates, z_g, z_o = z.split([3 * H, H, H], dim=1)  # one SplitBackward, not 3 slices
        alpha = F.softplus(z_gates) + CONCENTRATION_EPS
        log_u = log_u_fn(alpha)
        log_u1, log_u2, log_u3 = log_u.split(H, dim=1)
        i = torch.sigmoid(log_u1 - log_u3)
        f = torch.sigmoid(log_u2 - log_u3)
        c = f * c + i * torch.tanh(z_g)
        h = torch.sigmoid(z_o) * torch.tanh(c)
        return h, c, alpha, log_u


class HandwrittenBivariateELBO(_BivariateCellParams):
    """The library's 1-layer ``bivariate`` model and guide as one eager torch function.

    Negative ELBO = Bernoulli NLL + ``sum_t KL(Gamma(alpha_t, 1) || Gamma(0.5, 1))``: the
    recurrence draws ``log u_t`` with :func:`sample_log_gamma` at ``alpha_t = softplus(z_t) + 1e-3``,
    the gates are ``sigmoid(l1 - l3)``, ``sigmoid(l2 - l3)``, and the KL is evaluated once on
    all steps' concentrations after the loop. One matmul per step (the hidden projection); the
    input projection of all steps is one matmul before the loop.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(input_size, hidden_size, output_size)
        self.prior_lgamma = math.lgamma(PRIOR_CONCENTRATION)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        h = x.new_zeros(B, self.hidden_size)
        c = x.new_zeros(B, self.hidden_size)
        outputs, alphas = [], []
        for xp_t in self.input_projections(x):
            h, c, alpha, _ = self.step(xp_t, h, c, sample_log_gamma)
            outputs.append(h)
            alphas.append(alpha)
        nll = bernoulli_nll(self.head(torch.stack(outputs, dim=1)), y)
        a = torch.stack(alphas)
        # KL(Gamma(a, 1) || Gamma(b, 1)) = (a - b) digamma(a) - lgamma(a) + lgamma(b)
        kl = ((a - PRIOR_CONCENTRATION) * torch.digamma(a) - torch.lgamma(a)).sum()
        kl = kl + a.numel() * self.prior_lgamma
        return nll + kl


class PyroPerStepSites(_BivariateCellParams):
    """The ``bivariate`` model in the DMM style: one Pyro sample site per time step.

    The guide samples ``u_t ~ LogGamma(alpha_t).to_event(2)`` (event ``(3, H)``) in a plate over
    the sequences; the model draws each ``u_t`` from the prior ``LogGamma(0.5)`` and runs its own
    recurrence on the replayed values (recomputing ``h``), then observes the frames.
    :meth:`loss` is ``TraceMeanField_ELBO().differentiable_loss`` (analytic LogGamma KL).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__(input_size, hidden_size, output_size)
        self.register_buffer("prior_concentration", torch.tensor(PRIOR_CONCENTRATION))
        self.elbo = TraceMeanField_ELBO()

    def _plate(self, x):
        return pyro.plate("sequences", x.shape[0], dim=-1)

    def guide(self, x: torch.Tensor, y: torch.Tensor) -> None:
        B, H = x.shape[0], self.hidden_size
        h = x.new_zeros(B, H)
        c = x.new_zeros(B, H)
        with self._plate(x):
            for t, xp_t in enumerate(self.input_projections(x)):

                def draw(alpha, t=t):
                    q = LogGamma(alpha.view(B, 3, H)).to_event(2)
                    return pyro.sample(f"u_{t}", q).view(B, 3 * H)

                h, c, _, _ = self.step(xp_t, h, c, draw)

    def model(self, x: torch.Tensor, y: torch.Tensor) -> None:
        B, H = x.shape[0], self.hidden_size
        h = x.new_zeros(B, H)
        c = x.new_zeros(B, H)
        prior = LogGamma(self.prior_concentration).expand((B, 3, H)).to_event(2)
        outputs = []
        with self._plate(x):
            for t, xp_t in enumerate(self.input_projections(x)):

                def draw(alpha, t=t):
                    return pyro.sample(f"u_{t}", prior).view(B, 3 * H)

                h, c, _, _ = self.step(xp_t, h, c, draw)
                outputs.append(h)
            logits = self.head(torch.stack(outputs, dim=1))
            pyro.sample("obs", dist.Bernoulli(logits=logits).to_event(2), obs=y)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.elbo.differentiable_loss(self.model, self.guide, x, y)


def previous_sample_log_gamma(concentration: torch.Tensor) -> torch.Tensor:
    """The library's log-Gamma draw before issue 11's CPU work: the same law and the same Gamma
    kernel, with the exponential term from torch's ``Tensor.exponential_``."""
    g = torch.distributions.Gamma(concentration + 1.0, 1.0, validate_args=False).rsample()
    e = torch.empty(
        concentration.shape, dtype=concentration.dtype, device=concentration.device
    ).exponential_()
    return g.clamp(min=torch.finfo(g.dtype).tiny).log() - e / concentration


def previous_gamma_kl(q_concentration, p_concentration, q_rate=1.0, p_rate=1.0) -> torch.Tensor:
    """The library's Gamma KL before issue 11's CPU work: the prior's concentration broadcast to
    every element first, so its lgamma (and digamma) ran once per element."""
    a = q_concentration
    b = torch.as_tensor(p_concentration, dtype=a.dtype, device=a.device)
    a, b = torch.broadcast_tensors(a, b)
    return gamma_kl(a, b, q_rate, p_rate)


@contextmanager
def library_functions_swapped(**replacements: Callable) -> Iterator[None]:
    """Within the block, every ``pyro_betalstm`` module that imported one of the named library
    functions by name sees its replacement (benchmarks only: how a previous version of one
    kernel is timed against the current one in the same process)."""
    originals = {"sample_log_gamma": sample_log_gamma, "gamma_kl": gamma_kl}
    patched = []
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("pyro_betalstm"):
            continue
        for name, replacement in replacements.items():
            if getattr(module, name, None) is originals[name]:
                setattr(module, name, replacement)
                patched.append((module, name))
    try:
        yield
    finally:
        for module, name in patched:
            setattr(module, name, originals[name])
