"""The ``sigmoid`` family with ``torch.nn.LSTM``'s weights is ``torch.nn.LSTM`` (float32, 1e-5).

Also checks the other families' gate formulas and the multi-layer recurrence against the
hand-written reference in :mod:`.reference`.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from pyro_betalstm.nn import StochasticLSTM

from . import reference as ref
from .helpers import make_batch, make_model

# float32 sums of up to ~30 products in a different order: agreement to ~1e-6 is expected;
# 1e-5 leaves an order of magnitude of slack.
ATOL = 1e-5


def _pair(num_layers=2, batch_first=True, input_size=3, hidden_size=5, seed=0):
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(input_size, hidden_size, num_layers, batch_first=batch_first)
    ours = StochasticLSTM(
        input_size, hidden_size, num_layers, gate="sigmoid", batch_first=batch_first
    ).load_torch_lstm(lstm)
    return lstm, ours


def _inputs(batch_first, B=4, T=7, D=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    return x if batch_first else x.transpose(0, 1).contiguous()


@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch_first", [True, False])
def test_full_length_matches_torch(num_layers, batch_first):
    lstm, ours = _pair(num_layers, batch_first)
    x = _inputs(batch_first)
    out_t, (h_t, c_t) = lstm(x)
    out, (h, c) = ours(x)
    assert out.shape == out_t.shape and h.shape == h_t.shape and c.shape == c_t.shape
    torch.testing.assert_close(out, out_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(h, h_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, c_t, atol=ATOL, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_initial_state_matches_torch(batch_first):
    lstm, ours = _pair(2, batch_first)
    x = _inputs(batch_first)
    g = torch.Generator().manual_seed(5)
    hx = (torch.randn(2, 4, 5, generator=g), torch.randn(2, 4, 5, generator=g))
    out_t, (h_t, c_t) = lstm(x, hx)
    out, (h, c) = ours(x, hx)
    torch.testing.assert_close(out, out_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(h, h_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, c_t, atol=ATOL, rtol=0)


LENGTHS = torch.tensor([7, 2, 5, 1])  # unsorted, with a full and a length-1 sequence


@pytest.mark.parametrize("batch_first", [True, False])
def test_lengths_match_packed_torch(batch_first):
    lstm, ours = _pair(2, batch_first)
    x = _inputs(batch_first)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    out_t, (h_t, c_t) = lstm(packed)
    out_t, _ = pad_packed_sequence(out_t, batch_first=batch_first, total_length=7)
    out, (h, c) = ours(x, lengths=LENGTHS)
    torch.testing.assert_close(out, out_t, atol=ATOL, rtol=0)  # zeros at padded steps
    torch.testing.assert_close(h, h_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, c_t, atol=ATOL, rtol=0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_sequence_in_and_out(batch_first):
    lstm, ours = _pair(2, batch_first)
    x = _inputs(batch_first)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    out_t, (h_t, c_t) = lstm(packed)
    out, (h, c) = ours(packed)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    torch.testing.assert_close(out.batch_sizes, out_t.batch_sizes)
    torch.testing.assert_close(out.unsorted_indices, out_t.unsorted_indices)
    torch.testing.assert_close(out.data, out_t.data, atol=ATOL, rtol=0)
    torch.testing.assert_close(h, h_t, atol=ATOL, rtol=0)
    torch.testing.assert_close(c, c_t, atol=ATOL, rtol=0)


@pytest.mark.parametrize("packed", [False, True])
def test_gradients_match_torch(packed):
    lstm, ours = _pair(2, batch_first=True)
    x = _inputs(True)
    x_t, x_o = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = torch.randn(4, 7, 5, generator=torch.Generator().manual_seed(9))
    if packed:
        out_t, (h_t, c_t) = lstm(pack_padded_sequence(x_t, LENGTHS, True, enforce_sorted=False))
        out_t = pad_packed_sequence(out_t, batch_first=True, total_length=7)[0]
        out, (h, c) = ours(x_o, lengths=LENGTHS)
    else:
        out_t, (h_t, c_t) = lstm(x_t)
        out, (h, c) = ours(x_o)
    ((out_t * w).sum() + h_t.sum() + (c_t**2).sum()).backward()
    ((out * w).sum() + h.sum() + (c**2).sum()).backward()
    torch.testing.assert_close(x_o.grad, x_t.grad, atol=ATOL, rtol=0)
    for k, layer in enumerate(ours.layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
        torch.testing.assert_close(layer.input_proj.weight.grad, w_ih.grad, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.hidden_proj.weight.grad, w_hh.grad, atol=ATOL, rtol=0)
        # our single bias is torch's bias_ih + bias_hh: both have the same gradient
        for name in ("bias_ih", "bias_hh"):
            torch.testing.assert_close(
                layer.input_proj.bias.grad, getattr(lstm, f"{name}_l{k}").grad, atol=ATOL, rtol=0
            )


def test_block_order_is_torch_order():
    """Pre-activation blocks are [i, f, g, o] for sigmoid: torch.nn.LSTM's layout."""
    _, ours = _pair(1)
    layer = ours.layers[0]
    assert layer.input_proj.weight.shape == (4 * 5, 3)
    assert layer.hidden_proj.weight.shape == (4 * 5, 5)
    assert layer.hidden_proj.bias is None


def test_load_torch_lstm_rejects_other_families_and_sizes():
    lstm = torch.nn.LSTM(3, 5, 2)
    with pytest.raises(ValueError, match="only the 'sigmoid' family"):
        StochasticLSTM(3, 5, 2, gate="bivariate").load_torch_lstm(lstm)
    with pytest.raises(ValueError, match="same sizes"):
        StochasticLSTM(3, 6, 2, gate="sigmoid").load_torch_lstm(lstm)
    with pytest.raises(ValueError, match="same sizes"):
        StochasticLSTM(3, 5, 2, gate="sigmoid").load_torch_lstm(
            torch.nn.LSTM(3, 5, 2, bidirectional=True)
        )


def test_load_torch_lstm_refuses_a_different_bias_setting():
    """torch.nn.LSTM(bias=False) gave an AttributeError; bias=True into bias=False dropped the
    biases without a word."""
    without, with_bias = torch.nn.LSTM(3, 5, 2, bias=False), torch.nn.LSTM(3, 5, 2)
    with pytest.raises(ValueError, match="has bias=False, this StochasticLSTM bias=True"):
        StochasticLSTM(3, 5, 2, gate="sigmoid").load_torch_lstm(without)
    with pytest.raises(ValueError, match="has bias=True, this StochasticLSTM bias=False"):
        StochasticLSTM(3, 5, 2, gate="sigmoid", bias=False).load_torch_lstm(with_bias)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, 2, bias=False, batch_first=True)
    ours = StochasticLSTM(3, 5, 2, gate="sigmoid", bias=False, batch_first=True)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(ours.load_torch_lstm(lstm)(x)[0], lstm(x)[0])


# ----- every family against the hand-written recurrence (float64) ---------------------------------
@pytest.mark.parametrize("gate", [n for n in ref.NUM_GATE_BLOCKS if not ref.training_noise(n)])
@pytest.mark.parametrize("gate_mode", ["sample", "mean"])
def test_families_match_reference_recurrence(float64, gate, gate_mode):
    """Outputs, h_n, c_n of 2 layers with padding equal the reference recurrence to 1e-12."""
    m = make_model(gate=gate, hidden_size=4, num_layers=2)
    batch = make_batch(lengths=(5, 3, 4))
    torch.manual_seed(3)
    out, (h, c) = m.lstm(batch.inputs, lengths=batch.lengths, gate_mode=gate_mode)
    torch.manual_seed(3)
    runs = ref.run_network(m, batch, mode=gate_mode)
    torch.testing.assert_close(out, runs[-1].outputs, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(h, torch.stack([r.h_n for r in runs]), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c, torch.stack([r.c_n for r in runs]), atol=1e-12, rtol=1e-12)


def test_gumbel_is_sigmoid_in_eval_and_noisy_in_training(float64):
    m = make_model(gate="gumbel", num_layers=1)
    batch = make_batch(lengths=None)
    m.lstm.eval()
    out_eval, _ = m.lstm(batch.inputs)
    runs = ref.run_network(m, batch, mode="mean")  # reference: plain sigmoid gates
    torch.testing.assert_close(out_eval, runs[-1].outputs, atol=1e-12, rtol=1e-12)
    m.lstm.train()
    torch.manual_seed(0)
    out_a, _ = m.lstm(batch.inputs)
    out_b, _ = m.lstm(batch.inputs)
    assert not torch.allclose(out_a, out_b)  # the noise is redrawn
    assert not torch.allclose(out_a, out_eval)


def test_latent_gates_lie_in_unit_interval_and_mean_mode_is_default_in_eval():
    m = make_model(gate="bivariate5", num_layers=2)
    batch = make_batch(lengths=None)
    m.lstm.eval()
    a, _ = m.lstm(batch.inputs)
    b, _ = m.lstm(batch.inputs)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # mean gates: deterministic
    m.lstm.train()
    c, _ = m.lstm(batch.inputs)
    assert not torch.allclose(a, c)
    runs = m.lstm.run(batch.inputs, record_gates=True)
    for r in runs:
        for g in r.gates:
            assert torch.all((g >= 0) & (g <= 1))
