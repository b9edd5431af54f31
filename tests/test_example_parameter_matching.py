"""The examples' parameter-matched hidden sizes are the ones they gave before the search moved
into :func:`pyro_betalstm.nn.matched_hidden_size` (copies of the old formulas below); the
examples take them from :mod:`pyro_betalstm.experiment.text` and ``.captions``."""

from __future__ import annotations

import pytest

from pyro_betalstm.experiment import captions as captioning
from pyro_betalstm.experiment import text as sentence
from pyro_betalstm.gates import GATE_FAMILIES, get_gate_family
from pyro_betalstm.nn import layer_parameters


def old_lstm_parameters(gate: str, input_size: int, hidden: int) -> int:
    blocks = get_gate_family(gate).num_gate_preactivations + 2
    return blocks * hidden * (input_size + hidden + 1)


def old_sentence_matched_hidden(gate: str, input_size: int, lstm_hidden: int) -> int:
    target = old_lstm_parameters("sigmoid", input_size, lstm_hidden)
    hidden = 1
    while old_lstm_parameters(gate, input_size, hidden + 1) <= target:
        hidden += 1
    if abs(old_lstm_parameters(gate, input_size, hidden + 1) - target) < abs(
        old_lstm_parameters(gate, input_size, hidden) - target
    ):
        hidden += 1
    return hidden


def old_decoder_parameters(gate: str, hidden: int, embed: int, vocab: int, layers: int) -> int:
    blocks = get_gate_family(gate).num_gate_preactivations + 2
    total = 0
    for k in range(layers):
        inputs = embed if k == 0 else hidden
        total += (inputs + hidden + 1) * blocks * hidden
    return total + hidden * vocab + vocab


def old_captioning_matched_hidden(gate: str, reference: int, embed: int, vocab: int, layers: int):
    budget = old_decoder_parameters("sigmoid", reference, embed, vocab, layers)
    hidden = 1
    while old_decoder_parameters(gate, hidden + 1, embed, vocab, layers) <= budget:
        hidden += 1
    return hidden


REFERENCES = (8, 16, 64, 128, 256)  # 8 and 16: the smoke runs' sizes


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
def test_sentence_classification_sizes_unchanged(gate):
    example = sentence
    for input_size in (16, 50, 300):
        for reference in REFERENCES:
            assert example.matched_hidden(gate, input_size, reference) == (
                old_sentence_matched_hidden(gate, input_size, reference)
            ), (gate, input_size, reference)


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
def test_image_captioning_sizes_and_counts_unchanged(gate):
    example = captioning
    for embed, vocab, layers in ((64, 30, 1), (16, 30, 1), (64, 100, 2), (16, 17, 3)):
        for reference in REFERENCES:
            assert example.matched_hidden(gate, reference, embed, vocab, layers) == (
                old_captioning_matched_hidden(gate, reference, embed, vocab, layers)
            ), (gate, reference, embed, vocab, layers)
            assert example.decoder_parameters(gate, reference, embed, vocab, layers) == (
                old_decoder_parameters(gate, reference, embed, vocab, layers)
            )


def test_published_sizes():
    # docs/results/sentence_classification.md, reduced protocol: GloVe 50d, LSTM hidden 64
    published = {"sigmoid": (64, 29440), "gumbel": (64, 29440), "beta": (49, 29400)}
    published.update(bivariate=(55, 29150), bivariate5=(44, 29260))
    for gate, (hidden, recurrent) in published.items():
        assert sentence.matched_hidden(gate, 50, 64) == hidden
        assert layer_parameters(gate, 50, hidden) == recurrent
    # docs/results/image_captioning.md: embed 64, 30 words, one layer; 144,350 - 143,796 = 554
    assert captioning.matched_hidden("bivariate5", 128, 64, 30, 1) == 91
    assert captioning.matched_hidden("sigmoid", 128, 64, 30, 1) == 128
    lstm, matched = (
        captioning.decoder_parameters(g, h, 64, 30, 1)
        for g, h in (("sigmoid", 128), ("bivariate5", 91))
    )
    assert lstm - matched == 554
