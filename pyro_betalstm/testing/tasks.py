"""The test battery every task model inherits: a registry of small cases and a mixin of tests.

A task model (a :class:`~pyro_betalstm.models.GateModel` subclass) says what it observes in
:meth:`~pyro_betalstm.models.GateModel.observation`; the base class builds the Pyro likelihood
and the log-likelihood from it. :class:`TaskModelTests` checks that contract for every case
in :data:`TASK_CASES`: shapes of the observation and the log-likelihood, the single observed
site of the likelihood, the mask of padded steps, and an ELBO that trains. To add a task
model, export it from :mod:`pyro_betalstm.models` and register a :class:`TaskCase` here;
:func:`missing_task_cases` (checked by the tests) names any exported task model without one.

In a test module::

    @pytest.fixture(params=list(TASK_CASES.values()), ids=lambda case: case.name)
    def task_case(request):
        return request.param


    @pytest.fixture(params=["sigmoid", "bivariate"])
    def gate(request):
        return request.param


    class TestTaskModels(TaskModelTests):
        pass
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pyro.poutine as poutine
import pytest
import torch

from .. import models
from ..infer import GateMeanFieldELBO
from ..models import (
    CaptionDecoder,
    GateModel,
    NextStepBernoulli,
    SequenceBatch,
    SequenceClassifier,
    TextClassifier,
    evaluating,
)
from ..models.base import OBSERVED_SITE
from ..nn import StochasticLSTM

#: Valid steps of the sequences of every case's batch (one full, two padded).
LENGTHS = (5, 3, 4)
#: Sequences the case batches are said to be drawn from (the subsampling scale).
DATASET_SIZE = 10


@dataclass(frozen=True)
class TaskCase:
    """A small model of one task class and a raw padded batch (lengths :data:`LENGTHS`) it scores.

    ``make_model(gate)`` builds the model with the gate family ``gate``, its weights drawn
    without touching the global random state.
    """

    model_class: type[GateModel]
    make_model: Callable[[str], GateModel]
    make_batch: Callable[[], SequenceBatch]

    @property
    def name(self) -> str:
        return self.model_class.__name__


def _seeded(build: Callable[[str], GateModel]) -> Callable[[str], GateModel]:
    def make(gate: str) -> GateModel:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build(gate)

    return make


def _lstm(gate: str, input_size: int = 3) -> StochasticLSTM:
    return StochasticLSTM(input_size, 4, 2, gate=gate, batch_first=True)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(1)


def _lengths() -> torch.Tensor:
    return torch.tensor(LENGTHS)


def _valid(batch_shape: tuple[int, int]) -> torch.Tensor:
    """``(B, T)`` mask of the steps within :data:`LENGTHS`."""
    return torch.arange(batch_shape[1])[None, :] < _lengths()[:, None]


def _float_inputs(g: torch.Generator) -> torch.Tensor:
    x = torch.randn(len(LENGTHS), max(LENGTHS), 3, generator=g)
    return x * _valid(x.shape[:2])[..., None]  # zero padding


def _token_inputs(g: torch.Generator, vocab_size: int, low: int = 1) -> torch.Tensor:
    ids = torch.randint(low, vocab_size, (len(LENGTHS), max(LENGTHS)), generator=g)
    return (ids * _valid(ids.shape))[..., None]  # padding id 0


def _classifier_batch() -> SequenceBatch:
    g = _generator()
    x = _float_inputs(g)
    y = torch.randint(0, 3, (len(LENGTHS),), generator=g)
    return SequenceBatch(x, y, _lengths(), DATASET_SIZE)


def _next_step_batch() -> SequenceBatch:
    g = _generator()
    x = _float_inputs(g)
    y = torch.randint(0, 2, x.shape, generator=g).to(x.dtype)
    return SequenceBatch(x, y, _lengths(), DATASET_SIZE)


def _text_batch() -> SequenceBatch:
    g = _generator()
    ids = _token_inputs(g, vocab_size=9)
    y = torch.randint(0, 2, (len(LENGTHS),), generator=g)
    return SequenceBatch(ids, y, _lengths(), DATASET_SIZE)


def _caption_batch() -> SequenceBatch:
    g = _generator()
    tokens = _token_inputs(g, vocab_size=7, low=3)
    targets = torch.randint(3, 7, tokens.shape[:2], generator=g) * _valid(tokens.shape[:2])
    images = torch.rand(len(LENGTHS), 16, 16, generator=g)
    return SequenceBatch(tokens, targets, _lengths(), DATASET_SIZE, {"images": images})


#: One case per task model exported from :mod:`pyro_betalstm.models`, by class name.
TASK_CASES: dict[str, TaskCase] = {
    case.name: case
    for case in (
        TaskCase(
            SequenceClassifier,
            _seeded(lambda gate: SequenceClassifier(_lstm(gate), 3)),
            _classifier_batch,
        ),
        TaskCase(
            NextStepBernoulli,
            _seeded(lambda gate: NextStepBernoulli(_lstm(gate), 3)),
            _next_step_batch,
        ),
        TaskCase(
            TextClassifier,
            _seeded(lambda gate: TextClassifier(_lstm(gate, 5), vocab_size=9, num_classes=2)),
            _text_batch,
        ),
        TaskCase(
            CaptionDecoder,
            _seeded(
                lambda gate: CaptionDecoder(
                    _lstm(gate, 6), vocab_size=7, cnn_channels=(2, 2, 2), dropout=0.5
                )
            ),
            _caption_batch,
        ),
    )
}


def task_model_classes() -> list[type[GateModel]]:
    """Every task model class exported from :mod:`pyro_betalstm.models` (GateModel subclasses)."""
    exported = (getattr(models, name) for name in models.__all__)
    return [
        obj
        for obj in exported
        if isinstance(obj, type) and issubclass(obj, GateModel) and obj is not GateModel
    ]


def missing_task_cases() -> list[str]:
    """Names of the exported task model classes that have no case in :data:`TASK_CASES`."""
    return [cls.__name__ for cls in task_model_classes() if cls.__name__ not in TASK_CASES]


def one_sequence(batch: SequenceBatch, index: int) -> SequenceBatch:
    """Sequence ``index`` of ``batch`` alone, cut to its valid steps (no padding, no lengths).

    Per-step tensors (``inputs``, and ``targets`` with a time dimension) are cut in time;
    ``extras`` (per-sequence, such as images) are only selected.
    """
    steps = batch.inputs.shape[1] if batch.lengths is None else int(batch.lengths[index])
    row = slice(index, index + 1)
    targets = batch.targets
    if targets is not None:
        targets = targets[row, :steps] if targets.dim() >= 2 else targets[row]
    extras = {k: v[row] for k, v in batch.extras.items()}
    return SequenceBatch(batch.inputs[row, :steps], targets, None, batch.dataset_size, extras)


class TaskModelTests:
    """Tests every task model passes; a test class inheriting them provides two fixtures:
    ``task_case`` (a :class:`TaskCase`) and ``gate`` (a gate family name)."""

    @pytest.fixture
    def model(self, task_case: TaskCase, gate: str) -> GateModel:
        return task_case.make_model(gate)

    @pytest.fixture
    def batch(self, task_case: TaskCase) -> SequenceBatch:
        batch = task_case.make_batch()
        assert batch.lengths is not None and not bool(batch.step_mask().all()), (
            "a task case's batch must pad some sequences, so that the mask is tested"
        )
        return batch

    @staticmethod
    def top_run(model: GateModel, batch: SequenceBatch):
        """The top layer's run with the paper's mean gates, in evaluation mode."""
        with evaluating(model), torch.no_grad():
            return model.run_network(batch, "mean")[-1]

    def test_observation_scores_one_event_per_sequence(self, model, batch):
        run = self.top_run(model, batch)
        with evaluating(model), torch.no_grad():
            distribution, observed = model.observation(run, batch)
        assert distribution.batch_shape == (batch.batch_size,)
        assert torch.equal(observed, batch.targets)
        log_p = distribution.log_prob(observed)
        assert log_p.shape == (batch.batch_size,) and bool(torch.isfinite(log_p).all())
        assert bool((log_p <= 0).all())  # the targets are discrete: probabilities at most 1

    def test_log_likelihood_is_the_observations_log_prob(self, model, batch):
        run = self.top_run(model, batch)
        with evaluating(model), torch.no_grad():
            distribution, observed = model.observation(run, batch)
            log_likelihood = model.log_likelihood(run, batch)
            # the raw batch and the embedded one (as the Pyro model passes it) score alike
            embedded = model.log_likelihood(run, model.embed_batch(batch))
        assert log_likelihood.shape == (batch.batch_size,)
        torch.testing.assert_close(log_likelihood, distribution.log_prob(observed))
        torch.testing.assert_close(embedded, log_likelihood)

    def test_likelihood_observes_the_targets_at_one_site(self, model, batch):
        run = self.top_run(model, batch)
        with evaluating(model), torch.no_grad():
            trace = poutine.trace(model.likelihood).get_trace(run, batch)
            expected = model.log_likelihood(run, batch)
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
        assert sites == [OBSERVED_SITE]
        site = trace.nodes[OBSERVED_SITE]
        assert site["is_observed"] and torch.equal(site["value"], batch.targets)
        torch.testing.assert_close(site["fn"].log_prob(site["value"]), expected)

    def test_model_scales_the_observed_site_to_the_data_set(self, model, batch):
        with torch.no_grad():
            trace = poutine.trace(model.model).get_trace(batch)
        site = trace.nodes[OBSERVED_SITE]
        assert site["is_observed"]
        assert site["scale"] == pytest.approx(DATASET_SIZE / batch.batch_size)

    def test_mask_marks_the_valid_steps(self, model, batch):
        embedded = model.embed_batch(batch)
        assert torch.equal(model.mask(embedded).cpu(), batch.step_mask())
        full = model.embed_batch(one_sequence(batch, 0))
        assert model.mask(full) is None

    def test_padding_does_not_change_a_sequences_log_likelihood(self, model, batch):
        together = self._log_likelihood(model, batch)
        for index in range(batch.batch_size):
            alone = self._log_likelihood(model, one_sequence(batch, index))
            torch.testing.assert_close(together[index : index + 1], alone)

    def test_num_predictions_counts_what_the_likelihood_scores(self, model, batch):
        count = model.num_predictions(batch)
        assert count in (batch.batch_size, sum(LENGTHS))  # per sequence, or per valid step
        alone = [model.num_predictions(one_sequence(batch, i)) for i in range(batch.batch_size)]
        assert sum(alone) == count

    def test_elbo_is_finite_and_trains_the_task_head(self, model, batch):
        model.train()
        loss = GateMeanFieldELBO().differentiable_loss(model.model, model.guide, batch)
        assert bool(torch.isfinite(loss))
        loss.backward()
        recurrent = {id(p) for p in model.lstm.parameters()}
        head = [p.grad for p in model.parameters() if id(p) not in recurrent]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in head)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert all(bool(torch.isfinite(g).all()) for g in grads)

    def test_observation_refuses_missing_targets(self, model, batch):
        run = self.top_run(model, batch)
        with pytest.raises(ValueError, match="targets"):
            model.observation(run, dataclasses.replace(batch, targets=None))

    @staticmethod
    def _log_likelihood(model: GateModel, batch: SequenceBatch) -> torch.Tensor:
        with evaluating(model), torch.no_grad():
            return model.log_likelihood(model.run_network(batch, "mean")[-1], batch)
