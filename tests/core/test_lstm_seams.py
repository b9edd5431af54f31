"""The public seams of nn: StochasticLSTM.run's layer hook, the gate modes, stack_layers."""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm.nn import (
    GivenBasis,
    LayerCall,
    MeanGates,
    PriorBasis,
    SampledBasis,
    StochasticLSTM,
    stack_layers,
)
from pyro_betalstm.nn.gate_modes import as_gate_mode


def lstm(gate="bivariate", **kw):
    torch.manual_seed(0)
    return StochasticLSTM(3, 4, 3, gate=gate, batch_first=True, **kw)


def test_a_hook_that_runs_each_layer_reproduces_run():
    net, x = lstm().eval(), torch.randn(2, 5, 3)
    plain = net.run(x, gate_mode="mean")
    seen = []

    def hook(call: LayerCall):
        seen.append((call.index, call.layer, call.input()))
        return call.run(MeanGates())

    hooked = net.run(x, layer_hook=hook)
    for a, b in zip(plain, hooked, strict=True):
        torch.testing.assert_close(a.outputs, b.outputs, rtol=0, atol=0)
    assert [k for k, _, _ in seen] == [0, 1, 2]
    assert all(layer is net.layers[k] for k, layer, _ in seen)
    assert seen[0][2] is x  # layer 0 sees the input, layer k the outputs of layer k - 1
    assert seen[1][2] is hooked[0].outputs and seen[2][2] is hooked[1].outputs


def test_the_layer_input_is_formed_once_and_only_when_asked():
    net, x = lstm("sigmoid", dropout=0.5).train(), torch.randn(2, 5, 3)
    kept = net.run(x)
    inputs = []

    def reuse_above_the_first(call: LayerCall):
        if call.index == 0:
            inputs.append((call.input(), call.input()))
            return call.run()
        return kept[call.index]  # a kept run: no dropout mask may be drawn for it

    state = torch.get_rng_state()
    runs = net.run(x, layer_hook=reuse_above_the_first)
    assert torch.equal(torch.get_rng_state(), state)  # sigmoid gates draw nothing either
    assert inputs[0][0] is inputs[0][1] is x
    assert runs[1] is kept[1] and runs[2] is kept[2]
    dropped = []
    net.run(x, layer_hook=lambda call: dropped.append(call.input()) or call.run())
    assert (dropped[1] == 0).any() and not torch.equal(dropped[1], dropped[2])


def test_given_and_prior_modes_take_their_argument():
    net, x = lstm("bivariate5"), torch.randn(2, 5, 3)
    log_u = [torch.randn(2, 5, 4, 5) for _ in range(3)]
    runs = net.run(x, gate_mode="given", log_basis=log_u, record_gates=True)
    assert all(r.log_basis is u for r, u in zip(runs, log_u, strict=True))
    i, f = net.family.algebra.gates(log_u[0])
    torch.testing.assert_close(runs[0].gates[0], i)
    calls = []

    def sampler(t, x_t, h_prev):
        calls.append((t, x_t.shape, h_prev.shape))
        return log_u[0][:, t]

    prior = net.layers[0](x, mode=PriorBasis(sampler), record_gates=True)
    torch.testing.assert_close(prior.gates[1], f)
    torch.testing.assert_close(prior.log_basis, log_u[0])
    assert calls == [(t, (2, 3), (2, 4)) for t in range(5)]
    with pytest.raises(ValueError, match="one tensor per layer"):
        net.run(x, gate_mode="given", log_basis=log_u[:2])


def test_gate_mode_names_and_errors():
    assert isinstance(as_gate_mode("sample"), SampledBasis)
    assert isinstance(as_gate_mode("mean"), MeanGates)
    mode = GivenBasis(torch.zeros(1, 2, 3, 4))
    assert as_gate_mode(mode) is mode
    with pytest.raises(ValueError, match=r"GivenBasis\(log_basis\)"):
        as_gate_mode("given")
    with pytest.raises(ValueError, match=r"PriorBasis\(sampler\)"):
        as_gate_mode("prior")
    with pytest.raises(ValueError, match="unknown gate mode 'bogus'"):
        as_gate_mode("bogus")


def test_stack_layers_puts_the_layer_after_time():
    net, x = lstm("beta"), torch.randn(2, 5, 3)
    runs = net.run(x, record_gates=True)
    arrays = stack_layers(runs)
    assert arrays["input_gate"].shape == arrays["forget_gate"].shape == (2, 5, 3, 4)
    assert arrays["alpha"].shape == arrays["log_basis"].shape == (2, 5, 3, 4, 4)
    assert torch.equal(arrays["forget_gate"][:, :, 1], runs[1].gates[1])
    assert set(stack_layers(net.run(x))) == {"alpha", "log_basis"}  # gates not recorded
    assert set(stack_layers(net.run(x, gate_mode="mean"), ("log_basis", "alpha"))) == {"alpha"}
    sigmoid = lstm("sigmoid").run(x, record_gates=True)
    assert set(stack_layers(sigmoid)) == {"input_gate", "forget_gate"}


# ----- run checks its arguments as forward does (from shapes and dtypes: no host read) --------
@pytest.mark.parametrize(
    "x, message",
    [
        (torch.randn(5, 3), "3-D tensor"),
        (torch.randn(2, 5, 4), "has 4 features per step; this network expects 3"),
        (torch.randn(2, 5, 3, dtype=torch.float64), "has dtype torch.float64"),
        (torch.randn(0, 5, 3), "empty batch: got 0 sequences"),
        (torch.randn(2, 0, 3), "empty batch: got 2 sequences of length 0"),
    ],
)
def test_run_checks_the_input_as_forward_does(x, message):
    net = lstm()
    with pytest.raises(ValueError, match=message):
        net.run(x)
    with pytest.raises(ValueError, match=message):
        net(x)


@pytest.mark.parametrize(
    "mask",
    [
        torch.ones(2, 6, dtype=torch.bool),  # one step too many
        torch.ones(2, dtype=torch.bool),  # (B,): lengths, not a step mask
        torch.ones(2, 5),  # float
        [[True] * 5] * 2,
    ],
)
def test_run_refuses_a_mask_that_is_not_a_bool_batch_by_time_tensor(mask):
    with pytest.raises(ValueError, match=r"mask must be a torch.bool tensor of shape .* \(2, 5\)"):
        lstm().run(torch.randn(2, 5, 3), mask)


def test_run_checks_the_initial_state():
    net, x = lstm(), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"h_0 must have shape .* = \(3, 2, 4\)"):
        net.run(x, hx=(torch.zeros(3, 2, 5), torch.zeros(3, 2, 4)))


@pytest.mark.parametrize("shape", [(2, 7, 4, 3), (2, 4, 4, 3), (3, 5, 4, 3), (2, 5, 5, 3)])
def test_given_basis_must_be_exactly_batch_time_hidden_basis(shape):
    """A basis with extra steps used to be cut silently, one with too few an IndexError."""
    net, x = lstm(), torch.randn(2, 5, 3)
    log_u = [torch.zeros(2, 5, 4, 3) for _ in range(3)]
    log_u[1] = torch.zeros(shape)
    with pytest.raises(ValueError, match=r"log_basis\[1\] must have shape .* = \(2, 5, 4, 3\)"):
        net.run(x, gate_mode="given", log_basis=log_u)


def test_run_prepared_is_run_without_the_input_checks():
    """forward and the models check their input once, then call run_prepared."""
    net = lstm().eval()
    x, mask = torch.randn(2, 5, 3), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    runs = net.run(x, mask, gate_mode="mean"), net.run_prepared(x, mask, gate_mode="mean")
    for given, prepared in zip(*runs, strict=True):
        torch.testing.assert_close(prepared.outputs, given.outputs)
