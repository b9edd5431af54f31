"""ArviZ's own functions work on the InferenceData the library writes (issue 12, item 7).

``az.summary``, ``az.plot_posterior``, ``az.plot_pair``, ``az.plot_forest``, ``az.plot_trace``
(of the ELBO history) and ``az.plot_ppc`` (of next-frame draws of a music model) are called as a
user would, with the library's dims and coords, and what they return is checked.
"""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import xarray as xr

from pyro_betalstm import diagnostics as diag
from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import TrainConfig, fit, sample_posterior_predictive
from pyro_betalstm.models import NextStepBernoulli, SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.testing.tasks import TASK_CASES

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)
    import arviz as az

KEYS, HIDDEN, LAYERS, DRAWS, EPOCHS = 5, 3, 2, 40, 2
LENGTHS = (7, 5, 4)  # frames per song; inputs and targets have one step fewer
STEPS = max(LENGTHS) - 1
GATE_DIMS = ("chain", "draw", "sequence", "time", "layer", "unit")


def make_songs() -> SequenceDataset:
    g = torch.Generator().manual_seed(0)
    songs = [(torch.rand(n, KEYS, generator=g) < 0.3).float() for n in LENGTHS]
    return SequenceDataset([s[:-1] for s in songs], [s[1:] for s in songs], name="toy")


def make_model(gate: str) -> NextStepBernoulli:
    torch.manual_seed(0)
    return NextStepBernoulli(
        StochasticLSTM(KEYS, HIDDEN, LAYERS, gate=gate, batch_first=True), KEYS
    )


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """A bBLSTM next-frame model trained for two epochs, and its InferenceData."""
    out = tmp_path_factory.mktemp("arviz_music")
    model, data = make_model("bivariate"), make_songs()
    config = TrainConfig(num_epochs=EPOCHS, batch_size=3, progress=False, seed_globals=True)
    fit(model, data, None, config, out_dir=out)
    batch = data.batch(range(len(data)))
    torch.manual_seed(1)
    idata = diag.gate_inference_data(model, batch, DRAWS, history=out)
    return {"model": model, "batch": batch, "idata": idata, "history": diag.load_history(out)}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def one_unit(**extra) -> dict:
    """Coords of one (sequence, time, layer, unit) element, every step valid."""
    return {"sequence": [0], "time": [2], "layer": [1], "unit": [0], **extra}


# ----- dims and coords ---------------------------------------------------------------------------
def test_named_dims_and_coords(music):
    idata = music["idata"]
    for group in (idata.posterior, idata.prior):
        assert group["gates"].dims == (*GATE_DIMS, "gate")
        assert group["input_gate"].dims == GATE_DIMS  # the per-gate variables stay
        np.testing.assert_array_equal(
            group["gates"].sel(gate="forget").values, group["forget_gate"].values
        )
    post = idata.posterior
    assert post["gate"].values.tolist() == ["input", "forget"]
    assert post["sequence"].values.tolist() == list(range(len(LENGTHS)))
    assert post["time"].values.tolist() == list(range(STEPS))
    assert post["layer"].values.tolist() == list(range(LAYERS))
    assert post["unit"].values.tolist() == list(range(HIDDEN))
    # the posterior predictive has the observed targets' dims and coords
    observed, predicted = idata.observed_data["targets"], idata.posterior_predictive["targets"]
    assert observed.dims == ("sequence", "time", "output")
    assert predicted.dims == ("chain", "draw", *observed.dims)
    assert predicted.sizes["draw"] == DRAWS and predicted["output"].values.tolist() == list(
        range(KEYS)
    )
    # the training history is a trace: one chain whose draws are the epochs
    stats = idata.sample_stats
    assert stats["elbo"].dims == ("chain", "draw")
    assert stats["draw"].values.tolist() == stats["epoch"].values.tolist() == [1, 2]


def test_gate_coords_survive_netcdf(music, tmp_path):
    loaded = diag.from_netcdf(diag.to_netcdf(music["idata"], tmp_path / "gates.nc"))
    assert loaded.posterior["gate"].values.tolist() == ["input", "forget"]
    assert loaded.sample_stats["epoch"].values.tolist() == [1, 2]
    assert loaded.posterior_predictive.equals(music["idata"].posterior_predictive)


# ----- az.summary --------------------------------------------------------------------------------
def test_az_summary_rows_are_named_by_coords(music):
    idata = music["idata"]
    coords = {"sequence": [0], "time": [0, 1], "layer": [1], "unit": [2]}
    table = az.summary(idata, var_names=["gates"], coords=coords, kind="stats", round_to="none")
    assert table.index.tolist() == [
        "gates[0, 0, 1, 2, input]",
        "gates[0, 0, 1, 2, forget]",
        "gates[0, 1, 1, 2, input]",
        "gates[0, 1, 1, 2, forget]",
    ]
    assert table.columns.tolist() == ["mean", "sd", "hdi_3%", "hdi_97%"]
    # the row is the statistic of that element's draws
    draws = idata.posterior["forget_gate"].sel(sequence=0, time=1, layer=1, unit=2).values
    assert table.loc["gates[0, 1, 1, 2, forget]", "mean"] == pytest.approx(draws.mean())
    assert ((table["hdi_3%"] >= 0) & (table["hdi_97%"] <= 1)).all()
    # with ArviZ's dim labeller the rows name the dims too
    named = az.summary(
        idata,
        var_names=["input_gate"],
        coords=one_unit(),
        kind="stats",
        labeller=az.labels.DimCoordLabeller(),
    )
    assert named.index.tolist() == ["input_gate[sequence: 0, time: 2, layer: 1, unit: 0]"]


# ----- plots -------------------------------------------------------------------------------------
def test_az_plot_posterior(music):
    axes = az.plot_posterior(music["idata"], var_names=["gates"], coords=one_unit(unit=[0, 1]))
    axes = np.ravel(axes)
    assert len(axes) == 4  # two units x two gates
    titles = [ax.get_title() for ax in axes]
    assert sum("input" in t for t in titles) == sum("forget" in t for t in titles) == 2
    assert all(t.startswith("gates") for t in titles)
    assert all(ax.lines for ax in axes)  # a density line on each


def test_az_plot_pair_of_the_two_gates(music):
    ax = az.plot_pair(music["idata"], var_names=["gates"], coords=one_unit())
    assert "input" in ax.get_xlabel() and "forget" in ax.get_ylabel()
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(points) == DRAWS
    expected = music["idata"].posterior["gates"].sel(sequence=0, time=2, layer=1, unit=0)
    np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(expected.sel(gate="input").values[0]))


def test_az_plot_forest(music):
    valid_steps = list(range(LENGTHS[0] - 1))
    coords = {"sequence": [0], "time": valid_steps, "layer": [0], "unit": [1]}
    axes = az.plot_forest(music["idata"], var_names=["forget_gate"], coords=coords, combined=True)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert len(labels) == len(valid_steps)
    assert all("forget_gate" in label or label.startswith("[") for label in labels)
    assert "HDI" in axes[0].get_title()


def test_az_plot_trace_of_the_elbo_history(music):
    stats = music["idata"].sample_stats
    axes = az.plot_trace(stats, var_names=["elbo"])
    assert axes.shape == (1, 2)
    trace = axes[0, 1].lines[0]
    assert trace.get_xdata().tolist() == [1, 2]  # epochs
    expected = [-r["train_loss"] for r in music["history"]]
    np.testing.assert_allclose(trace.get_ydata(), expected)
    assert az.plot_trace(stats, var_names=["elbo", "train_loss"]).shape == (2, 2)


def test_az_plot_ppc_of_music_frames(music):
    idata = music["idata"]
    ax = az.plot_ppc(idata, num_pp_samples=10, random_seed=0)
    labels = [line.get_label() for line in ax.lines]
    assert {"Observed", "Posterior predictive"} <= set(labels)
    assert labels.count("Posterior predictive") == 1 and "targets" in ax.get_xlabel()
    observed = ax.lines[labels.index("Observed")].get_ydata()
    assert np.isfinite(observed).all() and observed.max() > 0  # the NaN padding is left out
    predicted = idata.posterior_predictive["targets"].values
    valid = idata.constant_data["mask"].values.astype(bool)
    at_valid = predicted[:, :, valid]
    assert set(np.unique(at_valid)) <= {0.0, 1.0}  # sampled frames are binary
    assert np.isnan(predicted[:, :, ~valid]).all()  # padded steps are missing, as observed


def test_sampled_frames_follow_the_predicted_probabilities():
    # Deterministic gates: every draw has the same key probabilities p, so the mean of S = 500
    # sampled frames estimates p with standard error <= 0.5 / sqrt(500) = 0.022; 0.1 is 4.5
    # standard errors, missed by chance with probability < 1e-3 over the 65 valid (step, key)
    # cells (and the seed is fixed). Sampling 1 - p would miss by up to 0.38 here.
    model, batch = make_model("sigmoid"), make_songs().batch([0, 1, 2])
    torch.manual_seed(0)
    draws = sample_posterior_predictive(model, batch, 500)
    with torch.no_grad():
        p = torch.sigmoid(model.predict_from_run(model.run_network(batch)[-1], batch))
    assert draws["targets"].shape == (500, *batch.targets.shape)
    assert (draws["input_gate"] == draws["input_gate"][0]).all()
    valid = batch.step_mask()
    error = (draws["targets"].mean(0) - p)[valid].abs().max()
    assert error < 0.1
    with pytest.raises(ValueError, match="num_samples"):
        sample_posterior_predictive(model, batch, 0)


def test_deterministic_gates_keep_one_posterior_draw_but_all_predictive_draws():
    model, batch = make_model("sigmoid"), make_songs().batch([0, 1])
    idata = diag.gate_inference_data(model, batch, 6)
    assert idata.posterior.sizes["draw"] == 1 and "prior" not in idata.groups()
    assert idata.posterior_predictive.sizes["draw"] == 6
    assert az.plot_ppc(idata, num_pp_samples=3).lines
    without = diag.gate_inference_data(model, batch, 6, posterior_predictive=False)
    assert "posterior_predictive" not in without.groups()


def test_classifier_predictive_has_one_label_per_sequence():
    torch.manual_seed(0)
    lstm = StochasticLSTM(KEYS, HIDDEN, 1, gate="bivariate5", batch_first=True)
    model = SequenceClassifier(lstm, 3)
    data = make_songs()
    batch = SequenceDataset(data.inputs, torch.tensor([0, 2, 1])).batch([0, 1, 2])
    idata = diag.gate_inference_data(model, batch, 5, prior_samples=0)
    assert idata.observed_data["targets"].dims == ("sequence",)
    assert idata.posterior_predictive["targets"].dims == ("chain", "draw", "sequence")
    values = idata.posterior_predictive["targets"].values
    assert set(np.unique(values)) <= {0, 1, 2}


def test_older_files_with_an_epoch_dim_still_render():
    # sample_stats as written before the trace layout: one 'epoch' dim
    old = az.from_dict(posterior={"x": np.zeros((1, 2))})
    history = xr.Dataset({"elbo": ("epoch", [-3.0, -2.0])}, coords={"epoch": [1, 2]})
    old.add_groups(sample_stats=history)
    ax = diag.plot_elbo_history(old)
    assert ax.lines[0].get_xdata().tolist() == [1, 2]
    assert ax.lines[0].get_ydata().tolist() == [-3.0, -2.0]


@pytest.mark.parametrize("case", list(TASK_CASES.values()), ids=lambda case: case.name)
def test_every_task_model_has_a_posterior_predictive(case):
    model, batch = case.make_model("bivariate"), case.make_batch()
    torch.manual_seed(0)
    idata = diag.gate_inference_data(model, batch, 3, prior_samples=0)
    observed, predicted = idata.observed_data["targets"], idata.posterior_predictive["targets"]
    assert predicted.dims == ("chain", "draw", *observed.dims)
    assert predicted.shape[2:] == observed.shape
    # a draw is missing exactly where the observation is (padded steps)
    np.testing.assert_array_equal(np.isnan(predicted.values[0, 0]), np.isnan(observed.values))
