"""Arguments that used to be dropped without a word: a PyroOptim's callable arguments and
TrainConfig.lr beside it, fit's recurrence resetting compile_cell, dropout with one layer,
output_dropout in the classifiers and the caption decoder, and a device that does not exist."""

from __future__ import annotations

import warnings

import pyro.optim
import pytest
import torch

from pyro_betalstm.infer import TrainConfig, fit
from pyro_betalstm.infer.config import checked_device
from pyro_betalstm.models import CaptionDecoder, SequenceClassifier, TextClassifier
from pyro_betalstm.nn import StochasticLSTM, set_recurrence
from pyro_betalstm.nn import step as step_functions

from .helpers import make_dataset, make_model


def _config(**kw) -> TrainConfig:
    base = dict(num_epochs=1, batch_size=4, progress=False, seed=0, seed_globals=True)
    base.update(kw)
    return TrainConfig(**base)


def _fit_refused(tmp_path, match: str, **config):
    """fit refuses the config before it trains or writes a checkpoint."""
    with pytest.raises(ValueError, match=match):
        fit(make_model(num_layers=1), make_dataset(4), None, _config(**config), out_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()


# ----- a pyro.optim optimizer --------------------------------------------------------------------
def test_a_pyro_optimizer_with_per_parameter_arguments_is_refused(tmp_path):
    optimizer = pyro.optim.Adam(lambda module_name, param_name: {"lr": 0.5})
    _fit_refused(
        tmp_path, r"pyro\.optim\.Adam was given its arguments as a callable", optimizer=optimizer
    )


@pytest.mark.parametrize("setting", [{"lr": 0.01}, {"weight_decay": 1e-4}], ids=["lr", "wd"])
def test_lr_or_weight_decay_beside_a_pyro_optimizer_is_refused(tmp_path, setting):
    ((key, value),) = setting.items()
    optimizer = pyro.optim.Adam({"lr": 0.05})
    match = rf"{key}={value!r} was given with the optimizer pyro\.optim\.Adam.*set '{key}' in"
    _fit_refused(tmp_path, match, optimizer=optimizer, **setting)
    with pytest.raises(ValueError, match=match):  # the config's own check says it too
        _config(optimizer=optimizer, **setting).check()


def test_a_pyro_optimizers_dict_sets_lr_and_weight_decay(tmp_path):
    optimizer = pyro.optim.Adam({"lr": 0.05, "weight_decay": 0.25})
    fit(make_model(num_layers=1), make_dataset(4), None, _config(optimizer=optimizer), tmp_path)
    group = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.25)


@pytest.mark.parametrize(
    "optimizer, match",
    [
        (
            pyro.optim.Adam({"lr": 0.05}, {"clip_norm": 1.0}),
            r"clip_args .* use TrainConfig\.clip_norm",
        ),
        (
            pyro.optim.ExponentialLR(
                {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.01}, "gamma": 0.5}
            ),
            r"learning-rate scheduler \(ExponentialLR\) is not supported",
        ),
    ],
    ids=["clip_args", "scheduler"],
)
def test_what_fit_would_drop_from_a_pyro_optimizer_is_refused(tmp_path, optimizer, match):
    _fit_refused(tmp_path, match, optimizer=optimizer)


# ----- TrainConfig.recurrence ---------------------------------------------------------------------
def test_fit_recurrence_keeps_each_layers_compile_cell_and_max_graphs(monkeypatch):
    # the layers say compile_cell=True without compiling anything (no compiler needed)
    monkeypatch.setattr(step_functions, "_compile", lambda fn: fn)
    model = make_model("classifier", "sigmoid", num_layers=2)
    first, second = model.lstm.layers
    first.set_recurrence("auto", max_graphs=3, compile_cell=True)
    second.set_recurrence("eager", max_graphs=5)
    # "auto" on the CPU runs eagerly, from graphs on a GPU
    fit(model, make_dataset(4), None, _config(recurrence="auto"))
    assert (first.recurrence, first.compile_cell, first.graphs.max_graphs) == ("auto", True, 3)
    assert (second.recurrence, second.compile_cell, second.graphs.max_graphs) == ("auto", False, 5)


def test_set_recurrence_changes_only_what_it_is_given(monkeypatch):
    # a call that names the recurrence alone keeps compile_cell and max_graphs (it used to
    # turn compile_cell off and reset max_graphs); named, they change
    monkeypatch.setattr(step_functions, "_compile", lambda fn: fn)
    model = make_model("classifier", "sigmoid", num_layers=1)
    (layer,) = model.lstm.layers
    model.lstm.set_recurrence("auto", max_graphs=3, compile_cell=True)
    set_recurrence(model, "eager")
    model.lstm.set_recurrence("auto")
    assert (layer.recurrence, layer.compile_cell, layer.graphs.max_graphs) == ("auto", True, 3)
    set_recurrence(model, "eager", compile_cell=False)
    assert (layer.recurrence, layer.compile_cell, layer.max_graphs) == ("eager", False, 3)


# ----- dropout with one layer ---------------------------------------------------------------------
def test_dropout_with_one_layer_and_no_output_dropout_warns():
    with pytest.warns(UserWarning, match=r"dropout=0\.3 has no effect with num_layers=1"):
        StochasticLSTM(3, 4, 1, dropout=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # where dropout does act, nothing warns
        StochasticLSTM(3, 4, 2, dropout=0.3)
        StochasticLSTM(3, 4, 1, dropout=0.3, output_dropout=True)
        StochasticLSTM(3, 4, 1)


# ----- a prior given to deterministic gates ------------------------------------------------------
def test_a_prior_given_to_deterministic_gates_warns():
    from pyro_betalstm.experiment import model_prior
    from pyro_betalstm.models import SequenceClassifier

    for gate in ("sigmoid", "coupled", "gumbel", "constant", "prior_noise"):
        with pytest.warns(UserWarning, match=rf"the '{gate}' gate family is deterministic: .*"
                          r"the prior 'gamma' is ignored"):  # fmt: skip
            SequenceClassifier(StochasticLSTM(3, 4, 1, gate=gate, batch_first=True), 3, "gamma")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no prior, or latent gates: nothing to warn about
        SequenceClassifier(StochasticLSTM(3, 4, 1, gate="sigmoid", batch_first=True), 3)
        SequenceClassifier(StochasticLSTM(3, 4, 1, gate="bivariate", batch_first=True), 3, "gamma")
        # the examples build every variant through model_prior, which gives None here
        lstm = StochasticLSTM(3, 4, 1, gate="sigmoid", batch_first=True)
        SequenceClassifier(lstm, 3, model_prior({"prior": "gamma"}, lstm))


def test_a_kl_weight_given_to_deterministic_gates_warns():
    from pyro_betalstm.models import NextStepBernoulli, SequenceClassifier

    for gate in ("sigmoid", "coupled", "gumbel", "constant", "prior_noise"):
        with pytest.warns(UserWarning, match=rf"the '{gate}' gate family is deterministic: .*"
                          r"kl_weight=0.5 is ignored"):  # fmt: skip
            SequenceClassifier(StochasticLSTM(3, 4, 1, gate=gate, batch_first=True), 3,
                               kl_weight=0.5)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default, 0, or latent gates: nothing to warn about
        for kl_weight, expected in ((None, 1.0), (0.0, 0.0)):
            lstm = StochasticLSTM(3, 4, 1, gate="sigmoid", batch_first=True)
            assert NextStepBernoulli(lstm, 3, kl_weight=kl_weight).kl_weight == expected
        latent = StochasticLSTM(3, 4, 1, gate="bivariate", batch_first=True)
        assert SequenceClassifier(latent, 3).kl_weight == 1.0  # None means the paper's 1
        assert SequenceClassifier(latent, 3, kl_weight=0.25).kl_weight == 0.25


# ----- output_dropout in the task heads -----------------------------------------------------------
def _top_run(lstm: StochasticLSTM):
    torch.manual_seed(0)
    return lstm.run(torch.randn(4, 5, lstm.input_size), gate_mode="mean")[-1]


def _heads(output_dropout: bool):
    def lstm():
        return StochasticLSTM(
            3, 16, 2, gate="sigmoid", batch_first=True, dropout=0.5, output_dropout=output_dropout
        )

    return {
        "classifier": (SequenceClassifier(lstm(), 3), lambda m, run: m.output(run.h_n)),
        "text": (TextClassifier(lstm(), 10, 3, dropout=0.0), lambda m, run: m.output(run.h_n)),
        "caption": (CaptionDecoder(lstm(), 10), lambda m, run: m.output(run.outputs)),
    }


@pytest.mark.parametrize("head", ["classifier", "text", "caption"])
def test_output_dropout_drops_what_the_head_reads_while_training(head):
    model, undropped = _heads(output_dropout=True)[head]
    run = _top_run(model.lstm)
    model.train()
    assert not torch.equal(model.predict_from_run(run, None), undropped(model, run))
    model.eval()
    assert torch.equal(model.predict_from_run(run, None), undropped(model, run))
    plain, undropped = _heads(output_dropout=False)[head]
    plain.train()
    run = _top_run(plain.lstm)
    assert torch.equal(plain.predict_from_run(run, None), undropped(plain, run))


# ----- the device ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu:3", "cuda:99", "cpu:x", "meta"])
def test_a_device_that_does_not_exist_is_refused_before_training(tmp_path, device):
    _fit_refused(tmp_path, rf"device .*'{device}'", device=device)


def test_cpu_0_trains_as_the_cpu_and_reloads_its_best_checkpoint(tmp_path):
    # torch accepts "cpu:0" but cannot map a checkpoint onto it: it used to fail only when the
    # best checkpoint was loaded back at the end of the run
    assert checked_device("cpu:0") == torch.device("cpu")
    valid = make_dataset(4)
    result = fit(
        make_model(num_layers=1), make_dataset(4), valid, _config(device="cpu:0"), out_dir=tmp_path
    )
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
    assert len(result.history) == 1
