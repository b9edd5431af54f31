"""Bad input gives a ValueError whose message says what is wrong."""

from __future__ import annotations

import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.models import NextStepBernoulli, SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.priors import BivariateBetaPrior, GammaPrior, LearnableGammaPrior, get_prior

from .helpers import make_batch, make_model


def _loss(m, batch):
    return TraceMeanField_ELBO().differentiable_loss(m.model, m.guide, batch)


def test_wrong_input_width():
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match="has 2 features per step; this network expects 3"):
        lstm(torch.randn(2, 5, 2))
    m = make_model()
    with pytest.raises(ValueError, match="features per step"):
        _loss(m, SequenceBatch(torch.randn(2, 5, 7), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="3-D tensor"):
        lstm(torch.randn(5, 3))


@pytest.mark.parametrize("lengths", [[5, 6], [0, 3], [-1, 2]])
def test_lengths_out_of_range(lengths):
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor(lengths))
    m = make_model()
    batch = SequenceBatch(torch.randn(2, 5, 3), torch.tensor([0, 1]), torch.tensor(lengths))
    with pytest.raises(ValueError, match="lengths must lie in"):
        _loss(m, batch)


def test_lengths_shape_and_whole_numbers():
    lstm = StochasticLSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor([5, 4, 3]))
    with pytest.raises(ValueError, match="whole numbers"):
        lstm(torch.randn(2, 5, 3), lengths=torch.tensor([5.0, 2.5]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(bad):
    x = torch.randn(2, 5, 3)
    x[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        StochasticLSTM(3, 4, batch_first=True)(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _loss(make_model(), SequenceBatch(x, torch.tensor([0, 1])))


def test_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(0, 5, 3))
    with pytest.raises(ValueError, match="empty batch"):
        StochasticLSTM(3, 4, batch_first=True)(torch.randn(2, 0, 3))
    with pytest.raises(ValueError, match="empty batch"):
        _loss(make_model(), SequenceBatch(torch.randn(0, 5, 3), torch.zeros(0, dtype=torch.long)))


def test_unknown_gate_family():
    with pytest.raises(ValueError, match="unknown gate family 'betta'; expected one of"):
        StochasticLSTM(3, 4, gate="betta")
    with pytest.raises(ValueError, match="unknown gate family"):
        get_gate_family("lstm")


def test_bad_network_sizes():
    with pytest.raises(ValueError, match="must be positive integers"):
        StochasticLSTM(3, 0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        StochasticLSTM(3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="gate_mode='given' needs log_basis"):
        StochasticLSTM(3, 4)(torch.randn(5, 2, 3), gate_mode="given")


def test_unknown_prior_name():
    with pytest.raises(ValueError, match="unknown prior 'gama'"):
        get_prior("gama")
    with pytest.raises(ValueError, match="unknown prior"):
        make_model(prior="normal")
    with pytest.raises(ValueError, match="cannot make a gate prior"):
        get_prior(3.0)


@pytest.mark.parametrize(
    "gate, params", [("bivariate", [1.0, 1.0]), ("bivariate5", [1.0] * 3), ("beta", [1.0] * 5)]
)
def test_bivariate_beta_prior_with_wrong_number_of_params(gate, params):
    with pytest.raises(
        ValueError,
        match=rf"BivariateBetaPrior has {len(params)} parameters; the "
        rf"'{gate}' family needs",
    ):
        make_model(gate=gate, prior=BivariateBetaPrior(params))
    with pytest.raises(ValueError, match="must be a vector"):
        BivariateBetaPrior([[1.0, 1.0, 1.0]])


def test_gamma_prior_basis_size_mismatch():
    with pytest.raises(ValueError, match="basis of 3 Gammas"):
        make_model(gate="bivariate", prior=GammaPrior([0.5, 0.5]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GammaPrior(-0.5),
        lambda: GammaPrior(0.5, rate=0.0),
        lambda: GammaPrior([0.5, float("nan"), 0.5]),
        lambda: BivariateBetaPrior([1.0, -1.0, 1.0]),
        lambda: LearnableGammaPrior(init_concentration=0.0),
    ],
)
def test_non_positive_prior_concentration(make):
    with pytest.raises(ValueError, match="must be positive and finite"):
        make()


def test_negative_kl_weight():
    m = make_model(kl_weight=-1.0)
    with pytest.raises(ValueError, match="kl_weight must be non-negative"):
        _loss(m, make_batch())


def test_sequence_dataset_errors():
    with pytest.raises(ValueError, match="the data set is empty"):
        SequenceDataset([])
    with pytest.raises(ValueError, match="same feature width"):
        SequenceDataset([torch.randn(3, 2), torch.randn(4, 3)])
    with pytest.raises(ValueError, match="2-D"):
        SequenceDataset([torch.randn(3)])
    with pytest.raises(ValueError, match="at least one step"):
        SequenceDataset([torch.randn(0, 2), torch.randn(3, 2)])
    with pytest.raises(ValueError, match="1 targets for 2 sequences"):
        SequenceDataset([torch.randn(3, 2), torch.randn(4, 2)], torch.tensor([1]))
    with pytest.raises(ValueError, match=r"as many steps as their inputs \(3 != 4\)"):
        SequenceDataset(
            [torch.randn(3, 2), torch.randn(4, 2)], [torch.ones(3, 1), torch.ones(3, 1)]
        )
    data = SequenceDataset([torch.randn(3, 2)], torch.tensor([0]))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(data.batches(0))


def test_classifier_targets():
    m = make_model("classifier", num_outputs=3)
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        _loss(m, SequenceBatch(x, torch.tensor([0, 3])))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
        _loss(m, SequenceBatch(x, torch.tensor([-1, 0])))
    with pytest.raises(ValueError, match=r"class indices of shape \(2,\)"):
        _loss(m, SequenceBatch(x, torch.tensor([[0], [1]])))
    with pytest.raises(ValueError, match="class indices"):
        _loss(m, SequenceBatch(x, None))
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        SequenceClassifier(StochasticLSTM(3, 4, batch_first=True), 1)


def test_next_step_target_shapes():
    m = make_model("next_step", num_outputs=4)
    x = torch.randn(2, 5, 3)
    for y in (torch.ones(2, 5, 3), torch.ones(2, 4, 4), torch.ones(5, 4), None):
        with pytest.raises(ValueError, match=r"targets must have shape \(2, 5, 4\)"):
            _loss(m, SequenceBatch(x, y))
    assert isinstance(m, NextStepBernoulli)
