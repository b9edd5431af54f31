"""GPU checks: skipped (with a reason, by tests/conftest.py) where CUDA is absent."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import TrainConfig, evaluate_nll, fit
from pyro_betalstm.models import NextStepBernoulli
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.testing import gate_family_names


@pytest.mark.gpu
@pytest.mark.parametrize("gate", gate_family_names())
def test_fit_and_evaluate_on_cuda(tmp_path, gate):
    torch.manual_seed(0)
    seqs = [(torch.rand(int(n), 6) < 0.3).float() for n in torch.randint(4, 12, (16,))]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs])
    model = NextStepBernoulli(StochasticLSTM(6, 8, 2, gate=gate, batch_first=True), 6)
    config = TrainConfig(
        num_epochs=2, batch_size=4, device="cuda", progress=False, eval_samples=2, seed_globals=True
    )
    result = fit(model, data, data, config, out_dir=tmp_path)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    scores = evaluate_nll(model, data, num_samples=2, device="cuda")
    assert math.isfinite(scores["nll_mean_gates"])


@pytest.mark.gpu
def test_sigmoid_family_matches_cudnn_lstm():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True).cuda()
    lstm = StochasticLSTM(5, 7, 2, gate="sigmoid", batch_first=True).cuda().load_torch_lstm(ref)
    x = torch.randn(3, 9, 5, device="cuda")
    # cuDNN runs its LSTM in TF32 by default on Ampere and later (off by 6e-5 here on an H100);
    # compared in full float32, the two must agree to float32 rounding
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        (out_ref, _), (out, _) = ref(x), lstm(x)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_predictive_draws_fold_with_the_eager_loop_and_not_under_graphs():
    # folded draws are fewer, larger passes: with the eager loop on a GPU they save launches;
    # layers that replay graphs take one draw a pass, or each folded shape would be one more
    # graph held in their caches
    from pyro_betalstm.infer import predictive_log_likelihood

    torch.manual_seed(0)
    seqs = [(torch.rand(9, 6) < 0.3).float() for _ in range(4)]
    batch = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs]).batch(range(4))
    batch = batch.to("cuda")
    for recurrence, passes in (("eager", 1), ("auto", 5)):
        model = NextStepBernoulli(
            StochasticLSTM(6, 8, 2, batch_first=True, recurrence=recurrence), 6
        ).cuda()
        calls: list = []
        run_network = model.run_network
        model.run_network = lambda b, gate_mode, calls=calls, run=run_network: (
            calls.append(b) or run(b, gate_mode)
        )
        scores = predictive_log_likelihood(model, batch, 5)
        assert len(calls) == passes and torch.isfinite(scores).all()
