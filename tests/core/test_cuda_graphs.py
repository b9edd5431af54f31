"""CUDA graphs of the recurrence (pyro_betalstm.nn.cuda_graphs).

On the CPU the capture is replaced by StaticBufferStandIn (pyro_betalstm.testing.capture),
which keeps a graph's static-buffer rule, so that everything around the capture is tested here:
signatures, padding to length buckets, the pending-backward guard, stale parameters, eviction,
the SVI integration. The tests marked gpu capture real graphs (skipped without CUDA).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import GateMeanFieldELBO, TrainConfig, evaluate_nll, fit
from pyro_betalstm.io import safe_torch_load
from pyro_betalstm.models import NextStepBernoulli
from pyro_betalstm.nn import PriorBasis, StochasticLSTM, set_recurrence
from pyro_betalstm.nn.cuda_graphs import EXACT_LENGTHS, CapturedRecurrence, bucket_length
from pyro_betalstm.testing.capture import StaticBufferStandIn


def _lstm(gate="bivariate5", recurrence="auto", layers=2, dtype=torch.float64, device="cpu"):
    torch.manual_seed(0)
    lstm = StochasticLSTM(3, 4, layers, gate=gate, batch_first=True, recurrence=recurrence)
    lstm = lstm.to(dtype=dtype, device=device)
    if device == "cpu":
        _use_stand_in(lstm)
    return lstm


def _use_stand_in(module):
    for layer in module.modules():
        if getattr(layer, "graphs", None) is not None:
            layer.graphs.capture = StaticBufferStandIn


def _given_run(lstm, x, mask, basis):
    runs = lstm.train().run(x, mask, gate_mode="given", log_basis=basis)
    loss = sum((r.outputs**2).sum() + r.c_n.sum() + r.alpha.sum() for r in runs)
    return runs, torch.autograd.grad(loss, list(lstm.parameters()) + [x])


def _basis(x, layers=2, hidden=4, k=5):
    g = torch.Generator().manual_seed(1)
    B, T, _ = x.shape
    return [
        torch.randn(B, T, hidden, k, generator=g, dtype=x.dtype).to(x.device) for _ in range(layers)
    ]


def test_bucket_length_pads_at_most_an_eighth():
    assert [bucket_length(n) for n in (1, 7, 16, 17, 19, 31, 100, 784)] == [
        1, 7, 16, 18, 20, 32, 104, 832
    ]  # fmt: skip
    for n in range(1, 3000):
        b = bucket_length(n)
        assert n <= b <= n + n / 8 and bucket_length(b) == b
    with pytest.raises(ValueError, match="positive"):
        bucket_length(0)


def test_recurrence_names_are_checked():
    with pytest.raises(ValueError, match="unknown recurrence 'graphs'"):
        StochasticLSTM(3, 4, recurrence="graphs")
    with pytest.raises(ValueError, match="unknown recurrence"):
        TrainConfig(recurrence="fast").check()
    lstm = StochasticLSTM(3, 4, 2)  # the default: graphs for CUDA inputs, the loop otherwise
    assert lstm.recurrence == "auto" and all(layer.graphs is not None for layer in lstm.layers)
    assert "recurrence" not in repr(lstm)
    set_recurrence(lstm, "eager")
    assert all(layer.graphs is None for layer in lstm.layers)
    assert "recurrence='eager'" in repr(lstm)
    set_recurrence(lstm, "cuda_graph")
    assert lstm.recurrence == "cuda_graph" and "recurrence='cuda_graph'" in repr(lstm)


def test_auto_runs_the_loop_on_the_cpu_and_cuda_graph_refuses():
    lstm = StochasticLSTM(3, 4, 2, batch_first=True, recurrence="auto")
    x = torch.randn(2, 5, 3)
    torch.manual_seed(0)
    out_auto, _ = lstm(x)
    lstm.set_recurrence("eager")
    torch.manual_seed(0)
    out_eager, _ = lstm(x)
    assert torch.equal(out_auto, out_eager)
    lstm.set_recurrence("auto")
    lstm(x)
    assert lstm.layers[0].graphs.stats.eager == {"not cuda": 1}
    lstm.set_recurrence("cuda_graph")
    with pytest.raises(ValueError, match="needs CUDA inputs, got cpu"):
        lstm(x)


class _CaptureFails(StaticBufferStandIn):
    """A capture that fails as make_graphed_callables can: an AssertionError, not a
    RuntimeError (or torch.compile's FailOnRecompileLimitHit inside a compiled step)."""

    def __init__(self, scan, args):
        raise AssertionError("stand-in capture failure")


def test_a_failed_capture_falls_back_to_the_eager_loop_or_is_named():
    # "auto": one warning, then the layer's eager loop, with the eager loop's numbers; a
    # failure of any kind (an AssertionError here) must not escape as a crash of training
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    lstm, ref = _lstm(gate="bivariate"), _lstm(gate="bivariate", recurrence="eager")
    for layer in lstm.layers:
        layer.graphs.capture = _CaptureFails
    with pytest.warns(RuntimeWarning, match="capture of the recurrence failed"):
        torch.manual_seed(3)
        out, _ = lstm(x)
    torch.manual_seed(3)
    expected, _ = ref(x)
    assert torch.equal(out, expected)
    assert lstm.layers[0].graphs.stats.eager["capture failed"] == 1
    # "cuda_graph" requires the graphs: the failure is named, as a RuntimeError
    lstm.set_recurrence("cuda_graph")
    for layer in lstm.layers:
        layer.graphs.capture = _CaptureFails
    with pytest.raises(RuntimeError, match="capturing a CUDA graph.*stand-in capture failure"):
        lstm(x)


def test_autocast_is_part_of_the_signature():
    # a graph replays its capture's kernels: one captured without autocast must not serve a
    # call under autocast (its matrix products would not be in bfloat16 as the eager loop's
    # are). The CPU stand-in runs the loop at each call, so only the new capture is checked.
    lstm = _lstm(gate="bivariate", dtype=torch.float32)
    ref = _lstm(gate="bivariate", recurrence="eager", dtype=torch.float32)
    x = torch.randn(2, 5, 3)
    lstm.eval().run(x, gate_mode="mean")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lstm.eval().run(x, gate_mode="mean")[-1].outputs
        expected = ref.eval().run(x, gate_mode="mean")[-1].outputs
    assert lstm.layers[0].graphs.stats.captures == 2
    assert torch.equal(out, expected)


def test_padded_lengths_give_the_exact_valid_steps_and_gradients():
    # after EXACT_LENGTHS distinct lengths a new one is padded to its bucket (19 -> 20): the
    # valid steps, final states and gradients must equal the eager loop's (given basis)
    lstm, ref = _lstm(), _lstm(recurrence="eager")
    for n in range(1, EXACT_LENGTHS + 1):
        lstm.run(torch.randn(2, n, 3, dtype=torch.float64), gate_mode="mean")
    x = torch.randn(2, 19, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 19, dtype=torch.bool)
    mask[1, 11:] = False
    basis = _basis(x)
    for m in (None, mask):
        runs, grads = _given_run(lstm, x, m, basis)
        ref_runs, ref_grads = _given_run(ref, x, m, basis)
        for r, e in zip(runs, ref_runs, strict=True):
            assert r.outputs.shape == (2, 19, 4) and r.log_basis is not None
            for name in ("outputs", "h_n", "c_n", "alpha"):
                torch.testing.assert_close(getattr(r, name), getattr(e, name))
        torch.testing.assert_close(grads, ref_grads)
    lengths = {sig.length for sig in lstm.layers[0].graphs._graphs}
    assert 20 in lengths and 19 not in lengths


def test_second_call_before_backward_runs_eagerly_and_keeps_gradients_right(monkeypatch):
    # A graph's backward uses the activations of its signature's last forward: a second
    # forward before the first backward must not replay the graph (the stand-in models that)
    x1, x2 = (torch.randn(2, 4, 3, dtype=torch.float64) for _ in range(2))

    def two_calls_then_backward(lstm):
        losses = [(lstm.run(x, gate_mode="mean")[-1].outputs ** 2).sum() for x in (x1, x2)]
        return torch.autograd.grad(losses[0], list(lstm.parameters()))

    reference = two_calls_then_backward(_lstm(recurrence="eager"))
    lstm = _lstm()
    torch.testing.assert_close(two_calls_then_backward(lstm), reference)
    assert lstm.layers[0].graphs.stats.eager == {"backward pending": 1}
    # once the first call's graph is gone, the signature replays again
    two_calls_then_backward(lstm)
    assert lstm.layers[0].graphs.stats.replays == 2
    # without the guard the first loss gets the second call's gradient: the hazard is real
    monkeypatch.setattr(CapturedRecurrence, "backward_pending", property(lambda self: False))
    wrong = two_calls_then_backward(_lstm())
    assert not all(torch.allclose(a, b) for a, b in zip(wrong, reference, strict=True))


@pytest.mark.parametrize("set_to_none", [True, False])
def test_accumulated_gradients_are_not_static_buffers(monkeypatch, set_to_none):
    # make_graphed_callables hands back parameter gradients as aliases of its static buffers
    # (pytorch/pytorch issue 181723; the stand-in does the same): accumulating two backward
    # passes into .grad, or zeroing .grad in place between steps, must still give the sums
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)

    def accumulate(lstm):
        for _ in range(2):  # two steps
            lstm.zero_grad(set_to_none=set_to_none)
            x.grad = None
            for scale in (1.0, 3.0):  # two backward passes of one signature, accumulated
                (scale * lstm.run(x, gate_mode="mean")[-1].outputs ** 2).sum().backward()
        return [p.grad.clone() for p in lstm.parameters()] + [x.grad.clone()]

    reference = accumulate(_lstm(recurrence="eager"))
    torch.testing.assert_close(accumulate(_lstm()), reference)
    monkeypatch.setattr("pyro_betalstm.nn.cuda_graphs._fresh_gradient", lambda g: g)
    wrong = accumulate(_lstm())
    assert not all(torch.allclose(a, b) for a, b in zip(wrong, reference, strict=True))


def test_a_given_state_and_its_gradients_pass_through_the_graphs():
    # hx = (h_0, c_0) as leaves that need a gradient (a learned initial state, say): the graph
    # takes them as arguments and their accumulated gradients equal the eager loop's
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    hx = [torch.randn(2, 2, 4, generator=g, dtype=torch.float64).requires_grad_() for _ in "hc"]

    def accumulate(lstm):
        for t in hx:
            t.grad = None
        for scale in (1.0, 2.0):
            out, (h_n, c_n) = lstm(x, tuple(hx), gate_mode="mean")
            (scale * (out**2).sum() + c_n.sum()).backward()
        return out.detach(), [t.grad.clone() for t in hx]

    lstm = _lstm()
    lstm.batch_first = True
    reference = _lstm(recurrence="eager")
    reference.batch_first = True
    torch.testing.assert_close(accumulate(lstm), accumulate(reference))
    assert lstm.layers[1].graphs.stats.replays == 2 and not lstm.layers[1].graphs.stats.eager


def test_switching_to_eager_removes_the_gradient_hooks():
    lstm = _lstm(layers=1)
    lstm.run(torch.randn(2, 4, 3, dtype=torch.float64), gate_mode="mean")
    weight = lstm.layers[0].hidden_proj.weight
    assert weight._backward_hooks
    lstm.set_recurrence("eager")
    assert not weight._backward_hooks


def test_graphs_follow_moved_parameters_and_are_evicted_oldest_first():
    lstm = _lstm(layers=1)
    graphs = lstm.layers[0].graphs
    graphs.max_graphs = 2
    for batch in (1, 2, 3):
        lstm.run(torch.randn(batch, 4, 3, dtype=torch.float64), gate_mode="mean")
    assert [sig.batch for sig in graphs._graphs] == [2, 3] and graphs.stats.captures == 3
    lstm.float()  # new parameter tensors: every graph is stale
    x = torch.randn(3, 4, 3)
    out = lstm.run(x, gate_mode="mean")[0].outputs
    assert len(graphs) == 1 and graphs.stats.captures == 4
    lstm.set_recurrence("eager")
    torch.testing.assert_close(out, lstm.run(x, gate_mode="mean")[0].outputs)


class _CyclicStandIn(StaticBufferStandIn):
    """make_graphed_callables gives the module a forward that refers back to it: a cycle."""

    def __init__(self, scan, args):
        super().__init__(scan, args)
        self.cycle = self


def test_dropped_graphs_are_freed_at_once():
    # with the automatic cycle collector off, only the library's own collection can free a
    # dropped graph's device memory: on eviction and on clear(), not whenever gc next runs
    import gc
    import weakref

    lstm = _lstm(layers=1)
    graphs = lstm.layers[0].graphs
    graphs.capture, graphs.max_graphs = _CyclicStandIn, 1
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lstm.run(torch.randn(1, 4, 3, dtype=torch.float64), gate_mode="mean")
        first = weakref.ref(next(iter(graphs._graphs.values())))
        lstm.run(torch.randn(2, 4, 3, dtype=torch.float64), gate_mode="mean")  # evicts it
        assert first() is None
        second = weakref.ref(next(iter(graphs._graphs.values())))
        graphs.clear()
        assert second() is None
    finally:
        if was_enabled:
            gc.enable()


def test_probe_prior_mode_and_copies():
    lstm = _lstm()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    sampler = lambda t, x_t, h: torch.zeros(x_t.shape[0], 4, 5, dtype=x_t.dtype)  # noqa: E731
    lstm.run(x, gate_mode=PriorBasis(sampler))
    assert lstm.layers[0].graphs.stats.eager == {"gate mode PriorBasis": 1}
    lstm.layers[0].gate_probe = lambda *args: None
    lstm.run(x)
    assert lstm.layers[0].graphs.stats.eager["gradient probe"] == 1
    lstm.layers[0].gate_probe = None
    lstm.run(x)
    twin = copy.deepcopy(lstm)  # a copy has its own, empty, graph cache
    assert len(twin.layers[0].graphs) == 0 and len(lstm.layers[0].graphs) == 1
    assert twin.layers[0].graphs._layer() is twin.layers[0]


def test_svi_loss_and_gradients_equal_the_eager_loop():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 6, 4, generator=g) < 0.4).double()
    lengths = torch.tensor([6, 4, 5])
    batch = SequenceBatch(inputs=x, targets=x, lengths=lengths)
    results = []
    for recurrence in ("eager", "auto"):
        torch.manual_seed(0)
        lstm = StochasticLSTM(4, 5, 2, gate="bivariate5", batch_first=True)
        model = NextStepBernoulli(lstm, 4).double().train()
        set_recurrence(model, recurrence)
        _use_stand_in(model)
        torch.manual_seed(3)
        loss = GateMeanFieldELBO().differentiable_loss(model.model, model.guide, batch)
        results.append((loss, torch.autograd.grad(loss, list(model.parameters()))))
        if recurrence == "auto":
            stats = [layer.graphs.stats for layer in model.lstm.layers]
            assert all(s.replays == 1 and not s.eager for s in stats)
    torch.testing.assert_close(results[1], results[0])


def test_fit_sets_the_recurrence_and_records_it(tmp_path):
    torch.manual_seed(0)
    seqs = [(torch.rand(n, 4) < 0.3).float() for n in (5, 7, 6, 5)]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs])
    model = NextStepBernoulli(StochasticLSTM(4, 5, 1, gate="bivariate", batch_first=True), 4)
    config = TrainConfig(num_epochs=1, batch_size=2, progress=False, recurrence="auto")
    fit(model, data, data, config, out_dir=tmp_path)
    assert model.lstm.recurrence == "auto"
    assert model.lstm.layers[0].graphs.stats.eager.get("not cuda", 0) > 0
    saved = safe_torch_load(tmp_path / "last.pt", what="checkpoint")
    assert saved["config"]["recurrence"] == "auto"
    # how the loop is launched may change on resume (same computation)
    config.num_epochs, config.recurrence = 2, "eager"
    fit(model, data, data, config, out_dir=tmp_path, resume=True)
    assert model.lstm.recurrence == "eager"


def test_fit_and_predictive_evaluation_through_graphs_equal_the_eager_loop(tmp_path):
    # The whole training loop (guide and model sharing the guide's run, backward, clipping,
    # optimiser, validation under no_grad, posterior-predictive draws folded into the batch)
    # through the graph path with the CPU stand-in: no call falls back to the loop, and the
    # trained weights and scores equal the eager run's (same seed, same draws).
    torch.manual_seed(0)
    seqs = [(torch.rand(n, 4) < 0.3).float() for n in (5, 7, 6, 5, 7, 6)]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs])
    outcomes = []
    for recurrence in ("eager", "auto"):
        torch.manual_seed(1)
        lstm = StochasticLSTM(4, 5, 2, gate="bivariate5", batch_first=True, recurrence=recurrence)
        model = NextStepBernoulli(lstm, 4)
        _use_stand_in(model)
        config = TrainConfig(
            num_epochs=2, batch_size=3, progress=False, seed_globals=True, eval_samples=2
        )
        result = fit(model, data, data, config, out_dir=tmp_path / recurrence)
        scores = evaluate_nll(model, data, num_samples=2)
        outcomes.append(([r["train_loss"] for r in result.history], scores, model.state_dict()))
        if recurrence == "auto":
            stats = [layer.graphs.stats for layer in model.lstm.layers]
            assert all(s.replays > 0 and s.eager == {} for s in stats), stats
    (losses_e, scores_e, weights_e), (losses_g, scores_g, weights_g) = outcomes
    assert losses_g == pytest.approx(losses_e, rel=1e-12)
    assert scores_g["nll_predictive"] == pytest.approx(scores_e["nll_predictive"], rel=1e-12)
    torch.testing.assert_close(weights_g, weights_e, rtol=1e-6, atol=1e-7)


def test_host_reads_of_one_svi_step_outside_the_graphs():
    # Outside the layers' graphs an SVI step still reads the device from the host a few times;
    # each read makes a GPU step wait. Counted here (Pyro validation off) so that a new one is
    # noticed: the guide's input check (finite inputs, the lengths' range and a full-length
    # test, read together: 1, it was 4; the model reuses the guide's mask), gamma_kl's
    # unit-rate test (one per layer: 2; CPU tensors only, a GPU's rates are not read),
    # Pyro's warn_if_nan on the loss (1), one inside
    # the backward of an addition (AddBackward0, not traced further); and the two plates'
    # tensors made from Python data (Pyro's subsample messenger).
    import pyro

    from pyro_betalstm.testing.capture import host_syncs

    x = (torch.rand(3, 6, 4, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    batch = SequenceBatch(inputs=x, targets=x, lengths=torch.tensor([6, 4, 5]))
    model = NextStepBernoulli(StochasticLSTM(4, 5, 2, gate="bivariate5", batch_first=True), 4)
    elbo = GateMeanFieldELBO()

    def step():
        with model.untraced():
            elbo.differentiable_loss(model.model, model.guide, batch).backward()

    validation = pyro.infer.util.is_validation_enabled()
    pyro.enable_validation(False)
    try:
        step()
        syncs = host_syncs(step)
    finally:
        pyro.enable_validation(validation)
    assert syncs == {
        "aten::is_nonzero": 4,
        "aten::_local_scalar_dense": 5,
        "aten::lift_fresh": 2,
    }


@pytest.mark.parametrize("clip_norm", [None, 5.0])
def test_host_reads_of_one_fit_step(tmp_path, clip_norm):
    # Per training step of fit (the difference between epochs of 4 and 2 steps, so that setup,
    # checkpoints and evaluation cancel), Pyro validation off. Three reads of the device are
    # left on a GPU: the input check, the class-index check of the targets (one read; it was
    # a min and a max), and the loss with the gradient norm, read together after the backward
    # (by Tensor.tolist, which these CPU counts do not show; they were read apart, and Pyro's
    # warn_if_nan read the loss and its gradient again). The rest read CPU tensors: Adam's
    # step counters (one per parameter), the batch's index and length lists, gamma_kl's
    # unit-rate test. Before: _local_scalar_dense 19, is_nonzero 6.
    import pyro

    from pyro_betalstm.models import SequenceClassifier
    from pyro_betalstm.testing.capture import host_syncs

    def one_epoch(num_sequences, out):
        g = torch.Generator().manual_seed(0)  # distinct lengths: every minibatch is ragged
        xs = [torch.randn(t, 3, generator=g) for t in range(2, 2 + num_sequences)]
        data = SequenceDataset(xs, torch.randint(0, 3, (num_sequences,), generator=g))
        model = SequenceClassifier(StochasticLSTM(3, 4, 1, gate="bivariate5", batch_first=True), 3)
        config = TrainConfig(num_epochs=1, batch_size=2, progress=False, clip_norm=clip_norm)
        return host_syncs(lambda: fit(model, data, None, config, out_dir=out))

    validation = pyro.infer.util.is_validation_enabled()
    pyro.enable_validation(False)
    try:
        two, four = one_epoch(4, tmp_path / "two"), one_epoch(8, tmp_path / "four")
    finally:
        pyro.enable_validation(validation)
    per_step = {op: (four.get(op, 0) - two.get(op, 0)) / 2 for op in set(two) | set(four)}
    assert per_step == {
        "aten::is_nonzero": 3,
        "aten::_local_scalar_dense": 14,
        "aten::lift_fresh": 4,
    }


# ----- real captures on a GPU; the same tests on the CPU with the stand-in ----------------
# Each test below runs on CUDA (real graphs, skipped without a GPU) and on the CPU with
# StaticBufferStandIn, which checks the test's own logic where no GPU is.

DEVICES = [pytest.param("cuda", marks=pytest.mark.gpu), "cpu"]


def _graphed(module, device, compile_cell=False):
    set_recurrence(module, "cuda_graph", compile_cell=compile_cell)
    if device == "cpu":
        _use_stand_in(module)
    return module


def _pair(gate, device, compile_cell=False):
    graphed = _lstm(gate, recurrence="eager", dtype=torch.float32, device=device)
    eager = _lstm(gate, recurrence="eager", dtype=torch.float32, device=device)
    return _graphed(graphed, device, compile_cell), eager


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("gate", "compile_cell"),
    [
        ("bivariate5", False),
        ("bivariate", False),
        ("sigmoid", False),
        pytest.param("bivariate5", True, marks=pytest.mark.slow),
    ],
)
def test_graphs_equal_the_eager_loop_with_a_given_basis(gate, compile_cell, device):
    """Forward and backward replayed from graphs equal the eager loop to float32 round-off
    (same kernels on the same values, or the compiled step's fused ones; tolerance: a few ulps
    of float32 over 2 layers)."""
    graphed, eager = _pair(gate, device, compile_cell)
    k = graphed.family.basis_size or 1
    for length in (7, 7, 12):  # a capture, a replay on new inputs, a second signature
        x = torch.randn(3, length, 3, device=device, requires_grad=True)
        mask = torch.ones(3, length, dtype=torch.bool, device=device)
        mask[1, length - 3 :] = False
        basis = _basis(x, k=k)
        if gate == "sigmoid":  # no basis: compare training runs
            runs = [m.train().run(x, mask) for m in (graphed, eager)]
            losses = [sum((r.outputs**2).sum() for r in rs) for rs in runs]
            grads = [
                torch.autograd.grad(loss, list(m.parameters()) + [x])
                for loss, m in zip(losses, (graphed, eager), strict=True)
            ]
        else:
            (runs_g, grads_g), (runs_e, grads_e) = (
                _given_run(m, x, mask, basis) for m in (graphed, eager)
            )
            runs, grads = [runs_g, runs_e], [grads_g, grads_e]
        for r, e in zip(*runs, strict=True):
            torch.testing.assert_close(r.outputs, e.outputs, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(r.c_n, e.c_n, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    stats = graphed.layers[0].graphs.stats
    assert stats.captures == 2 and stats.replays == 3 and not stats.eager


@pytest.mark.parametrize("device", DEVICES)
def test_graph_draws_are_gamma_distributed_and_fresh_per_replay(device):
    """Sampled bases from replayed graphs, forward-only and taped, follow Gamma(alpha, 1): the
    probability integral transform P(alpha, u) of every draw is uniform (Kolmogorov-Smirnov,
    seeded; p > 1e-3 fails one run in a thousand if the law were right)."""
    from scipy import stats

    lstm = _graphed(_lstm("bivariate5", "eager", dtype=torch.float32, device=device), device)
    x = torch.randn(16, 20, 3, device=device)
    torch.manual_seed(7)
    with torch.no_grad():  # the forward-only graphs (a taped call would wait for its backward)
        runs = [lstm.train().run(x)[0] for _ in range(3)]
    for _ in range(2):  # the taped graphs, each call's backward before the next call
        runs.append(lstm.run(x)[0])
        (runs[-1].outputs ** 2).sum().backward()
    assert not torch.equal(runs[1].log_basis, runs[2].log_basis)
    assert not torch.equal(runs[3].log_basis, runs[4].log_basis)
    for run in (runs[2], runs[4]):
        pit = torch.special.gammainc(run.alpha.double(), run.log_basis.double().exp())
        assert stats.kstest(pit.detach().flatten().cpu().numpy(), "uniform").pvalue > 1e-3
    graph_stats = lstm.layers[0].graphs.stats
    assert graph_stats.replays == 5 and graph_stats.captures == 2 and not graph_stats.eager


@pytest.mark.parametrize("device", DEVICES)
def test_graphs_train_and_evaluate_the_predictive(tmp_path, device):
    torch.manual_seed(0)
    seqs = [(torch.rand(int(n), 6) < 0.3).float() for n in torch.randint(4, 12, (16,))]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs])
    model = NextStepBernoulli(StochasticLSTM(6, 8, 2, gate="bivariate5", batch_first=True), 6)
    _graphed(model, device)
    config = TrainConfig(num_epochs=2, batch_size=4, device=device, progress=False,
                         seed_globals=True)  # fmt: skip
    result = fit(model, data, data, config, out_dir=tmp_path)
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    stats = model.lstm.layers[0].graphs.stats
    assert stats.replays > 0 and not stats.eager, stats
    graphed = evaluate_nll(model, data, num_samples=3, device=device)
    model.lstm.set_recurrence("eager")
    eager = evaluate_nll(model, data, num_samples=3, device=device)
    assert math.isclose(graphed["nll_mean_gates"], eager["nll_mean_gates"], rel_tol=1e-5)
    assert math.isfinite(graphed["nll_predictive"])


@pytest.mark.gpu
def test_cuda_graph_training_from_the_config(tmp_path):
    """TrainConfig(recurrence="cuda_graph") on a GPU: fit sets it and trains from graphs."""
    torch.manual_seed(0)
    seqs = [(torch.rand(9, 6) < 0.3).float() for _ in range(8)]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs])
    model = NextStepBernoulli(StochasticLSTM(6, 8, 1, gate="bivariate", batch_first=True), 6)
    config = TrainConfig(num_epochs=1, batch_size=4, device="cuda", progress=False,
                         recurrence="cuda_graph")  # fmt: skip
    fit(model, data, data, config, out_dir=tmp_path)
    assert model.lstm.recurrence == "cuda_graph" and model.lstm.layers[0].graphs.stats.replays
