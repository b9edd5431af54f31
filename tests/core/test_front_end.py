"""A model with an input front end: ``model`` and ``guide`` take the raw batch and embed it once.

``GateModel.guide`` embeds through ``embed_batch`` and the model reuses that very embedding for the
same batch object (same front-end pass, same dropout mask); otherwise the model embeds itself.
"""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.infer import GateMeanFieldELBO
from pyro_betalstm.models import SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.testing import gate_family_names

RAW_SIZE, INPUT_SIZE = 2, 3


class CountingFrontEnd(SequenceClassifier):
    """Raw ``(B, T, 2)`` inputs -> dropout(Linear) ``(B, T, 3)``; counts and keeps each embedding,
    records the inputs that reach the likelihood and the first layer."""

    def __init__(self, gate: str, num_layers: int = 2):
        torch.manual_seed(0)
        lstm = StochasticLSTM(INPUT_SIZE, 4, num_layers, gate=gate, batch_first=True)
        # a KL weight for the latent families only: a deterministic one warns it is ignored
        super().__init__(lstm, 3, kl_weight=0.5 if lstm.family.is_latent else None)
        self.front = nn.Linear(RAW_SIZE, INPUT_SIZE)
        self.drop = nn.Dropout(0.5)
        self.embedded: list[torch.Tensor] = []
        self.validated: list[torch.Tensor] = []  # the inputs each call of mask() checked
        self.likelihood_inputs: list[torch.Tensor] = []
        self.layer_inputs: list[torch.Tensor] = []
        self.layer_outputs: list[torch.Tensor] = []
        lstm.layers[0].register_forward_hook(self._record_layer)

    def _record_layer(self, module, args, run):
        self.layer_inputs.append(args[0])
        self.layer_outputs.append(run.outputs)

    def embed_batch(self, batch: SequenceBatch) -> SequenceBatch:
        x = self.drop(self.front(batch.inputs))  # a raw (or twice embedded) batch fails here
        self.embedded.append(x)
        return SequenceBatch(x, batch.targets, batch.lengths, batch.dataset_size, batch.extras)

    def mask(self, batch: SequenceBatch):
        self.validated.append(batch.inputs)
        return super().mask(batch)

    def likelihood(self, run, batch: SequenceBatch) -> None:
        self.likelihood_inputs.append(batch.inputs)
        super().likelihood(run, batch)


def raw_batch(seed: int = 1) -> SequenceBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 3, 4])
    x = torch.randn(3, 5, RAW_SIZE, generator=g)
    return SequenceBatch(x, torch.tensor([0, 2, 1]), lengths, dataset_size=10)


@pytest.mark.parametrize("gate", gate_family_names())
@pytest.mark.parametrize("elbo, evaluations", [(GateMeanFieldELBO(), 1), (Trace_ELBO(2), 2)])
def test_one_embedding_per_elbo_evaluation_shared_by_model_and_guide(gate, elbo, evaluations):
    m = CountingFrontEnd(gate).train()
    batch = raw_batch()
    pyro.set_rng_seed(0)
    loss = elbo.differentiable_loss(m.model, m.guide, batch)
    assert torch.isfinite(loss)
    assert len(m.embedded) == evaluations
    # the model saw the embedding the guide made (the guide runs the first layer), not a copy
    assert len(m.likelihood_inputs) == len(m.layer_inputs) == evaluations
    for x, seen_by_model, seen_by_layer in zip(
        m.embedded, m.likelihood_inputs, m.layer_inputs, strict=True
    ):
        assert seen_by_model is x and seen_by_layer is x
    # each embedding is validated once: the model takes the guide's mask with its embedding
    # (a second check would read the device from the host mid-step)
    assert len(m.validated) == evaluations
    assert all(v is x for v, x in zip(m.validated, m.embedded, strict=True))
    loss.backward()
    assert m.front.weight.grad.abs().sum() > 0  # the front end is trained through SVI
    # dropout is on, so a second embedding of the same batch would differ
    assert not torch.equal(m.embed_batch(batch).inputs, m.embedded[0])


def test_model_recomputing_the_run_uses_the_guides_inputs():
    """Replaying values that are not the guide's very draws makes the model run the layer again:
    on the guide's embedding (same dropout mask) it reproduces the guide's outputs exactly."""
    m = CountingFrontEnd("bivariate", num_layers=1).train()
    batch = raw_batch()
    guide_trace = poutine.trace(m.guide).get_trace(batch)
    for node in guide_trace.nodes.values():
        if node["type"] == "sample":
            node["value"] = node["value"].clone()
    poutine.trace(poutine.replay(m.model, trace=guide_trace)).get_trace(batch)
    assert len(m.embedded) == 1 and len(m.layer_inputs) == 2  # guide's run, model's rerun
    assert m.layer_inputs[0] is m.embedded[0] and m.layer_inputs[1] is m.embedded[0]
    torch.testing.assert_close(m.layer_outputs[1], m.layer_outputs[0], rtol=0, atol=0)


def test_the_model_embeds_other_batches_itself_and_keeps_no_cache():
    m = CountingFrontEnd("bivariate").train()
    a, b = raw_batch(1), raw_batch(2)
    m.guide(a)
    poutine.trace(m.model).get_trace(b)  # not the guide's batch: prior draws on b's embedding
    assert len(m.embedded) == 2 and m.likelihood_inputs[-1] is m.embedded[1]
    assert m.validated[-1] is m.embedded[1]  # ... which the model validated itself
    # the model took the guide's cache and dropped it: a again is embedded afresh
    poutine.trace(m.model).get_trace(a)
    assert len(m.embedded) == 3 and m.likelihood_inputs[-1] is m.embedded[2]
    GateMeanFieldELBO().differentiable_loss(m.model, m.guide, a)
    assert len(m.embedded) == 4
    poutine.trace(m.model).get_trace(a)
    assert len(m.embedded) == 5 and m.likelihood_inputs[-1] is m.embedded[4]
