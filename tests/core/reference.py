"""Hand-written references for the core tests, written from DESIGN.md sections 1-2.

Nothing here calls the package's layer, gate family, model or guide code: the recurrence, the
gate formulas, the Gamma/LogGamma densities, the KL and the likelihoods are written out with
plain torch, reading only the model's *parameters* (``input_proj``, ``hidden_proj``, the
output layer) and, for the prior, the user-facing ``prior.distribution`` (the prior is user code;
what is tested is that the library feeds it the right ``x_t`` and ``h_{t-1}``). The only shared
kernel is ``sample_log_gamma``, so that references and library consume the random stream in the
same order: layer by layer, step by step, one ``(B, H, K)`` draw per step for every sequence
(padded steps included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from torch.nn.functional import logsigmoid, softplus

from pyro_betalstm.distributions import LogGamma
from pyro_betalstm.distributions.numerics import sample_log_gamma
from pyro_betalstm.testing import gate_family_case, gate_family_names
from pyro_betalstm.testing import ratio_gates as _ratio

EPS = 1e-3  # alpha = softplus(z) + eps, the authors' constant

#: The registered families, with the contract of each from its independent test case
#: (:data:`pyro_betalstm.testing.GATE_FAMILY_CASES`): 0-based (input numerator, input rest,
#: forget numerator, forget rest) of the latent families, e.g. bivariate5
#: i = (u1+u3)/(u1+u3+u4+u5), f = (u2+u4)/(u2+u4+u3+u5).
LATENT = tuple(gate_family_names(latent=True))
DETERMINISTIC = tuple(gate_family_names(latent=False))
GATE_INDEX = {name: gate_family_case(name).index_sets for name in LATENT}
BASIS_SIZE = {name: gate_family_case(name).basis_size for name in LATENT}
NUM_GATE_BLOCKS = {
    name: gate_family_case(name).num_gate_preactivations for name in LATENT + DETERMINISTIC
}


def ratio_gates(family: str, values: torch.Tensor, log_space: bool) -> tuple:
    """``(i, f)`` as ratios of sums over the last dimension (the basis, or alphas for mean gates)."""
    return _ratio(GATE_INDEX[family], values, log_space)


def draw_log_basis(alpha: torch.Tensor) -> torch.Tensor:
    """``log u`` for alpha ``(B, H, K)``, drawn as the library draws it: one ``sample_log_gamma``
    call per step on the basis laid out ``(B, K, H)`` (the order in which random numbers are
    assigned to elements; the values are the same in distribution for any layout)."""
    return sample_log_gamma(alpha.transpose(-1, -2)).transpose(-1, -2)


@dataclass
class RefRun:
    outputs: torch.Tensor  # (B, T, H), zero at padded steps
    h_n: torch.Tensor
    c_n: torch.Tensor
    alphas: list = field(default_factory=list)  # per step (B, H, K)
    log_us: list = field(default_factory=list)  # per step (B, H, K)
    prev_h: list = field(default_factory=list)  # per step h_{t-1} (B, H)
    gates: list = field(default_factory=list)  # per step (i, f)


def lengths_mask(batch) -> torch.Tensor:
    B, T = batch.inputs.shape[:2]
    if batch.lengths is None:
        return torch.ones(B, T, dtype=torch.bool)
    return torch.arange(T)[None, :] < batch.lengths[:, None]


def run_layer(layer, family: str, x, mask, mode="sample", log_us=None, state=None) -> RefRun:
    """One layer's recurrence. ``mode``: sample (draw log u), mean (alpha ratios), given."""
    B, T, _ = x.shape
    H = layer.hidden_size
    w_x, b_x = layer.input_proj.weight, layer.input_proj.bias
    w_h = layer.hidden_proj.weight
    n_blocks = w_x.shape[0] // H
    n_gate = NUM_GATE_BLOCKS[family]
    assert n_blocks == n_gate + 2
    h, c = (x.new_zeros(B, H), x.new_zeros(B, H)) if state is None else state
    run = RefRun(None, None, None)
    outputs = []
    for t in range(T):
        z = x[:, t] @ w_x.T + h @ w_h.T
        if b_x is not None:
            z = z + b_x
        blocks = [z[:, j * H : (j + 1) * H] for j in range(n_blocks)]
        g_pre, o_pre = blocks[n_gate], blocks[n_gate + 1]
        if family in LATENT:
            alpha = torch.stack([softplus(blk) + EPS for blk in blocks[:n_gate]], dim=-1)
            run.alphas.append(alpha)
            if mode == "mean":
                i, f = ratio_gates(family, alpha, log_space=False)
            else:
                log_u = draw_log_basis(alpha) if mode == "sample" else log_us[t]
                run.log_us.append(log_u)
                i, f = ratio_gates(family, log_u, log_space=True)
        else:  # a deterministic family: its case's evaluation gates, noise-free families only
            case = gate_family_case(family)
            if case.training_noise and mode != "mean":
                raise NotImplementedError(f"{family}: random training gates")
            i, f = case.evaluation(z.unflatten(-1, (n_blocks, H))[:, :n_gate])
        run.gates.append((i, f))
        run.prev_h.append(h)
        c_new = f * c + i * torch.tanh(g_pre)
        h_new = torch.sigmoid(o_pre) * torch.tanh(c_new)
        m = mask[:, t, None]
        c = torch.where(m, c_new, c)
        h = torch.where(m, h_new, h)
        outputs.append(h_new * m)
    run.outputs = torch.stack(outputs, dim=1)
    run.h_n, run.c_n = h, c
    return run


def run_network(model, batch, mode="sample") -> list[RefRun]:
    mask = lengths_mask(batch)
    x, runs = batch.inputs, []
    for layer in model.lstm.layers:
        runs.append(run_layer(layer, model.family.name, x, mask, mode))
        x = runs[-1].outputs  # dropout is 0 in every reference test
    return runs


def head_log_likelihood(model, run: RefRun, batch) -> torch.Tensor:
    """Per-sequence ``log p(y | gates)`` for both heads, written out."""
    w, b = model.output.weight, model.output.bias
    if hasattr(model, "num_classes"):  # SequenceClassifier: Categorical on the last valid h
        logits = run.h_n @ w.T + b
        log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        return log_p.gather(-1, batch.targets[:, None]).squeeze(-1)
    logits = run.outputs @ w.T + b  # NextStepBernoulli
    y = batch.targets
    per_key = y * logsigmoid(logits) + (1 - y) * logsigmoid(-logits)
    return (per_key.sum(-1) * lengths_mask(batch)).sum(-1)


def loggamma_log_density(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Density of ``y = log u``, ``u ~ Gamma(a, 1)``: ``a y - e^y - lgamma(a)``."""
    return a * y - y.exp() - torch.lgamma(a)


def gamma_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``KL(Gamma(a, 1) || Gamma(b, 1))`` by its closed form (rate 1 on both sides)."""
    return (a - b) * torch.digamma(a) - torch.lgamma(a) + torch.lgamma(b)


def prior_concentration(model, layer: int, x_t, h_prev, shape) -> torch.Tensor:
    d = model.prior.distribution(layer, x_t, h_prev)
    assert isinstance(d, torch.distributions.Gamma), "references cover Gamma priors"
    assert torch.all(d.rate == 1)
    return d.concentration.expand(shape)


def reference_loss(model, batch, estimator: str) -> torch.Tensor:
    """Negative ELBO of the library's model written out by hand.

    ``estimator``: ``"analytic"`` (sum of per-step Gamma KLs, TraceMeanField_ELBO) or ``"mc"``
    (``log q(y) - log p(y)`` at the sample, Trace_ELBO). Every term is multiplied by the
    subsample scale ``N / B``; the gate terms also by ``kl_weight``.
    """
    B = batch.inputs.shape[0]
    scale = (batch.dataset_size or B) / B
    mask = lengths_mask(batch)
    x, kl, run = batch.inputs, 0.0, None
    for k, layer in enumerate(model.lstm.layers):
        run = run_layer(layer, model.family.name, x, mask, "sample")
        for t, (alpha, y, h_prev) in enumerate(
            zip(run.alphas, run.log_us, run.prev_h, strict=True)
        ):
            b = prior_concentration(model, k, x[:, t], h_prev, alpha.shape)
            if estimator == "analytic":
                term = gamma_kl(alpha, b)
            else:
                term = loggamma_log_density(alpha, y) - loggamma_log_density(b, y)
            kl = kl + (term.sum((-1, -2)) * mask[:, t]).sum()
        x = run.outputs
    log_lik = head_log_likelihood(model, run, batch).sum()
    return -(scale * log_lik - scale * model.kl_weight * kl)


# ----- DMM-style Pyro program: one sample site per layer per time step --------------------------
def _dmm_layers(model, batch, side: str):
    """Shared recurrence of the per-step program; ``side`` is ``model`` or ``guide``."""
    mask = lengths_mask(batch)
    full = batch.lengths is None
    fam = model.family.name
    B = batch.inputs.shape[0]
    x, outputs = batch.inputs, None
    for k, layer in enumerate(model.lstm.layers):
        H = layer.hidden_size
        w_x, b_x, w_h = layer.input_proj.weight, layer.input_proj.bias, layer.hidden_proj.weight
        n_gate = NUM_GATE_BLOCKS[fam]
        h, c = x.new_zeros(B, H), x.new_zeros(B, H)
        outs = []
        for t in range(x.shape[1]):
            z = (x[:, t] @ w_x.T + b_x + h @ w_h.T).view(B, n_gate + 2, H)
            # sites over log u laid out (K, H) per sequence: the library's order of draws
            if side == "guide":
                alpha = softplus(z[:, :n_gate]) + EPS
                fn = LogGamma(alpha).to_event(2)
            else:
                conc = prior_concentration(model, k, x[:, t], h, (B, H, n_gate))
                fn = LogGamma(conc.transpose(-1, -2)).to_event(2)
            with (
                poutine.scale(scale=model.kl_weight),
                poutine.mask(mask=None if full else mask[:, t]),
            ):
                log_u = pyro.sample(f"gate_{k}_{t}", fn).transpose(-1, -2)
            i, f = ratio_gates(fam, log_u, log_space=True)
            c_new = f * c + i * torch.tanh(z[:, n_gate])
            h_new = torch.sigmoid(z[:, n_gate + 1]) * torch.tanh(c_new)
            m = mask[:, t, None]
            c, h = torch.where(m, c_new, c), torch.where(m, h_new, h)
            outs.append(h_new * m)
        outputs = torch.stack(outs, dim=1)
        x = outputs
    return outputs, h


def dmm_model(model, batch):
    B = batch.inputs.shape[0]
    with pyro.plate("sequences", batch.dataset_size or B, subsample=torch.arange(B)):
        outputs, h_n = _dmm_layers(model, batch, "model")
        w, b = model.output.weight, model.output.bias
        if hasattr(model, "num_classes"):
            pyro.sample("obs", dist.Categorical(logits=h_n @ w.T + b), obs=batch.targets)
        else:
            d = dist.Bernoulli(logits=outputs @ w.T + b)
            if batch.lengths is not None:
                d = d.mask(lengths_mask(batch)[..., None])
            pyro.sample("obs", d.to_event(2), obs=batch.targets)


def dmm_guide(model, batch):
    B = batch.inputs.shape[0]
    with pyro.plate("sequences", batch.dataset_size or B, subsample=torch.arange(B)):
        _dmm_layers(model, batch, "guide")


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def training_noise(family: str) -> bool:
    """Whether a deterministic family's training gates are random (no reference for them)."""
    return gate_family_case(family).training_noise
