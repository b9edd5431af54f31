"""The mean-field ELBO of the gate models, evaluating only the log-densities it needs.

Built on Pyro's public API only: it is a :class:`~pyro.infer.TraceMeanField_ELBO` (so
:class:`~pyro.infer.SVI` and ``elbo(model, guide)`` accept it) that overrides the public methods
``loss``, ``loss_and_grads`` and ``differentiable_loss``, and computes them from
:func:`pyro.poutine.trace` of the guide and of the model replayed against it, with the trace
utilities of ``pyro.poutine.util``, ``pyro.distributions.util`` and ``pyro.util``. No private hook
of Pyro's ELBO classes is overridden or called.
"""

from __future__ import annotations

import warnings

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import TraceMeanField_ELBO, is_validation_enabled
from pyro.poutine import Trace
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, warn_if_nan
from torch.distributions import kl_divergence


class GateMeanFieldELBO(TraceMeanField_ELBO):
    """The loss of :class:`~pyro.infer.TraceMeanField_ELBO`, without the log-densities it would
    not use.

    Pyro's version evaluates ``log_prob`` of every site before it knows which latent sites have
    an analytic KL; for the gate sites (``B x T x H x K`` elements) that is a large share of an
    SVI step. This class computes the likelihood terms, the registered KL where there is one and
    ``log p - log q`` at the sample only where there is not. Its loss equals
    ``TraceMeanField_ELBO``'s (tested); it requires a fully reparameterised guide.

    Takes the arguments of :class:`~pyro.infer.TraceMeanField_ELBO`; its ``num_particles``
    draws run one after the other (``vectorize_particles`` is not supported); ``num_particles``
    must be at least 1.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.num_particles < 1:  # zero particles would give a silent loss of 0.0
            raise ValueError(f"num_particles must be at least 1, got {self.num_particles}")
        if self.vectorize_particles:
            raise ValueError(
                "GateMeanFieldELBO runs its particles sequentially (vectorize_particles=False); "
                "for vectorised particles use Trace_ELBO or TraceMeanField_ELBO with "
                "vectorize_particles=True"
            )

    def traces(self, model, guide, *args, **kwargs) -> tuple[Trace, Trace]:
        """One guide trace and the model replayed against it, subsample sites pruned and the
        observed sites' ``log_prob`` computed (the only log-densities every term needs)."""
        guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        replayed = poutine.replay(model, trace=guide_trace)
        model_trace = poutine.trace(replayed, graph_type="flat").get_trace(*args, **kwargs)
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
            _warn_unless_same_site_order(model_trace, guide_trace)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        return model_trace, guide_trace

    def particle_elbo(self, model_trace: Trace, guide_trace: Trace) -> torch.Tensor:
        """The ELBO of one particle: likelihood terms minus the KL (analytic where registered)."""
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes.get(name)
            if guide_site is None:
                raise ValueError(
                    f"the model samples the latent site {name!r} but the guide does not: every "
                    "latent site needs a guide site of the same name (a GatePrior with global "
                    "latent variables samples each of them in its guide() as well as its model())"
                )
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
        return elbo if torch.is_tensor(elbo) else torch.tensor(elbo)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO averaged over ``num_particles``, differentiable by autograd; warns
        when it is NaN (Pyro's ``warn_if_nan``)."""
        loss = self.unchecked_loss(model, guide, *args, **kwargs)
        warn_if_nan(loss, "loss")
        return loss

    def unchecked_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:meth:`differentiable_loss` without the NaN warning, for a training loop that tests
        the loss itself: the warning reads the loss, and then its gradient in the backward,
        from the device, and each read makes a GPU step wait."""
        loss = 0.0
        for _ in range(self.num_particles):
            surrogate = -self.particle_elbo(*self.traces(model, guide, *args, **kwargs))
            loss = loss + surrogate / self.num_particles
        return loss

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The negative ELBO averaged over ``num_particles``, as a float."""
        elbos = [
            self.particle_elbo(*self.traces(model, guide, *args, **kwargs)).detach()
            for _ in range(self.num_particles)
        ]
        return _negative_mean(elbos)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The negative ELBO as a float, after back-propagating it (what
        :class:`~pyro.infer.SVI` calls)."""
        elbos = []  # read together at the end
        for _ in range(self.num_particles):
            model_trace, guide_trace = self.traces(model, guide, *args, **kwargs)
            elbo = self.particle_elbo(model_trace, guide_trace)
            elbos.append(elbo.detach())
            trainable = any(
                site["type"] == "param"
                for trace in (model_trace, guide_trace)
                for site in trace.nodes.values()
            )
            if trainable and elbo.requires_grad:
                (-elbo / self.num_particles).backward(retain_graph=self.retain_graph)
        return _negative_mean(elbos)


def _negative_mean(elbos: list[torch.Tensor]) -> float:
    """``-mean(elbos)`` as a float, from one read of the device (not one per particle);
    summed in Python in particle order, as reading each particle's value did."""
    loss = 0.0
    for value in torch.stack([e.reshape(()) for e in elbos]).tolist():
        loss = loss - value / len(elbos)
    warn_if_nan(loss, "loss")
    return loss


def _warn_unless_same_site_order(model_trace: Trace, guide_trace: Trace) -> None:
    """Warn when the shared latent sites occur in another order in the guide than in the model
    (sufficient for the mean-field condition, as in ``TraceMeanField_ELBO``'s own check)."""
    model_sites = [n for n, s in model_trace.nodes.items() if s["type"] == "sample"]
    guide_sites = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"]
    shared_model = [n for n in model_sites if n in guide_trace.nodes]
    shared_guide = [n for n in guide_sites if n in model_trace.nodes]
    if shared_model != shared_guide:
        warnings.warn(
            "Failed to verify the mean-field restriction on the guide: model and guide sample "
            f"sites occur in different orders (model {shared_model}, guide {shared_guide}).",
            stacklevel=3,
        )


def _scaled_log_prob(site) -> torch.Tensor:
    log_prob = site["fn"].log_prob(site["value"])
    return scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
