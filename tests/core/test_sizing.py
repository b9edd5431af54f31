"""Parameter counts of stochastic-gate LSTM layers and the parameter-matched hidden size search."""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm.gates import GATE_FAMILIES
from pyro_betalstm.nn import StochasticLSTM, layer_parameters, matched_hidden_size


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
@pytest.mark.parametrize("input_size,hidden", [(1, 1), (7, 5), (50, 12)])
def test_layer_parameters_counts_a_stochastic_lstm_layer(gate, input_size, hidden):
    lstm = StochasticLSTM(input_size, hidden, 1, gate=gate, batch_first=True)
    assert layer_parameters(gate, input_size, hidden) == sum(p.numel() for p in lstm.parameters())


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
def test_layer_parameters_of_a_stack_sum_per_layer(gate):
    lstm = StochasticLSTM(9, 6, 3, gate=gate, batch_first=True)
    expected = layer_parameters(gate, 9, 6) + 2 * layer_parameters(gate, 6, 6)
    assert sum(p.numel() for p in lstm.parameters()) == expected


def test_sigmoid_layer_is_torch_lstm_less_one_bias_vector():
    # 4 blocks * 128 * (50 + 128 + 1), by hand
    assert layer_parameters("sigmoid", 50, 128) == 91_648
    reference = sum(p.numel() for p in torch.nn.LSTM(50, 128).parameters())
    assert layer_parameters("sigmoid", 50, 128) == reference - 4 * 128
    # bivariate5: 5 gate pre-activations + g + o
    assert layer_parameters("bivariate5", 2, 3) == 7 * 3 * (2 + 3 + 1)


def test_layer_parameters_rejects_unknown_gate():
    with pytest.raises(ValueError, match="sigmoid"):
        layer_parameters("gru", 4, 4)


def square(hidden: int) -> int:
    return hidden * hidden


@pytest.mark.parametrize(
    "budget,closest,at_most",
    [
        (1, 1, 1),  # exactly count(1)
        (9, 3, 3),  # exactly count(3)
        (10, 3, 3),  # 9 is 1 away, 16 is 6 away
        (13, 4, 3),  # 16 is 3 away, 9 is 4 away
        (12, 3, 3),  # 9 is 3 away, 16 is 4 away
        (99, 10, 9),  # 100 is 1 away, 81 is 18 away
    ],
)
def test_matched_hidden_size_known_answers(budget, closest, at_most):
    assert matched_hidden_size(square, budget, "closest") == closest
    assert matched_hidden_size(square, budget, "at_most") == at_most


def test_closest_takes_the_smaller_size_on_a_tie():
    # budget 5 lies halfway between count(2) = 4 and count(3) = 6
    assert matched_hidden_size(lambda h: 2 * h, 5, "closest") == 2


def test_budget_below_count_of_one():
    count = lambda h: 10 * h  # noqa: E731
    assert matched_hidden_size(count, 3, "closest") == 1  # 1 is still the closest size
    with pytest.raises(ValueError, match=r"budget 3 is below count\(1\) = 10"):
        matched_hidden_size(count, 3, "at_most")


def test_bad_rule_and_non_increasing_count_raise():
    with pytest.raises(ValueError, match=r"unknown rule 'nearest'; expected one of \['closest'"):
        matched_hidden_size(square, 10, "nearest")
    with pytest.raises(ValueError, match="must increase"):
        matched_hidden_size(lambda h: 5, 10, "closest")


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
@pytest.mark.parametrize("rule", ["closest", "at_most"])
def test_matched_size_brackets_the_lstm_budget(gate, rule):
    budget = layer_parameters("sigmoid", 50, 128)
    hidden = matched_hidden_size(lambda h: layer_parameters(gate, 50, h), budget, rule)
    below, above = layer_parameters(gate, 50, hidden), layer_parameters(gate, 50, hidden + 1)
    if rule == "at_most":
        assert below <= budget < above
    else:
        others = (layer_parameters(gate, 50, hidden - 1), above)
        assert all(abs(below - budget) <= abs(c - budget) for c in others)
    if gate in ("sigmoid", "gumbel"):  # the same number of blocks as the LSTM
        assert hidden == 128
