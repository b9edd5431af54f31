"""GateGradientProbe: |dL/dz| through the gates against hand-computed derivatives."""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm.infer import GateMeanFieldELBO
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.nn.gradient_probe import GateGradientProbe

from .helpers import make_batch, make_model


def test_one_step_sigmoid_known_answer(float64):
    """T = 1, h0 = c0 = 0, L = sum h_1: dL/dz_i = s(o)(1 - tanh^2 c) tanh(g) s'(z_i), dL/dz_f = 0."""
    torch.manual_seed(0)
    lstm = StochasticLSTM(3, 4, 1, gate="sigmoid", batch_first=True)
    x = torch.randn(2, 1, 3)
    with GateGradientProbe(lstm) as probe:
        lstm.run(x)[-1].outputs.sum().backward()
    layer = lstm.layers[0]
    z = layer.input_proj(x[:, 0]).detach().view(2, 4, 4)  # blocks [i, f, g, o]
    i, g, o = torch.sigmoid(z[:, 0]), torch.tanh(z[:, 2]), torch.sigmoid(z[:, 3])
    c = i * g
    d_i = o * (1 - torch.tanh(c) ** 2) * g
    d_zi = d_i * i * (1 - i)
    expected_pre = d_zi.abs().sum() / (2 * 2 * 4)  # the f pre-activations get exactly zero
    expected_gate = d_i.abs().sum() / (2 * 2 * 4)  # dL/df = 0 too (c0 = 0)
    s = probe.summary()["layer0"]
    assert s["pre_mean_abs"] == pytest.approx(float(expected_pre), rel=1e-10)
    assert s["gate_mean_abs"] == pytest.approx(float(expected_gate), rel=1e-10)
    assert s["pre_fraction_below_1e-8"] == pytest.approx(0.5)  # the f half is exactly zero
    assert lstm.layers[0].gate_probe is None  # detached on exit


def test_sigmoid_gradient_ratio_is_at_most_a_quarter():
    """|dL/dz| = |dL/dgate| s'(z) with s' <= 1/4, so the mean ratio cannot exceed 1/4."""
    torch.manual_seed(1)
    lstm = StochasticLSTM(3, 8, 2, gate="sigmoid", batch_first=True)
    with GateGradientProbe(lstm) as probe:
        (lstm.run(torch.randn(4, 7, 3))[-1].outputs ** 2).sum().backward()
    for stats in probe.summary().values():
        assert 0 < stats["pre_per_gate_ratio"] <= 0.25


def test_padded_steps_are_not_counted_and_per_step_means():
    torch.manual_seed(2)
    lstm = StochasticLSTM(3, 4, 1, gate="bivariate5", batch_first=True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with GateGradientProbe(lstm) as probe:
        lstm.run(torch.randn(2, 5, 3), mask)[-1].outputs.sum().backward()
    valid_steps = int(mask.sum())
    assert probe.samples(0).numel() == 0  # sample_fraction 0 keeps none
    assert probe.summary()["layer0"]["elements"] == valid_steps * 5 * 4  # K = 5 basis, H = 4
    per_step = probe.per_step(0)
    assert per_step.shape == (5,) and torch.isfinite(per_step).all() and (per_step > 0).all()


def test_records_through_svi_and_not_under_no_grad():
    """The probe sees the gradient of a real ELBO (the guide's run) and nothing in evaluation."""
    model = make_model("classifier", "bivariate", num_layers=2, kl_weight=0.0)
    batch = make_batch("classifier")
    with GateGradientProbe(model.lstm) as probe:
        with torch.no_grad():
            model.run_network(batch, gate_mode="sample")
        assert all(float(s.count.sum()) == 0 for s in probe.layers)
        GateMeanFieldELBO().differentiable_loss(model.model, model.guide, batch).backward()
    for stats in probe.summary().values():
        assert stats["pre_mean_abs"] > 0 and stats["gate_mean_abs"] > 0
    probe.reset()
    assert all(float(s.count.sum()) == 0 for s in probe.layers)


def test_kept_samples_are_a_share_of_the_valid_values():
    torch.manual_seed(3)
    lstm = StochasticLSTM(3, 6, 1, gate="sigmoid", batch_first=True)
    with GateGradientProbe(lstm, sample_fraction=1.0) as probe:
        (lstm.run(torch.randn(3, 4, 3))[-1].outputs ** 2).sum().backward()
    values = probe.samples(0)
    assert values.numel() == probe.summary()["layer0"]["elements"] == 3 * 4 * 2 * 6
    assert float(values.mean()) == pytest.approx(probe.summary()["layer0"]["pre_mean_abs"])
    with pytest.raises(ValueError, match="sample_fraction"):
        GateGradientProbe(lstm, sample_fraction=1.5)


def test_refuses_a_second_probe_and_a_non_lstm():
    lstm = StochasticLSTM(3, 4, 1, batch_first=True)
    with GateGradientProbe(lstm):
        with pytest.raises(RuntimeError, match="already has a gate probe"):
            GateGradientProbe(lstm).__enter__()
    with pytest.raises(TypeError, match="StochasticLSTM"):
        GateGradientProbe(torch.nn.LSTM(3, 4))


def test_a_refused_probe_attaches_nothing_and_leaves_others_in_place():
    lstm = StochasticLSTM(3, 4, 2, batch_first=True)

    def others(*args):
        return None

    lstm.layers[1].gate_probe = others  # someone else's probe on the second layer
    with pytest.raises(RuntimeError, match="layer 1 already has a gate probe"):
        GateGradientProbe(lstm).__enter__()
    assert lstm.layers[0].gate_probe is None and lstm.layers[1].gate_probe is others
    # a probe leaves alone what replaced its own hook while it was attached
    lstm.layers[1].gate_probe = None
    with GateGradientProbe(lstm):
        lstm.layers[0].gate_probe = others
    assert lstm.layers[0].gate_probe is others and lstm.layers[1].gate_probe is None
