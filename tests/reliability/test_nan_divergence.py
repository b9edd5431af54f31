"""NaN and divergence: every non-finite value stops the run naming where it appeared, and the
last checkpoint stays the last good one."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from pyro_betalstm.infer import DivergenceError, NonFiniteLossError, fit
from pyro_betalstm.io import safe_torch_load
from pyro_betalstm.models import SequenceClassifier

from ._tiny import make_config, make_data, make_model


class _Poisonable(SequenceClassifier):
    """Logits become NaN once ``poisoned`` is set (by the evaluate callback after epoch 1)."""

    poisoned = False

    def predict_from_run(self, run, batch):
        logits = super().predict_from_run(run, batch)
        return logits * float("nan") if self.poisoned else logits


def _poisonable() -> _Poisonable:
    return _Poisonable(make_model().lstm, 3)


def _poison_after_epoch_1(model, data, config):
    model.poisoned = True
    return {"nll_mean_gates": 1.0}


def _assert_last_good(out, epoch: int) -> None:
    ckpt = safe_torch_load(out / "last.pt")
    assert ckpt["epoch"] == epoch
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("validation", [True, False])
def test_nan_loss_names_epoch_and_step_with_or_without_pyro_validation(tmp_path, validation):
    pyro.enable_validation(validation)
    m, data = _poisonable(), make_data()
    with pytest.raises(
        NonFiniteLossError,
        match=r"at epoch 2, step 1; training stopped, last good checkpoint: .*last\.pt",
    ):
        fit(m, data, data, make_config(), out_dir=tmp_path, evaluate=_poison_after_epoch_1)
    _assert_last_good(tmp_path, 1)


@pytest.mark.parametrize("clip_norm", [None, 5.0])
def test_nan_gradient_is_caught_with_or_without_clipping(tmp_path, clip_norm):
    m, data = make_model(), make_data()
    hooks = []

    def evaluate(model, valid, config):  # from epoch 2 on, one parameter's gradient is NaN
        if not hooks:
            hooks.append(next(model.parameters()).register_hook(lambda g: g * math.nan))
        return {"nll_mean_gates": 1.0}

    with pytest.raises(NonFiniteLossError, match=r"gradient norm is nan at epoch 2, step 1"):
        fit(m, data, data, make_config(clip_norm=clip_norm), out_dir=tmp_path, evaluate=evaluate)
    _assert_last_good(tmp_path, 1)


def test_nan_before_any_checkpoint_says_so(tmp_path):
    m = _poisonable()
    m.poisoned = True
    with pytest.raises(
        NonFiniteLossError, match="epoch 1, step 1; training stopped, no checkpoint written yet"
    ):
        fit(m, make_data(), None, make_config(), out_dir=tmp_path)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_validation_metric_stops_the_run(tmp_path, bad):
    values = iter([1.0, bad])
    with pytest.raises(
        NonFiniteLossError,
        match=r"validation metrics \{'nll_mean_gates': (nan|inf)\} after epoch 2",
    ):
        fit(
            make_model(),
            make_data(),
            make_data(),
            make_config(),
            out_dir=tmp_path,
            evaluate=lambda m, d, c: {"nll_mean_gates": next(values)},
        )
    _assert_last_good(tmp_path, 1)


def test_divergence_guard(tmp_path):
    values = iter([2.0, 1.5, 1e31])  # NLL per frame 1e31: the run diverged
    config = make_config(divergence_threshold=100.0)
    with pytest.raises(
        DivergenceError,
        match=r"valid_nll_mean_gates is 1e\+31 after epoch 3, above divergence_threshold 100",
    ):
        fit(
            make_model(),
            make_data(),
            make_data(),
            config,
            out_dir=tmp_path,
            evaluate=lambda m, d, c: {"nll_mean_gates": next(values)},
        )
    _assert_last_good(tmp_path, 2)
