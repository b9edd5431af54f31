"""The compiled step (pyro_betalstm.nn.step, compile_cell=True) against the eager loop.

torch.compile fuses each step's elementwise work; the draws stay eager, so with the same seed
the compiled layer computes the eager layer's function on the same draws, up to the rounding
of fused float64 arithmetic (tolerance 1e-10 relative). Compiling takes tens of seconds on a
CPU (and a C++ compiler), so these tests are marked slow.
"""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.nn.step import StepFunctions


def test_eager_step_functions_are_the_plain_functions():
    from pyro_betalstm.gates import get_gate_family

    step = StepFunctions(get_gate_family("bivariate"), 0.0, compiled=False)
    assert not step.compiled and step.from_basis == step._from_basis
    lstm = StochasticLSTM(3, 4, 2, gate="sigmoid", compile_cell=False)
    assert not any(layer.compile_cell for layer in lstm.layers)
    lstm.set_recurrence("eager", compile_cell=True)
    assert all(layer.compile_cell for layer in lstm.layers) and "compile_cell=True" in repr(lstm)


def _run(gate, compiled, training, x, mask):
    torch.manual_seed(0)
    lstm = StochasticLSTM(3, 4, 2, gate=gate, batch_first=True, basis_offset=1e-3).double()
    lstm.set_recurrence("eager", compile_cell=compiled)
    lstm.train(training)
    torch.manual_seed(1)
    runs = lstm.run(x, mask, gate_mode="sample" if training else "mean", record_gates=True)
    loss = sum((r.outputs**2).sum() + r.c_n.sum() for r in runs)
    return runs, torch.autograd.grad(loss, list(lstm.parameters()) + [x])


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("gate", "training"),
    [("bivariate5", True), ("bivariate5", False), ("sigmoid", True), ("gumbel", True)],
)
def test_compiled_step_equals_the_eager_loop(gate, training):
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    (eager_runs, eager_grads), (runs, grads) = (
        _run(gate, compiled, training, x, mask) for compiled in (False, True)
    )
    for r, e in zip(runs, eager_runs, strict=True):
        torch.testing.assert_close(r.outputs, e.outputs, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(r.gates, e.gates, rtol=1e-10, atol=1e-12)
        if e.log_basis is not None:  # the same draws (from concentrations equal to rounding)
            torch.testing.assert_close(r.log_basis, e.log_basis, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads, eager_grads, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compiled_step_inside_the_graph_path_equals_the_eager_loop():
    # the combination a GPU runs (graphs of the compiled step), with the CPU stand-in for the
    # capture: the compiled functions are called inside the graph's autograd function
    from pyro_betalstm.testing.capture import StaticBufferStandIn

    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for recurrence, compiled in (("eager", False), ("auto", True)):
        torch.manual_seed(0)
        lstm = StochasticLSTM(3, 4, 2, gate="bivariate5", batch_first=True).double()
        lstm.set_recurrence(recurrence, compile_cell=compiled)
        for layer in lstm.layers:
            if layer.graphs is not None:
                layer.graphs.capture = StaticBufferStandIn
        torch.manual_seed(1)
        runs = lstm.train().run(x)
        loss = sum((r.outputs**2).sum() for r in runs)
        results.append((runs[-1].outputs, torch.autograd.grad(loss, list(lstm.parameters()))))
        if recurrence == "auto":
            assert lstm.layers[0].graphs.stats.replays == 1
    torch.testing.assert_close(results[1], results[0], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_many_batch_sizes_do_not_exhaust_the_recompile_limit():
    # dynamic=False compiled each function once per shape, and with fullgraph=True the ninth
    # shape (process-wide, per function) raised FailOnRecompileLimitHit: a fit's last odd
    # minibatch plus evaluation sizes reach that. 12 batch sizes must run and equal the eager loop.
    torch.manual_seed(0)
    compiled = StochasticLSTM(3, 4, 1, gate="bivariate", batch_first=True).double()
    eager = StochasticLSTM(3, 4, 1, gate="bivariate", batch_first=True).double()
    eager.load_state_dict(compiled.state_dict())
    compiled.set_recurrence("eager", compile_cell=True)
    for batch in range(1, 13):
        x = torch.randn(batch, 4, 3, dtype=torch.float64)
        outputs = [lstm.eval().run(x, gate_mode="mean")[-1].outputs for lstm in (compiled, eager)]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-12)
