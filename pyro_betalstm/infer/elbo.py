"""The mean-field ELBO of the gate models, evaluating only the log-densities it needs."""

from __future__ import annotations

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match
from torch.distributions import kl_divergence


class GateMeanFieldELBO(TraceMeanField_ELBO):
    """:class:`~pyro.infer.TraceMeanField_ELBO` without the log-densities it would not use.

    Pyro's version evaluates ``log_prob`` of every site before it knows which latent sites have
    an analytic KL; for the gate sites (``B x T x H x K`` elements) that is a large share of an
    SVI step. This class computes the likelihood terms, the registered KL where there is one and
    ``log p - log q`` at the sample only where there is not. Its loss equals
    ``TraceMeanField_ELBO``'s (tested); it requires a fully reparameterised guide.
    """

    def _get_trace(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        replayed = poutine.replay(model, trace=guide_trace)
        model_trace = poutine.trace(replayed, graph_type="flat").get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            _check_mean_field_requirement(model_trace, guide_trace)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        return model_trace, guide_trace

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if not guide_site["fn"].has_rsample:
                raise ValueError(
                    f"site {name!r}: the mean-field ELBO needs a reparameterised guide"
                )
            if guide_site["mask"] is False:  # a masked-out term (kl_weight = 0)
                continue
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
                kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
                elbo = elbo - kl.sum()
            except NotImplementedError:
                elbo = elbo + _scaled_log_prob(site) - _scaled_log_prob(guide_site)
        for name, guide_site in guide_trace.nodes.items():
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                if not guide_site["infer"].get("is_auxiliary"):
                    raise ValueError(f"guide site {name!r} is missing from the model")
                elbo = elbo - _scaled_log_prob(guide_site)
        if not torch.is_tensor(elbo):
            elbo = torch.tensor(elbo)
        return -torch_item(elbo), -elbo


def _scaled_log_prob(site) -> torch.Tensor:
    log_prob = site["fn"].log_prob(site["value"])
    return scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
