"""Prediction: mean-gate NLL, posterior predictive and gate draws against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import (
    GATE_DIMS,
    PREDICTIVE_ROW_STEPS,
    draws_per_pass,
    evaluate_classifier,
    evaluate_nll,
    gate_kl_summary,
    predictive_log_likelihood,
    sample_gates,
    sample_posterior_predictive,
)
from pyro_betalstm.models import SequenceClassifier, evaluating
from pyro_betalstm.nn import PriorBasis, StochasticLSTM

from . import reference as ref
from .helpers import make_batch, make_dataset, make_model


@pytest.mark.parametrize("head", ["classifier", "next_step"])
def test_evaluate_nll_mean_gates_equals_reference(float64, head):
    """NLL per prediction (per sequence / per predicted frame) with the paper's mean gates."""
    m = make_model(head, "bivariate5", num_layers=2)
    data = make_dataset(7, head=head)
    result = evaluate_nll(m, data, batch_size=3, num_samples=2)
    total, count = 0.0, 0
    for batch in data.batches(3):
        run = ref.run_network(m, batch, mode="mean")[-1]
        total += float(ref.head_log_likelihood(m, run, batch).sum().detach())
        count += len(batch.inputs) if head == "classifier" else int(ref.lengths_mask(batch).sum())
    assert result["num_predictions"] == count
    assert result["nll_mean_gates"] == pytest.approx(-total / count, rel=1e-10)
    assert math.isfinite(result["nll_predictive"]) and result["num_samples"] == 2
    assert m.training  # the model's mode is restored


@pytest.mark.parametrize("family", ref.LATENT + ref.DETERMINISTIC)
def test_evaluate_classifier_matches_direct_computation(float64, family):
    """Accuracy from argmax of mean-gate logits; NLL equal to evaluate_nll's per sequence."""
    m = make_model("classifier", family, num_layers=2)
    data = make_dataset(9)
    result = evaluate_classifier(m, data, batch_size=4, num_samples=3)
    correct = 0
    for batch in data.batches(4):
        logits = m.predict_from_run(ref.run_network(m, batch, mode="mean")[-1], batch)
        correct += int((logits.argmax(-1) == batch.targets).sum())
    assert result["accuracy_mean_gates"] == pytest.approx(correct / 9)
    assert result["error_mean_gates"] == pytest.approx(1 - correct / 9)
    nll = evaluate_nll(m, data, batch_size=4)["nll_mean_gates"]
    assert result["nll_mean_gates"] == pytest.approx(nll, rel=1e-10)
    assert ("accuracy_predictive" in result) == (family in ref.LATENT)
    assert m.training


def test_classifier_predictive_averages_class_probabilities_of_folded_draws(float64):
    """accuracy_predictive and nll_predictive from log (1/S) sum_s p(c | u_s), the S draws of a
    minibatch run folded into one batch (row k * B + b: draw k of sequence b)."""
    m = make_model("classifier", "bivariate", num_layers=2)
    data = make_dataset(9)
    torch.manual_seed(5)
    result = evaluate_classifier(m, data, batch_size=4, num_samples=3)
    torch.manual_seed(5)
    correct, nll = 0, 0.0
    with torch.no_grad(), evaluating(m):
        for batch in data.batches(4, bucket=True):  # the evaluator's order, shortest first
            folded = batch.repeat(3)
            logits = m.predict_from_run(ref.run_network(m, folded, "sample")[-1], folded)
            log_p = ref.log_mean_exp(logits.log_softmax(-1).reshape(3, batch.batch_size, -1))
            correct += int((log_p.argmax(-1) == batch.targets).sum())
            nll -= float(log_p.gather(-1, batch.targets[:, None]).sum())
    assert result["accuracy_predictive"] == pytest.approx(correct / 9, abs=1e-12)
    assert result["nll_predictive"] == pytest.approx(nll / 9, rel=1e-10)


@pytest.mark.parametrize("evaluate", [evaluate_nll, evaluate_classifier, gate_kl_summary])
def test_evaluation_reads_sequences_shortest_first(monkeypatch, evaluate):
    """Every evaluator pads each minibatch to a length near its own: the sequences go shortest
    first, so the minibatches' longest lengths never decrease and every sequence is read once
    (in file order, a long sequence early would pad a whole minibatch of short ones)."""
    m = make_model("classifier", "bivariate", num_layers=1)
    data = make_dataset(11)
    seen: list[list[int]] = []
    run_network = m.run_network

    def recording(batch, gate_mode="mean"):
        if gate_mode == "mean":  # one mean-gate pass per minibatch
            seen.append(batch.step_mask().sum(1).tolist())
        return run_network(batch, gate_mode)

    monkeypatch.setattr(m, "run_network", recording)
    evaluate(m, data, 3)
    lengths = [x.shape[0] for x in data.inputs]
    assert sorted(n for batch in seen for n in batch) == sorted(lengths)
    assert [n for batch in seen for n in batch] == sorted(lengths)
    assert lengths != sorted(lengths)  # the data's own order is not already sorted


def test_evaluation_shows_a_bar_only_when_asked(monkeypatch, capsys):
    # a long evaluation (MuseData: minutes) shows its minibatches where a bar would be watched
    import pyro_betalstm.progress as progress

    monkeypatch.setattr(progress, "bars_wanted", lambda: True)
    m = make_model("classifier", "bivariate", num_layers=1)
    data = make_dataset(7)
    quiet = evaluate_nll(m, data, 3)
    assert "evaluate" not in capsys.readouterr().err
    shown = evaluate_nll(m, data, 3, progress=True)
    assert "evaluate" in capsys.readouterr().err and shown == quiet
    evaluate_classifier(m, data, 3, progress=True)
    assert "0/3" in capsys.readouterr().err  # 7 sequences: 3 minibatches of at most 3


def test_deterministic_family_has_no_predictive():
    m = make_model("classifier", "sigmoid", num_layers=1)
    result = evaluate_nll(m, make_dataset(5), num_samples=4)
    assert "nll_predictive" not in result and math.isfinite(result["nll_mean_gates"])
    m = make_model("classifier", "beta", num_layers=1)
    assert "nll_predictive" not in evaluate_nll(m, make_dataset(5), num_samples=0)


@pytest.mark.parametrize("head", ["classifier", "next_step"])
def test_predictive_with_one_draw_equals_direct_computation(float64, head):
    m = make_model(head, "bivariate", num_layers=2)
    batch = make_batch(head)
    torch.manual_seed(11)
    ours = predictive_log_likelihood(m, batch, 1)
    torch.manual_seed(11)
    with torch.no_grad():
        run = ref.run_network(m, batch, mode="sample")[-1]
        expected = ref.head_log_likelihood(m, run, batch)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)


def test_predictive_averages_likelihoods_of_draws(float64):
    """S draws: log (1/S) sum_s p(y | u_s), the draws folded into one batch (row k * B + b is
    draw k of sequence b) or, with row_steps 0, taken in sequence: exact either way."""
    m = make_model("classifier", "beta", num_layers=2)
    batch = make_batch("classifier")
    B = batch.batch_size
    for row_steps, passes in ((PREDICTIVE_ROW_STEPS, 1), (0, 5)):
        torch.manual_seed(2)
        ours = predictive_log_likelihood(m, batch, 5, row_steps=row_steps)
        torch.manual_seed(2)
        with torch.no_grad():
            if passes == 1:
                folded = batch.repeat(5)
                run = ref.run_network(m, folded, "sample")[-1]
                draws = ref.head_log_likelihood(m, run, folded).reshape(5, B)
            else:
                draws = torch.stack(
                    [
                        ref.head_log_likelihood(m, ref.run_network(m, batch, "sample")[-1], batch)
                        for _ in range(5)
                    ]
                )
        torch.testing.assert_close(ours, ref.log_mean_exp(draws), rtol=1e-10, atol=1e-12)
        assert ours.shape == (3,)
        # Jensen: the predictive is at least the mean of the draws' log-likelihoods
        assert torch.all(ours >= draws.mean(0) - 1e-12)
        # five different draws per sequence, not one draw five times
        assert len(set(draws[:, 0].tolist())) == 5
    with pytest.raises(ValueError, match="num_samples must be positive"):
        predictive_log_likelihood(m, batch, 0)
    with pytest.raises(ValueError, match="row_steps must be a non-negative integer"):
        predictive_log_likelihood(m, batch, 2, row_steps=-1)


def test_draws_per_pass_keeps_rows_times_steps_within_the_budget():
    batch = make_batch("next_step", lengths=(5, 3, 4))  # B = 3, T = 5: 15 row-steps a draw
    m = make_model("next_step", "bivariate", num_layers=1)
    assert [draws_per_pass(m, batch, 10, r) for r in (0, 14, 15, 44, 45, 150, 10**6)] == [
        1,
        1,
        1,
        2,
        3,
        10,
        10,
    ]
    assert draws_per_pass(m, batch, 4, 10**6) == 4  # never more than asked for
    calls = []
    run_network = m.run_network
    m.run_network = lambda b, gate_mode: calls.append(b.batch_size) or run_network(b, gate_mode)
    predictive_log_likelihood(m, batch, 7, row_steps=45)  # 3 draws a pass: 3 + 3 + 1
    assert calls == [9, 9, 3]


@pytest.mark.parametrize("family", ref.LATENT + ref.DETERMINISTIC)
def test_sample_gates_shapes_values_and_mask(family):
    m = make_model("classifier", family, hidden_size=4, num_layers=2)
    batch = make_batch("classifier", lengths=(5, 3, 4))
    g = sample_gates(m, batch, num_samples=6)
    assert GATE_DIMS == ("draw", "sequence", "time", "layer", "unit")
    for key in ("input_gate", "forget_gate"):
        assert g[key].shape == (6, 3, 5, 2, 4)
        assert torch.all((g[key] >= 0) & (g[key] <= 1))
    torch.testing.assert_close(g["mask"], ref.lengths_mask(batch))
    if family in ref.LATENT:
        K = ref.BASIS_SIZE[family]
        assert g["alpha"].shape == g["log_basis"].shape == (6, 3, 5, 2, 4, K)
        assert torch.all(g["alpha"] > 1e-3 - 1e-7)
        # gates are the family's function of the recorded basis
        i, f = ref.ratio_gates(family, g["log_basis"].double(), log_space=True)
        torch.testing.assert_close(g["input_gate"].double(), i, atol=1e-5, rtol=0)
        torch.testing.assert_close(g["forget_gate"].double(), f, atol=1e-5, rtol=0)
        assert not torch.equal(g["forget_gate"][0], g["forget_gate"][1])  # real draws
    else:
        assert "alpha" not in g and "log_basis" not in g
    assert m.training


def test_sample_gates_mean_mode_is_the_alpha_ratio():
    m = make_model("classifier", "bivariate", num_layers=2)
    batch = make_batch("classifier", lengths=None)
    g = sample_gates(m, batch, num_samples=2, gate_mode="mean")
    assert "log_basis" not in g
    torch.testing.assert_close(g["forget_gate"][0], g["forget_gate"][1], rtol=0, atol=0)
    a = g["alpha"]
    torch.testing.assert_close(g["input_gate"], a[..., 0] / (a[..., 0] + a[..., 2]))
    torch.testing.assert_close(g["forget_gate"], a[..., 1] / (a[..., 1] + a[..., 2]))
    assert g["mask"].all()


@pytest.mark.parametrize("num_samples", [0, -2])
def test_sample_gates_refuses_no_draws(num_samples):
    """It returned only the mask, where sample_posterior_predictive refuses the same input."""
    m, batch = make_model("classifier", "bivariate"), make_batch("classifier")
    with pytest.raises(ValueError, match=f"num_samples must be positive, got {num_samples}"):
        sample_gates(m, batch, num_samples)


@pytest.mark.parametrize(
    "targets, message",
    [
        ([0, 1, 2, 5], r"targets must lie in \[0, 2\]"),  # was an index-out-of-bounds error
        ([0, 1, 2, -1], r"targets must lie in \[0, 2\]"),
        ([0.0, 1.5, 2.0, 1.0], "whole-number class labels"),  # was gather's dtype error
        (None, r"class indices of shape \(4,\), got None"),  # was an AttributeError
    ],
)
def test_evaluate_classifier_checks_the_targets_as_the_model_does(targets, message):
    m = make_model("classifier", "bivariate", num_outputs=3)
    xs = [torch.randn(t, 3) for t in (3, 2, 4, 3)]
    data = SequenceDataset(xs, None if targets is None else torch.tensor(targets))
    with pytest.raises(ValueError, match=message):
        evaluate_classifier(m, data)


def test_evaluate_classifier_takes_whole_float_labels(float64):
    m = make_model("classifier", "bivariate", num_outputs=3)
    data = make_dataset(6)
    as_float = SequenceDataset(data.inputs, data.targets.double())
    assert evaluate_classifier(m, as_float) == evaluate_classifier(m, data)


def test_predictive_log_likelihood_runs_in_evaluation_mode():
    """A model in training mode applied dropout (and drew its masks) in the predictive."""
    torch.manual_seed(0)
    lstm = StochasticLSTM(3, 4, 2, gate="bivariate", batch_first=True, dropout=0.5)
    m = SequenceClassifier(lstm, 3)
    batch = make_batch("classifier")
    torch.manual_seed(5)
    in_training = predictive_log_likelihood(m, batch, 3)
    assert m.training  # the model's mode is restored
    torch.manual_seed(5)
    with evaluating(m):
        in_evaluation = predictive_log_likelihood(m, batch, 3)
    torch.testing.assert_close(in_training, in_evaluation, rtol=0, atol=0)


def test_evaluate_classifier_refuses_targets_that_are_not_class_indices():
    """A next-step model's (B, T, K) frames failed with a RuntimeError in the comparison."""
    m = make_model("next_step", "bivariate")
    with pytest.raises(ValueError, match=r"class indices of shape \(5,\), got \(5, \d+, 3\)"):
        evaluate_classifier(m, make_dataset(5, head="next_step"))


@pytest.mark.parametrize("gate_mode", ["given", "prior", "bogus"])
@pytest.mark.parametrize("draws", [sample_gates, sample_posterior_predictive])
def test_gate_draws_refuse_modes_that_need_an_argument(draws, gate_mode):
    """The modes "given" and "prior" passed the check, then failed asking for arguments that
    these functions do not take."""
    m, batch = make_model("classifier", "bivariate"), make_batch("classifier")
    message = rf"gate_mode must be 'sample', 'mean' or a GateMode.* got '{gate_mode}'"
    with pytest.raises(ValueError, match=message):
        draws(m, batch, 2, gate_mode=gate_mode)
    sampler = lambda t, x, h: torch.zeros(x.shape[0], h.shape[-1], 3)  # noqa: E731
    g = draws(m, batch, 2, gate_mode=PriorBasis(sampler))  # a GateMode is taken
    torch.testing.assert_close(g["input_gate"], torch.full_like(g["input_gate"], 0.5))


def test_gate_kl_summary_refuses_a_prior_with_global_latent_variables():
    """The hierarchical prior failed with "model() must run before distribution()" (or, after
    training, used the last kappa the model had drawn)."""
    m = make_model("next_step", "bivariate", prior="hierarchical")
    with pytest.raises(ValueError, match="prior without global latent variables"):
        gate_kl_summary(m, make_dataset(4, head="next_step"))


def test_exact_quantiles_agree_with_torch_quantile_for_any_order_and_size():
    from pyro_betalstm.infer.predict import exact_quantiles

    g = torch.Generator().manual_seed(0)
    values = torch.rand(1001, generator=g) ** 3  # skewed, like concentrations
    probabilities = (0.0, 0.01, 0.5, 0.99, 1.0)
    reference = torch.quantile(values.double(), torch.tensor(probabilities, dtype=torch.float64))
    # float64 interpolation between the same order statistics: equal to a few ulps
    assert exact_quantiles(values, probabilities) == pytest.approx(reference.tolist(), rel=1e-12)
    shuffled = values[torch.randperm(values.numel(), generator=g)]
    assert exact_quantiles(shuffled, probabilities) == exact_quantiles(values, probabilities)
    # past torch.quantile's 2**24 elements: still every element, no subset
    many = torch.zeros(2**24 + 3)
    many[-3:] = 1.0
    assert exact_quantiles(many, (0.5, 1.0)) == [0.0, 1.0]
    with pytest.raises(ValueError, match="at least one value"):
        exact_quantiles(torch.empty(0), (0.5,))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        exact_quantiles(values, (1.5,))
