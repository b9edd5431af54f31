"""The training engine :func:`fit`: clipping, plateau decay, early stopping, checkpoints,
metrics files, exact resume, NaN handling and optimiser choices."""

from __future__ import annotations

import copy
import csv
import json
import random
import time
from contextlib import nullcontext

import numpy as np
import pyro
import pyro.optim
import pytest
import torch

from pyro_betalstm.infer import NonFiniteLossError, TrainConfig, evaluate_nll, fit, load_best
from pyro_betalstm.infer.train import _validation_seed
from pyro_betalstm.models import SequenceClassifier

from .helpers import make_dataset, make_model


def _config(**kw):
    base = dict(num_epochs=2, batch_size=4, lr=1e-2, progress=False, seed=0, seed_globals=True)
    base.update(kw)
    return TrainConfig(**base)


def _flat(model):
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def _constant_metric(value=1.0):
    def evaluate(model, data, config):
        return {"nll_mean_gates": value}

    return evaluate


def _one_sgd_step_change(clip_norm):
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(6)
    before = _flat(m)
    # one batch (batch_size >= N), one epoch: the change is lr * (clipped) gradient
    fit(
        m,
        data,
        None,
        _config(num_epochs=1, batch_size=8, optimizer="sgd", lr=1.0, clip_norm=clip_norm),
    )
    return (_flat(m) - before).norm().item()


def test_gradient_clipping_is_applied_after_backward():
    clip = 1e-3
    clipped = _one_sgd_step_change(clip)
    unclipped = _one_sgd_step_change(None)
    assert clipped <= clip * (1 + 1e-4)  # clip_grad_norm_ scales by clip / (norm + 1e-6)
    assert clipped > 0.5 * clip  # and the step is not zero (the gradient norm exceeds clip)
    assert unclipped > 10 * clip


def test_learning_rate_divided_on_plateau_after_start_epoch():
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(6)
    config = _config(num_epochs=5, lr=0.1, lr_decay=2.0, plateau_start_epoch=3)
    result = fit(m, data, data, config, evaluate=_constant_metric())
    # epoch 1 improves (from inf); epochs 2.. do not; the decay starts at epoch 3, and each
    # record holds the lr used during that epoch
    assert [r["lr"] for r in result.history] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025])


def test_early_stopping():
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(6)
    result = fit(
        m,
        data,
        data,
        _config(num_epochs=10, early_stopping_patience=2),
        evaluate=_constant_metric(),
    )
    assert result.stopped_early
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1


def test_time_limit_stops_at_the_end_of_the_epoch_that_passes_it():
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(6)

    def slow_metric(model, valid, config):
        time.sleep(0.5)  # each epoch lasts at least 0.5 s
        return {"nll_mean_gates": 1.0}

    result = fit(m, data, data, _config(num_epochs=10, time_limit_s=0.8), evaluate=slow_metric)
    # epoch 1 ends near 0.5 s (under the limit), epoch 2 past 1.0 s (over it): two epochs
    assert result.stopped_on_time and not result.stopped_early
    assert [r["epoch"] for r in result.history] == [1, 2]
    unlimited = fit(m, data, data, _config(num_epochs=2), evaluate=_constant_metric())
    assert not unlimited.stopped_on_time


@pytest.mark.parametrize("limit", [0.0, -1.0, float("nan")])
def test_time_limit_must_be_positive(limit):
    m = make_model("classifier", "sigmoid", num_layers=1)
    with pytest.raises(ValueError, match="time_limit_s must be positive"):
        fit(m, make_dataset(6), None, _config(time_limit_s=limit))


def test_best_checkpoint_and_metrics_files(tmp_path):
    m = make_model("classifier", "bivariate", num_layers=1)
    data = make_dataset(6)
    values = iter([3.0, 1.0, 2.0, 4.0])
    snapshots, seen = {}, []

    def evaluate(model, valid, config):
        epoch = len(snapshots) + 1
        snapshots[epoch] = copy.deepcopy(model.state_dict())
        # the metrics of every earlier epoch are on disk already
        if epoch > 1:
            seen.append(len(json.loads((tmp_path / "metrics.json").read_text())))
        return {"nll_mean_gates": next(values), "extra": float(epoch)}

    result = fit(m, data, data, _config(num_epochs=4), out_dir=tmp_path, evaluate=evaluate)
    assert seen == [1, 2, 3]
    assert result.best_epoch == 2 and result.best_metric == 1.0
    assert result.best_checkpoint == tmp_path / "best.pt"
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 2
    fresh = make_model("classifier", "bivariate", num_layers=1, seed=99)
    load_best(fresh, tmp_path)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, snapshots[2][k], rtol=0, atol=0)
    records = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    expected = {
        "epoch",
        "train_loss",
        "grad_norm",
        "lr",
        "kl_weight",
        "seconds",
        "valid_nll_mean_gates",
        "valid_extra",
    }
    assert expected <= set(rows[0])
    assert [float(r["valid_nll_mean_gates"]) for r in rows] == [3.0, 1.0, 2.0, 4.0]
    assert all(
        float(r["train_loss"]) == pytest.approx(rec["train_loss"])
        for r, rec in zip(rows, records, strict=True)
    )


def test_default_validation_metrics_and_no_valid_data():
    m = make_model("next_step", "beta", num_layers=1)
    data = make_dataset(6, head="next_step")
    result = fit(m, data, data, _config(num_epochs=1, eval_samples=2))
    rec = result.history[0]
    assert {"valid_nll_mean_gates", "valid_nll_predictive", "valid_num_predictions"} <= set(rec)
    result = fit(m, data, None, _config(num_epochs=1))
    assert result.best_epoch == 1 and result.best_metric == result.history[0]["train_loss"]


def test_validation_settings_do_not_change_training():
    """Validation's predictive draws come from a stream of their own: the same run with other
    eval_samples or eval_batch_size ends with exactly the same weights, and the draws after an
    epoch are those of the run's seed and that epoch, whatever training drew before."""
    data = make_dataset(8, head="next_step")
    weights, models, results = {}, {}, {}
    for eval_samples, eval_batch_size in ((0, 32), (3, 32), (3, 2)):
        torch.manual_seed(0)
        m = make_model("next_step", "bivariate", num_layers=1)
        config = _config(num_epochs=2, eval_samples=eval_samples, eval_batch_size=eval_batch_size)
        results[eval_samples, eval_batch_size] = fit(m, data, data, config)
        weights[eval_samples, eval_batch_size] = _flat(m)
        models[eval_samples, eval_batch_size] = m
    # without the stream of its own, validation's draws shift every later training draw
    torch.testing.assert_close(weights[3, 32], weights[0, 32], rtol=0, atol=0)
    torch.testing.assert_close(weights[3, 2], weights[0, 32], rtol=0, atol=0)
    # epoch 2's validation, repeated by hand from the model as it ended epoch 2
    with torch.random.fork_rng():
        torch.manual_seed(_validation_seed(0, 2, 0))
        again = evaluate_nll(models[3, 32], data, 32, num_samples=3)
    history = results[3, 32].history
    assert again["nll_predictive"] == history[1]["valid_nll_predictive"]
    assert history[0]["valid_nll_predictive"] != history[1]["valid_nll_predictive"]


def test_fit_trains_untraced_and_gives_the_tracing_flags_back():
    # fit trains without the deterministic gate sites (nothing reads them there) and leaves
    # the user's flags as they were; the trained weights equal those of a traced run.
    data = make_dataset(6, head="next_step")
    weights = {}
    for traced in (False, True):
        torch.manual_seed(0)
        m = make_model("next_step", "bivariate", num_layers=1)
        m.trace_states = traced
        if traced:  # the context off: each step records its sites, as before
            m.untraced = nullcontext
        fit(m, data, None, _config(num_epochs=1))
        assert (m.trace_gates, m.trace_states) == (True, traced)
        weights[traced] = _flat(m)
    torch.testing.assert_close(weights[False], weights[True], rtol=0, atol=0)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    """4 epochs in one go == 2 epochs, then resume to 4: identical losses (exact equality).

    Latent gates, shuffled minibatches, dropout and validation with predictive draws all use
    random numbers, so this needs every random state in the checkpoint.
    """
    data = make_dataset(10)

    def model():
        torch.manual_seed(0)
        lstm_model = make_model("classifier", "bivariate", num_layers=2)
        lstm_model.lstm.dropout = 0.2
        return lstm_model

    config = _config(num_epochs=4, batch_size=3, eval_samples=2, kl_anneal_epochs=3)
    full = fit(model(), data, data, config, out_dir=tmp_path / "a")
    fit(
        model(),
        data,
        data,
        _config(num_epochs=2, batch_size=3, eval_samples=2, kl_anneal_epochs=3),
        out_dir=tmp_path / "b",
    )
    resumed = fit(model(), data, data, config, out_dir=tmp_path / "b", resume=True)
    keys = ["train_loss", "valid_nll_mean_gates", "valid_nll_predictive", "lr", "kl_weight"]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["epoch"] == b["epoch"]
        for k in keys:
            assert a[k] == b[k], (a["epoch"], k, a[k], b[k])
    assert len({r["train_loss"] for r in full.history}) == 4


def test_resume_without_checkpoint(tmp_path):
    m = make_model("classifier", "sigmoid", num_layers=1)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(m, make_dataset(4), None, _config(), out_dir=tmp_path, resume=True)


class _Poisonable(SequenceClassifier):
    poisoned = False

    def predict_from_run(self, run, batch):
        logits = super().predict_from_run(run, batch)
        return logits * float("nan") if self.poisoned else logits


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_non_finite_loss_names_epoch_and_step_and_keeps_checkpoint(tmp_path):
    # With Pyro's validation on, NaN logits are caught by the distribution's argument check
    # (a ValueError) before any loss exists; switch it off to reach fit's own check.
    pyro.enable_validation(False)
    base = make_model("classifier", "bivariate", num_layers=1)
    m = _Poisonable(base.lstm, 3)
    data = make_dataset(6)

    def evaluate(model, valid, config):
        model.poisoned = True  # from epoch 2 on, the likelihood is NaN
        return {"nll_mean_gates": 1.0}

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1") as info:
        fit(m, data, data, _config(num_epochs=3), out_dir=tmp_path, evaluate=evaluate)
    assert "last.pt" in str(info.value)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    fresh = _Poisonable(make_model("classifier", "bivariate", num_layers=1, seed=5).lstm, 3)
    fresh.load_state_dict(ckpt["model"])
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


@pytest.mark.parametrize(
    "optimizer, config_lr, lr",
    [
        # a PyroOptim's own dict sets the learning rate: TrainConfig.lr stays at its default
        (pyro.optim.Adam({"lr": 0.05}), TrainConfig.lr, 0.05),
        (torch.optim.SGD, 0.01, 0.01),
        ("RMSprop", 0.01, 0.01),
    ],
    ids=["pyro-adam", "torch-class", "name"],
)
def test_optimizer_choices(optimizer, config_lr, lr):
    m = make_model("classifier", "bivariate", num_layers=1)
    before = _flat(m)
    config = _config(num_epochs=1, optimizer=optimizer, lr=config_lr)
    result = fit(m, make_dataset(6), None, config)
    assert result.history[0]["lr"] == pytest.approx(lr)
    assert not torch.equal(before, _flat(m))


def test_unknown_optimizer_and_bad_settings():
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(4)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(m, data, None, _config(optimizer="adamm"))
    with pytest.raises(ValueError, match="optimizer must be"):
        fit(m, data, None, _config(optimizer=torch.nn.Linear))
    with pytest.raises(ValueError, match="num_epochs must be positive"):
        fit(m, data, None, _config(num_epochs=0))
    with pytest.raises(ValueError, match="unknown elbo"):
        fit(m, data, None, _config(elbo="tracegraph"))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"elbo": "bogus"}, "unknown elbo 'bogus'"),
        ({"lr_rule": "bogus"}, "unknown lr_rule 'bogus'"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0"),
        ({"clip_norm": float("inf")}, "clip_norm must be a positive finite number or None"),
        ({"clip_norm": 0.0}, "clip_norm must be a positive finite number or None"),
        ({"divergence_threshold": -float("inf")}, "divergence_threshold must be a number"),
        ({"divergence_threshold": float("nan")}, "divergence_threshold must be a number"),
        ({"batch_size": -1}, "batch_size must be positive"),
    ],
)
def test_config_check_refuses_out_of_range_settings(bad, message):
    """check() accepted an unknown elbo or lr_rule (refused only later by fit), a negative
    weight decay (torch's error) and an infinite clip norm or -inf divergence threshold.
    Making the config refuses the setting; one set on a made config is refused by fit."""
    with pytest.raises(ValueError, match=message):
        _config(**bad)
    config = _config()
    for name, value in bad.items():
        setattr(config, name, value)  # changing a config afterwards checks nothing...
    with pytest.raises(ValueError, match=message):
        config.check()
    with pytest.raises(ValueError, match=message):  # ...but fit checks it when it starts
        fit(make_model("classifier", "sigmoid", num_layers=1), make_dataset(4), None, config)


def test_config_check_accepts_the_edges_of_the_ranges():
    _config(weight_decay=0.0, clip_norm=None, divergence_threshold=float("inf")).check()
    _config(weight_decay=1e-4, clip_norm=1e-3, divergence_threshold=-1.0, elbo="trace").check()


def test_kl_annealing_and_trace_elbo():
    m = make_model("classifier", "bivariate5", num_layers=1, kl_weight=0.6)
    result = fit(m, make_dataset(6), None, _config(num_epochs=3, kl_anneal_epochs=2, elbo="trace"))
    assert [r["kl_weight"] for r in result.history] == pytest.approx([0.3, 0.6, 0.6])
    assert m.kl_weight == 0.6


def test_kl_weight_is_restored_when_an_epoch_raises():
    # a divergence during annealing (epoch 1 of 4: weight 0.15) must not leave the annealed
    # weight on the model, where the next fit would take it as its target
    from pyro_betalstm.infer import DivergenceError

    m = make_model("classifier", "bivariate", num_layers=1, kl_weight=0.6)
    config = _config(num_epochs=2, kl_anneal_epochs=4, divergence_threshold=-1e30)
    with pytest.raises(DivergenceError):
        fit(m, make_dataset(6), None, config)
    assert m.kl_weight == 0.6
    retry = fit(m, make_dataset(6), None, _config(num_epochs=1))
    assert retry.history[-1]["kl_weight"] == 0.6


def _global_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_states(a, b) -> bool:
    return torch.equal(a[0], b[0]) and bool((a[1] == b[1]).all()) and a[2] == b[2]


def _seed_everything(seed):
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)


def test_fit_leaves_the_global_generators_alone_unless_asked():
    # sigmoid gates, no dropout: training itself draws nothing from the global generators
    model = make_model("classifier", "sigmoid", num_layers=1)
    _seed_everything(123)
    before = _global_states()
    fit(model, make_dataset(6), None, _config(seed=7, seed_globals=False))
    assert _same_states(_global_states(), before)


def test_fit_seeds_the_global_generators_when_asked():
    model = make_model("classifier", "sigmoid", num_layers=1)
    _seed_everything(7)
    seeded = _global_states()
    _seed_everything(123)
    fit(model, make_dataset(6), None, _config(seed=7, seed_globals=True))
    assert _same_states(_global_states(), seeded)


def test_without_global_seeding_gate_draws_follow_the_callers_generator():
    model = make_model()  # latent gates: training draws them from torch's global generator

    def first_loss(global_seed=None):
        if global_seed is not None:
            torch.manual_seed(global_seed)
        config = _config(num_epochs=1, seed_globals=False)
        return fit(copy.deepcopy(model), make_dataset(6), None, config).history[0]["train_loss"]

    reseeded, continued, reseeded_again = first_loss(1), first_loss(), first_loss(1)
    assert reseeded == reseeded_again and continued != reseeded


def test_the_minibatch_order_is_seeded_by_config_seed_without_global_seeding():
    def losses(seed, global_seed):
        model = make_model("classifier", "sigmoid", num_layers=1)  # deterministic gates
        torch.manual_seed(global_seed)
        config = _config(seed=seed, batch_size=2, seed_globals=False)
        return [r["train_loss"] for r in fit(model, make_dataset(6), None, config).history]

    assert losses(3, global_seed=1) == losses(3, global_seed=2)
    assert losses(3, global_seed=1) != losses(4, global_seed=1)


def test_an_unknown_monitor_is_refused_before_training(tmp_path):
    m = make_model("classifier", "sigmoid", num_layers=1)
    data = make_dataset(6)
    with pytest.raises(ValueError, match=r"monitor 'nll' is not a metric of the default"):
        fit(m, data, data, _config(), out_dir=tmp_path, monitor="nll")
    assert not (tmp_path / "last.pt").exists()  # nothing trained, nothing to lose

    def custom(model, data, config):
        return {"error": 0.5}

    with pytest.raises(ValueError, match=r"monitor 'nll_mean_gates' is not among .*'error'"):
        fit(m, data, data, _config(), evaluate=custom)
