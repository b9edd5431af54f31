"""Every gate family x every built-in prior x both ELBOs runs an SVI step cleanly.

Warnings are errors and Pyro's validation is on. "Cleanly": the loss is finite, every gradient is
finite and the optimiser changes the parameters. Deterministic families have no gate sites, so
their prior is ignored, with a warning (checked: the prior adds no parameters and no sites).
"""

from __future__ import annotations

from contextlib import nullcontext

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_betalstm.distributions import LogGamma
from pyro_betalstm.infer.elbo import GateMeanFieldELBO
from pyro_betalstm.models import GATE_SITES, site_name
from pyro_betalstm.priors import BivariateBetaPrior, FunctionPrior, get_prior
from pyro_betalstm.testing import PRIOR_CASES, prior_case, prior_names

from . import reference as ref
from .helpers import make_batch, make_model

FAMILIES = list(ref.LATENT) + list(ref.DETERMINISTIC)


def _prior(name: str, family: str):
    K = ref.BASIS_SIZE.get(family, 3)
    if name in PRIOR_CASES:  # the registered priors
        return get_prior(name)
    if name == "bivariate_beta":
        return BivariateBetaPrior(torch.linspace(0.4, 1.2, K).tolist())
    if name == "lognormal":  # a non-Gamma prior over u > 0: Monte Carlo KL
        return FunctionPrior(lambda layer, x, h: dist.LogNormal(torch.zeros(K), 1.0))
    if name == "loggamma":  # a prior over log u (real support) with an analytic KL
        return FunctionPrior(lambda layer, x, h: LogGamma(torch.full((K,), 0.7)))
    raise KeyError(name)


#: every registered prior, and three built from parameters or functions
PRIORS = prior_names() + ["bivariate_beta", "lognormal", "loggamma"]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "elbo_cls",
    [Trace_ELBO, TraceMeanField_ELBO, GateMeanFieldELBO],
    ids=["trace", "meanfield", "gate_meanfield"],
)
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("family", FAMILIES)
def test_svi_step(family, prior, elbo_cls):
    pyro.enable_validation(True)
    # a deterministic family ignores the prior, and says so (the only warning allowed here)
    ignored = (
        pytest.warns(UserWarning, match="is deterministic")
        if family in ref.DETERMINISTIC
        else nullcontext()
    )
    with ignored:
        m = make_model(
            "next_step",
            family,
            input_size=2,
            hidden_size=3,
            num_layers=2,
            prior=_prior(prior, family),
            kl_weight=0.5,
        )
    batch = make_batch("next_step", lengths=(4, 2), input_size=2, dataset_size=6)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    torch.manual_seed(0)
    loss = elbo_cls().differentiable_loss(m.model, m.guide, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n
    opt.step()
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("lstm.") for n in changed)
    if family in ref.LATENT and prior in PRIOR_CASES and prior_case(prior).learns:
        assert any(n.startswith("prior.") for n in changed), "the prior's parameters must learn"


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("family", ref.DETERMINISTIC)
def test_deterministic_families_ignore_the_prior(family, prior):
    with pytest.warns(UserWarning, match=rf"the '{family}' gate family is deterministic"):
        m = make_model("classifier", family, prior=_prior(prior, family))
    batch = make_batch("classifier")
    assert not any(n.startswith("prior.") for n, _ in m.named_parameters())
    trace = pyro.poutine.trace(m.model).get_trace(batch)
    sampled = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
    assert sampled == ["sequences", *GATE_SITES, "obs"]  # no latent site: the gates are recorded
    assert not pyro.poutine.trace(m.guide).get_trace(batch).stochastic_nodes


@pytest.mark.parametrize("family", ref.LATENT)
def test_latent_sites_have_the_documented_shapes(family):
    """One site per layer, batch (B,), event (T, H, K) over log u, scaled by N/B and kl_weight."""
    m = make_model("classifier", family, hidden_size=4, num_layers=2, kl_weight=0.5)
    batch = make_batch("classifier", lengths=(5, 3, 4), dataset_size=12)
    guide = pyro.poutine.trace(m.guide).get_trace(batch)
    model = pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide)).get_trace(batch)
    K = ref.BASIS_SIZE[family]
    for trace in (guide, model):
        for k in range(2):
            site = trace.nodes[site_name(k)]
            assert site["fn"].batch_shape == (3,)
            assert site["fn"].event_shape == (5, 4, K)
            assert site["value"].shape == (3, 5, 4, K)
            assert site["scale"] == pytest.approx(0.5 * 12 / 3)
    assert model.nodes["obs"]["scale"] == pytest.approx(12 / 3)
    # the model reuses the guide's draw (no second recurrence of draws)
    assert model.nodes[site_name(0)]["value"] is guide.nodes[site_name(0)]["value"]


@pytest.mark.parametrize("family", ref.LATENT)
def test_model_runs_from_the_prior(family):
    """Without a guide the model draws every layer's basis from the prior (Predictive path)."""
    m = make_model("next_step", family, num_layers=2)
    batch = make_batch("next_step")
    m._guide_runs = []
    torch.manual_seed(0)
    trace = pyro.poutine.trace(m.model).get_trace(batch)
    for k in range(2):
        v = trace.nodes[site_name(k)]["value"]
        assert v.shape == (3, 5, 4, ref.BASIS_SIZE[family]) and torch.isfinite(v).all()
    assert torch.isfinite(trace.log_prob_sum())


def test_prior_samples_follow_the_prior():
    """Model-side draws of log u have the LogGamma(0.5) mean digamma(0.5) (8 SE tolerance)."""
    m = make_model("classifier", "bivariate", hidden_size=8, num_layers=1)
    batch = make_batch("classifier", lengths=None, dataset_size=None)
    m._guide_runs = []
    torch.manual_seed(0)
    draws = torch.cat(
        [
            pyro.poutine.trace(m.model).get_trace(batch).nodes[site_name(0)]["value"].flatten()
            for _ in range(20)
        ]
    )
    se = draws.std() / draws.numel() ** 0.5
    assert abs(draws.mean() - torch.digamma(torch.tensor(0.5))) < 8 * se
