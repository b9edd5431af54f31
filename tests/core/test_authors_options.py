"""The options Song et al.'s music training needs: locked dropout on every layer's output,
training gates from ``u + offset``, and the two ablation gate families."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import softplus

from pyro_betalstm.gates import get_gate_family
from pyro_betalstm.infer import gate_kl_summary
from pyro_betalstm.nn import StochasticLSTM

from .helpers import make_dataset, make_model


def lstm(gate="bivariate5", **kw):
    torch.manual_seed(0)
    return StochasticLSTM(3, 6, 2, gate=gate, batch_first=True, **kw)


def test_locked_dropout_keeps_one_mask_per_sequence_over_time():
    net = lstm(dropout=0.5, locked_dropout=True).train()
    x = torch.ones(4, 50, 6)
    dropped = net._drop(x)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # constant over time
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept units are scaled by 1 / (1 - p)
    other = lstm(dropout=0.5).train()._drop(x)  # per element: varies over time
    assert not torch.equal(other, other[:, :1].expand_as(other))


def test_output_dropout_applies_to_the_last_layer_in_training_only():
    x = torch.randn(2, 7, 3)
    net = lstm("sigmoid", dropout=0.5, locked_dropout=True, output_dropout=True).train()
    torch.manual_seed(1)
    out, _ = net(x)
    zero_units = (out == 0).all(dim=1)  # (B, H): a dropped unit is zero at every step
    assert zero_units.any() and ((out == 0) == zero_units[:, None, :]).all()
    net.eval()
    out_eval, _ = net(x)
    assert not (out_eval == 0).any()
    plain = lstm("sigmoid", dropout=0.5).train()
    run = plain.run(x)[-1]
    assert plain.top_output(run) is run.outputs  # no output dropout unless asked


def test_basis_offset_changes_the_drawn_gates_only():
    x = torch.randn(2, 5, 3)
    plain, offset = lstm(), lstm(basis_offset=1e-3)
    log_u = torch.randn(2, 5, 6, 5) * 3 - 4  # many small draws, where the offset matters
    runs = [
        net.run(x, gate_mode="given", log_basis=[log_u, log_u], record_gates=True)[0]
        for net in (plain, offset)
    ]
    fam = get_gate_family("bivariate5")
    expected = fam.algebra.gates(torch.log(log_u.exp() + 1e-3))
    torch.testing.assert_close(runs[1].gates[0], expected[0])
    torch.testing.assert_close(runs[1].gates[1], expected[1])
    assert not torch.allclose(runs[0].gates[0], runs[1].gates[0])
    assert runs[1].log_basis is log_u  # the latent variable stays log u
    means = [net.run(x, gate_mode="mean", record_gates=True)[0].gates[0] for net in (plain, offset)]
    torch.testing.assert_close(means[0], means[1])  # the mean gates do not see the offset


def test_constant_gates_run_the_half_gate_recurrence():
    net = lstm("constant", dropout=0.0).eval()
    layer = net.layers[0]
    x = torch.randn(1, 4, 3)
    z = layer.input_proj(x)  # blocks [g, o]: no gate pre-activations
    assert z.shape[-1] == 2 * 6
    h, c, outputs = torch.zeros(6), torch.zeros(6), []
    for t in range(4):
        zt = z[0, t] + layer.hidden_proj(h)
        g, o = zt[:6], zt[6:]
        c = 0.5 * c + 0.5 * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    run = net.run(x, gate_mode="mean")[0]
    torch.testing.assert_close(run.outputs[0], torch.stack(outputs))


def test_prior_noise_gates_are_gamma_half_draws_in_training_and_half_at_evaluation():
    fam = get_gate_family("prior_noise")
    assert not fam.is_latent and fam.num_gate_preactivations == 0
    z = torch.zeros(20_000, 0, 8)
    torch.manual_seed(0)
    i, f = fam.gates_from_preactivations(z, training=True)
    # Arnold–Ng with five Gamma(0.5) bases: marginals Beta(1, 1), so mean 1/2, variance 1/12;
    # 160,000 draws: the standard error of the mean is 7e-4, of the variance 2e-4 (tolerance
    # 5 standard errors)
    assert i.shape == (20_000, 8) and 0 < float(i.min()) and float(i.max()) < 1
    assert float(i.mean()) == pytest.approx(0.5, abs=4e-3)
    assert float(f.var()) == pytest.approx(1 / 12, abs=1.2e-3)
    assert float(torch.corrcoef(torch.stack([i.flatten(), f.flatten()]))[0, 1]) < -0.1
    i_eval, f_eval = fam.gates_from_preactivations(z, training=False)
    assert (i_eval == 0.5).all() and (f_eval == 0.5).all()


def test_gate_kl_summary_is_zero_for_a_guide_at_the_prior():
    model = make_model("next", "bivariate5", input_size=3, num_outputs=3).eval()
    with torch.no_grad():
        for layer in model.lstm.layers:  # alpha = softplus(b) + 1e-3 = 0.5 at every step
            layer.hidden_proj.weight.zero_()
            layer.input_proj.weight.zero_()
            layer.input_proj.bias.fill_(float(torch.log(torch.expm1(torch.tensor(0.499)))))
    data = make_dataset(6, head="next", input_size=3, num_outputs=3)
    summary = gate_kl_summary(model, data)
    assert summary["kl_per_gate"] == pytest.approx(0.0, abs=1e-6)
    assert summary["alpha_p01"] == pytest.approx(0.5, abs=1e-6)
    assert summary["mean_input_gate"] == pytest.approx(0.5, abs=1e-6)
    with torch.no_grad():  # away from the prior the KL is positive
        model.lstm.layers[0].input_proj.bias.fill_(float(softplus(torch.tensor(3.0))))
    assert gate_kl_summary(model, data)["kl_per_gate"] > 0.1
    with pytest.raises(ValueError, match="no latent gates"):
        gate_kl_summary(make_model("next", "sigmoid"), data)
