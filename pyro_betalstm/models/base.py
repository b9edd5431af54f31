"""The Pyro program shared by every task: gate sites per layer, then a task likelihood."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from torch import nn

from ..distributions.numerics import sample_log_gamma
from ..nn import GivenBasis, LayerCall, LayerRun, PriorBasis, SampledBasis, StochasticLSTM
from ..nn.stochastic_lstm import lengths_to_mask, validate_sequences
from ..priors import GatePrior, get_prior, is_log_space
from .gate_sites import GuideGateSequence, PriorGateSequence, prior_concentration_rate


@dataclass
class SequenceBatch:
    """A minibatch of (possibly padded) sequences.

    ``inputs``: ``(B, T, D)`` batch first. ``lengths``: ``(B,)`` valid steps or None when all
    are full. ``targets``: task-specific (class labels ``(B,)``, next frames ``(B, T, D')``...).
    ``dataset_size``: number of sequences the minibatch was drawn from, for the subsampling
    scale (None: the batch is the whole data set).
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    dataset_size: int | None = None
    extras: dict = field(default_factory=dict)

    def to(self, device) -> SequenceBatch:
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return SequenceBatch(
            move(self.inputs),
            move(self.targets),
            move(self.lengths),
            self.dataset_size,
            {k: move(v) for k, v in self.extras.items()},
        )

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    def step_mask(self) -> torch.Tensor:
        """Boolean ``(B, T)`` mask of valid steps, on the CPU (all True without ``lengths``)."""
        B, T = self.inputs.shape[:2]
        if self.lengths is None:
            return torch.ones(B, T, dtype=torch.bool)
        return lengths_to_mask(self.lengths.cpu(), T)


def site_name(layer: int) -> str:
    """Name of the latent gate site of ``layer``."""
    return f"gate_basis_{layer}"


class GateModel(nn.Module):
    """A stochastic-gate LSTM with gate priors, an amortised guide and a task likelihood.

    Subclasses implement :meth:`likelihood` (observe the targets given the top layer's run)
    and :meth:`predict_from_run`, and a model with an input front end overrides
    :meth:`embed_batch`. ``model`` and ``guide`` are Pyro callables taking a raw
    :class:`SequenceBatch` (they embed it themselves); every parameter is an ordinary
    ``nn.Module`` parameter, so ``elbo.differentiable_loss(m.model, m.guide, batch)`` is trained
    with any torch optimiser.

    :param lstm: the recurrent network (its gate family decides whether gates are latent).
    :param prior: a :class:`GatePrior`, its name, a function, or None for ``Gamma(0.5, 1)``.
    :param kl_weight: the paper's ``kl_lambda``; multiplies the gate KL (and can be annealed
        by changing the attribute during training).
    """

    def __init__(self, lstm: StochasticLSTM, prior=None, kl_weight: float = 1.0):
        super().__init__()
        self.lstm = lstm
        self.prior: GatePrior = get_prior(prior)
        if lstm.family.is_latent:  # deterministic gate families have no latent gates to prior
            sizes = [layer.input_size for layer in lstm.layers]
            self.prior.setup(lstm.family, sizes, lstm.hidden_size)
        self.kl_weight = float(kl_weight)
        self._guide_runs: list[LayerRun] = []
        # (raw batch, embedded batch) of the last guide call, until the model consumes it
        self._embedded: tuple[SequenceBatch, SequenceBatch] | None = None

    @property
    def family(self):
        return self.lstm.family

    # ----- task interface --------------------------------------------------------------------
    def likelihood(self, run: LayerRun, batch: SequenceBatch) -> None:
        raise NotImplementedError

    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        """Task output (for instance logits) from the top layer's run."""
        raise NotImplementedError

    def log_likelihood(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        """``log p(targets | gates)`` per sequence, ``(B,)``."""
        raise NotImplementedError

    def num_predictions(self, batch: SequenceBatch) -> int:
        """How many predictions the batch's likelihood scores (the unit of reported NLL)."""
        return batch.batch_size

    # ----- the Pyro program --------------------------------------------------------------------
    def _kl_scale(self):
        """``poutine.scale(kl_weight)`` on the gate sites; ``kl_weight == 0`` (no prior term, the
        paper's bBLSTM(5G) without prior) masks them instead, as Pyro rejects a zero scale."""
        if not self.kl_weight >= 0:
            raise ValueError(f"kl_weight must be non-negative, got {self.kl_weight}")
        if self.kl_weight == 0:
            return poutine.mask(mask=False)
        return poutine.scale(scale=self.kl_weight)

    def _plate(self, batch: SequenceBatch):
        size = batch.dataset_size or batch.batch_size
        return pyro.plate(
            "sequences", size, subsample=torch.arange(batch.batch_size, device=batch.inputs.device)
        )

    def _mask(self, batch: SequenceBatch) -> torch.Tensor | None:
        """Validate the batch; the mask of valid steps (None when all sequences are full)."""
        dtype = next((p.dtype for p in self.lstm.parameters()), None)
        return validate_sequences(batch.inputs, batch.lengths, self.lstm.input_size, dtype)[1]

    def _prior_sampler(self, layer: int):
        def sampler(t, x_t, h_prev):
            d = self.prior.distribution(layer, x_t, h_prev)
            params = prior_concentration_rate(d)
            shape = (x_t.shape[0], self.lstm.hidden_size, self.family.basis_size)
            if params is not None:  # log-space draw: no float32 underflow
                conc, rate = (p.expand(shape) for p in params)
                return sample_log_gamma(conc) - rate.log()
            value = d.rsample() if d.has_rsample else d.sample()
            return value.expand(shape) if is_log_space(d) else value.log().expand(shape)

        return sampler

    def _embedded_for_model(self, batch: SequenceBatch) -> SequenceBatch:
        """The guide's embedded inputs when the guide ran on this very batch object (same
        front-end pass, same dropout mask), else a fresh :meth:`embed_batch`. Taking the cache
        clears it, so no batch outlives its ELBO evaluation."""
        cached, self._embedded = self._embedded, None
        if cached is not None and cached[0] is batch:
            return cached[1]
        return self.embed_batch(batch)

    def model(self, batch: SequenceBatch) -> None:
        """``p(targets, u | inputs)``: gate sites from the prior, then the task likelihood.

        ``batch`` is raw (as the data set gives it): the model embeds it with
        :meth:`embed_batch`, or reuses the guide's embedding of the same batch object."""
        batch = self._embedded_for_model(batch)
        lstm, mask = self.lstm, self._mask(batch)
        if self.family.is_latent:
            self.prior.model()
        with self._plate(batch):
            if self.family.is_latent:
                runs = lstm.run(batch.inputs, mask, layer_hook=self._model_layer(batch, mask))
            else:
                runs = lstm.run(batch.inputs, mask, gate_mode="sample")
            run = runs[-1]
            self.likelihood(run, batch)

    def _model_layer(self, batch: SequenceBatch, mask: torch.Tensor | None):
        """The model's layer hook: a prior gate site per layer, which reuses the guide's run
        when its value is the guide's very draw (the layer input is then never formed)."""
        B, T = batch.inputs.shape[:2]
        shape = (B, T, self.lstm.hidden_size, self.family.basis_size)

        def model_layer(call: LayerCall) -> LayerRun:
            k = call.index

            def run_given(value):
                return call.run(GivenBasis(value))

            def run_prior():
                return call.run(PriorBasis(self._prior_sampler(k)))

            site = PriorGateSequence(shape, mask, run_given, self.prior, k, run_prior)
            site.run = self._guide_runs[k] if k < len(self._guide_runs) else None
            with self._kl_scale():
                value = pyro.sample(site_name(k), site)
            return site.run_for(value)  # the guide's run when value is its very draw

        return model_layer

    def guide(self, batch: SequenceBatch) -> None:
        """Amortised ``q(u | inputs)``: each layer's gate network gives ``Gamma(alpha_t, 1)``.

        ``batch`` is raw: the guide embeds it with :meth:`embed_batch` and keeps the result for
        the model's call on the same batch object."""
        self._guide_runs, self._embedded = [], None
        if not self.family.is_latent:
            return
        embedded = self.embed_batch(batch)
        self._embedded = (batch, embedded)
        batch = embedded
        lstm, mask = self.lstm, self._mask(batch)
        self.prior.guide()

        def guide_layer(call: LayerCall) -> LayerRun:
            x = call.input()  # formed before the site, so dropout is drawn before the gates

            def run_layer(value):
                return call.run(SampledBasis() if value is None else GivenBasis(value))

            shape = (x.shape[0], x.shape[1], lstm.hidden_size, self.family.basis_size)
            site = GuideGateSequence(shape, mask, run_layer)
            with self._kl_scale():
                pyro.sample(site_name(call.index), site)
            self._guide_runs.append(site.run)
            return site.run

        with self._plate(batch):
            lstm.run(batch.inputs, mask, layer_hook=guide_layer)

    # ----- prediction ----------------------------------------------------------------------------
    def embed_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The batch as the LSTM sees it. The identity here; a model with an input front end
        (word embeddings, an image encoder) returns ``inputs`` mapped to ``(B, T, D)`` floats, so
        that :meth:`model`, :meth:`guide`, :meth:`run_network` and gate draws
        (:func:`~pyro_betalstm.infer.sample_gates`) take the raw batch. The Pyro program calls
        it once per ELBO evaluation (for a latent family the model reuses the guide's result)."""
        return batch

    def run_network(self, batch: SequenceBatch, gate_mode: str = "mean") -> list[LayerRun]:
        """Run the network without Pyro: ``mean`` gates (the paper's evaluation) or ``sample``."""
        batch = self.embed_batch(batch)
        return self.lstm.run(batch.inputs, self._mask(batch), gate_mode=gate_mode)
