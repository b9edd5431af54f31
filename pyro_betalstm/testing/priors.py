"""Test cases of the registered gate priors, and the battery every registered prior inherits."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO

from ..gates import get_gate_family
from ..models import SequenceBatch, SequenceClassifier
from ..models.gate_sites import prior_concentration_rate
from ..nn import StochasticLSTM
from ..priors import PRIORS, get_prior, is_log_space
from .gate_families import gate_family_names
from .registry import case_for


@dataclass(frozen=True)
class PriorCase:
    """What the battery needs to know about one registered prior.

    :param analytic_kl: its distribution is Gamma or LogGamma (the ELBO's KL is analytic).
    :param learns: it has parameters that the ELBO trains.
    :param hyper_sites: the names of its own global latent sites (sampled in ``model``).
    """

    analytic_kl: bool = True
    learns: bool = False
    hyper_sites: tuple[str, ...] = ()


#: One case per registered prior, keyed by its name in :data:`~pyro_betalstm.priors.PRIORS`.
PRIOR_CASES: dict[str, PriorCase] = {
    "gamma": PriorCase(),
    "learnable": PriorCase(learns=True),
    "conditional": PriorCase(learns=True),
    "hierarchical": PriorCase(learns=True, hyper_sites=("prior_concentration",)),
}


def prior_names() -> list[str]:
    """Names of the registered priors (:data:`~pyro_betalstm.priors.PRIORS`)."""
    return list(PRIORS)


def prior_case(name: str) -> PriorCase:
    """The test case of a registered prior (KeyError saying where to add a missing one)."""
    return case_for(PRIOR_CASES, name, "prior", "pyro_betalstm.testing.priors.PRIOR_CASES")


def _classifier(prior_name: str, family: str) -> SequenceClassifier:
    torch.manual_seed(0)
    lstm = StochasticLSTM(3, 4, 2, gate=family, batch_first=True)
    return SequenceClassifier(lstm, 3, prior=get_prior(prior_name), kl_weight=0.5)


def _batch() -> SequenceBatch:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 3, 4])
    x = torch.randn(3, 5, 3, generator=g) * (
        torch.arange(5)[None, :, None] < lengths[:, None, None]
    )
    return SequenceBatch(x, torch.tensor([0, 2, 1]), lengths, dataset_size=10)


class PriorBattery:
    """Tests every registered prior passes with every latent gate family. The subclass
    provides a ``prior_name`` fixture, parametrised over :func:`prior_names`."""

    def test_distribution_covers_the_basis_of_every_family(self, prior_name):
        case = prior_case(prior_name)
        for family in gate_family_names(latent=True):
            K, (B, D, H) = get_gate_family(family).basis_size, (6, 3, 4)
            prior = get_prior(prior_name)
            prior.setup(get_gate_family(family), [D, H], H)
            with poutine.trace() as tracer:
                prior.model()
            sites = tuple(n for n, s in tracer.trace.nodes.items() if s["type"] == "sample")
            assert sites == case.hyper_sites
            for layer, size in enumerate((D, H)):
                d = prior.distribution(layer, torch.randn(B, size), torch.randn(B, H))
                shape = torch.broadcast_shapes(d.batch_shape + d.event_shape, (B, H, K))
                assert shape == (B, H, K), f"{family}: {d.batch_shape + d.event_shape}"
                draw = d.sample()
                assert torch.isfinite(draw).all()
                assert is_log_space(d) or torch.all(draw > 0)
                assert (prior_concentration_rate(d) is not None) == case.analytic_kl

    def test_one_svi_step_is_finite_and_trains_the_prior(self, prior_name):
        case = prior_case(prior_name)
        for family in gate_family_names(latent=True):
            pyro.clear_param_store()
            model = _classifier(prior_name, family)
            torch.manual_seed(0)
            loss = Trace_ELBO().differentiable_loss(model.model, model.guide, _batch())
            assert torch.isfinite(loss), family
            loss.backward()
            grads = {n: p.grad for n, p in model.named_parameters()}
            assert all(g is None or torch.isfinite(g).all() for g in grads.values()), family
            prior_grads = [g for n, g in grads.items() if n.startswith("prior.") and g is not None]
            assert any(bool(g.abs().sum() > 0) for g in prior_grads) == case.learns, family
