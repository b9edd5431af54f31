"""pyro_betalstm.diagnostics: InferenceData conversion, netCDF, summaries, plots and the CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from pyro_betalstm import diagnostics as diag
from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import TrainConfig, fit, sample_gates
from pyro_betalstm.models import NextStepBernoulli
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
MUSIC_DIR = SHARED_DATA / "music"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEYS, HIDDEN, LAYERS, DRAWS = 5, 4, 2, 30
LENGTHS = (9, 6, 4)  # inputs have one step fewer; sequence 0 is the longest


def make_data() -> SequenceDataset:
    g = torch.Generator().manual_seed(0)
    seqs = [(torch.rand(n, KEYS, generator=g) < 0.3).float() for n in LENGTHS]
    return SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs], name="toy")


def train(gate: str, out: Path):
    torch.manual_seed(0)
    model = NextStepBernoulli(
        StochasticLSTM(KEYS, HIDDEN, LAYERS, gate=gate, batch_first=True), KEYS
    )
    data = make_data()
    fit(
        model,
        data,
        None,
        TrainConfig(num_epochs=1, batch_size=3, progress=False, seed_globals=True),
        out_dir=out,
    )
    return model, data.batch(range(len(data)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = {}
    for gate in ("bivariate", "sigmoid"):
        out = tmp_path_factory.mktemp(gate)
        model, batch = train(gate, out)
        torch.manual_seed(1)
        idata = diag.gate_inference_data(model, batch, DRAWS, history=out)
        runs[gate] = {"model": model, "batch": batch, "out": out, "idata": idata}
    return runs


def check_png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


# ----- InferenceData -------------------------------------------------------------------------------
def test_inference_data_groups_dims_coords(trained):
    idata = trained["bivariate"]["idata"]
    assert set(idata.groups()) == {
        "posterior",
        "prior",
        "posterior_predictive",
        "observed_data",
        "constant_data",
        "sample_stats",
    }
    post = idata.posterior
    dims = ("chain", "draw", "sequence", "time", "layer", "unit")
    T = max(LENGTHS) - 1
    for group in (idata.posterior, idata.prior):
        for name in ("input_gate", "forget_gate"):
            assert group[name].dims == dims
            assert group[name].shape == (1, DRAWS, len(LENGTHS), T, LAYERS, HIDDEN)
        assert group["log_basis"].dims == (*dims, "basis")
        assert group.sizes["basis"] == 3  # the bivariate family's Olkin-Liu basis
    assert post["alpha"].dims == (*dims, "basis")
    assert "alpha" not in idata.prior
    assert post["chain"].values.tolist() == [0]
    assert post["draw"].values.tolist() == list(range(DRAWS))
    assert post["layer"].values.tolist() == list(range(LAYERS))
    assert idata.observed_data["targets"].dims == ("sequence", "time", "output")
    assert idata.constant_data["mask"].sum() == sum(n - 1 for n in LENGTHS)
    stats = idata.sample_stats
    # the history is a trace: one chain, a draw per epoch (az.plot_trace draws it)
    assert stats["elbo"].dims == ("chain", "draw") and stats["epoch"].values.tolist() == [1]
    history = diag.load_history(trained["bivariate"]["out"])
    assert stats["elbo"].values[0] == pytest.approx(-history[0]["train_loss"])
    assert post.attrs["gate_family"] == "bivariate"


def test_padded_steps_are_nan(trained):
    idata = trained["bivariate"]["idata"]
    for s, n in enumerate(LENGTHS):
        valid = n - 1
        for group in (idata.posterior, idata.prior):
            for name in ("input_gate", "forget_gate", "log_basis"):
                values = group[name].isel(sequence=s).values
                assert np.isfinite(values[:, :, :valid]).all()
                assert np.isnan(values[:, :, valid:]).all()
        targets = idata.observed_data["targets"].isel(sequence=s).values
        assert np.isfinite(targets[:valid]).all() and np.isnan(targets[valid:]).all()
    gates = idata.posterior["input_gate"].values
    assert np.nanmin(gates) >= 0 and np.nanmax(gates) <= 1


def test_deterministic_family_has_one_draw_and_no_prior(trained):
    run = trained["sigmoid"]
    idata = run["idata"]
    assert "prior" not in idata.groups() and "alpha" not in idata.posterior
    assert idata.posterior.sizes["draw"] == 1
    with pytest.raises(ValueError, match="deterministic"):
        diag.prior_gate_draws(run["model"], run["batch"], 2)


@pytest.mark.parametrize("prior", ["hierarchical", "conditional"])
def test_prior_draws_of_other_priors(prior):
    torch.manual_seed(0)
    lstm = StochasticLSTM(KEYS, HIDDEN, 1, gate="bivariate5", batch_first=True)
    model = NextStepBernoulli(lstm, KEYS, prior=prior)
    batch = make_data().batch([0, 1])
    draws = diag.prior_gate_draws(model, batch, 3)
    assert draws["input_gate"].shape == (3, 2, max(LENGTHS) - 1, 1, HIDDEN)
    assert draws["log_basis"].shape[-1] == 5
    assert torch.isfinite(draws["forget_gate"]).all()


def test_netcdf_round_trip(trained, tmp_path):
    idata = trained["bivariate"]["idata"]
    path = diag.to_netcdf(idata, tmp_path / "gates.nc")
    loaded = diag.from_netcdf(path)
    assert set(loaded.groups()) == set(idata.groups())
    for group in idata.groups():
        assert getattr(loaded, group).equals(getattr(idata, group)), group
    assert loaded.posterior.attrs["gate_family"] == "bivariate"


def test_draw_dicts_and_inference_data_agree(trained):
    run = trained["bivariate"]
    draws = sample_gates(run["model"], run["batch"], 4)
    idata = diag.to_inference_data(draws)
    from_dict = diag.gate_arrays(draws)
    from_idata = diag.gate_arrays(idata)
    for name in ("input_gate", "forget_gate", "alpha", "log_basis", "mask"):
        np.testing.assert_array_equal(from_dict[name], from_idata[name])
    with pytest.raises(ValueError, match="posterior draws"):
        diag.gate_arrays(draws, "prior")


# ----- summaries -----------------------------------------------------------------------------------
def test_summaries(trained):
    table = diag.summarize_gates(trained["bivariate"]["idata"], hdi_prob=0.9)
    assert table.shape[0] == LAYERS * HIDDEN
    assert table.index.names == ["layer", "unit"]
    assert table["corr_if"].between(-1, 1).all()
    for g in ("i", "f"):
        assert (table[f"hdi_lower_{g}"] <= table[f"hdi_upper_{g}"]).all()
        assert table[f"mean_{g}"].between(0, 1).all() and (table[f"sd_{g}"] > 0).all()
        assert (table[f"ess_{g}"] > 0).all()
    prior_table = diag.summarize_gates(trained["bivariate"]["idata"], group="prior")
    assert prior_table["corr_if"].between(-1, 1).all()
    corr = diag.gate_correlation(trained["bivariate"]["idata"], over="draws")
    assert corr.shape == (len(LENGTHS), max(LENGTHS) - 1, LAYERS, HIDDEN)
    assert np.isnan(corr[-1, -1]).all()  # a padded step
    # one draw: no ESS, but the pooled correlation over steps exists
    sigmoid = diag.summarize_gates(trained["sigmoid"]["idata"])
    assert sigmoid["ess_i"].isna().all() and sigmoid["corr_if"].between(-1, 1).all()


# ----- plots ---------------------------------------------------------------------------------------------
def test_plot_prior_posterior(trained, tmp_path):
    axes = diag.plot_prior_posterior(trained["bivariate"]["idata"], layer=1, units=[0, 2])
    assert len(axes) == 2
    prior = trained["bivariate"]["idata"].posterior.attrs["prior"]  # e.g. GammaPrior
    steps = sum(n - 1 for n in LENGTHS)  # sequences of unequal length: their valid steps
    for ax, label in zip(axes, ("input gate", "forget gate"), strict=True):
        assert len(ax.patches) == 4  # posterior and prior steps for two units
        assert label in ax.get_title() and ax.get_xlabel() and ax.get_ylabel() == "density"
        # the title names the prior and what is pooled
        assert f"posterior vs {prior}" in ax.get_title()
        assert f"pooled over {DRAWS} draws x {steps} steps of {len(LENGTHS)} sequences" in (
            ax.get_title()
        )
        assert ax.get_legend() is not None
    # sequences of one length: draws x sequences x steps
    ax = diag.plot_prior_posterior(trained["bivariate"]["idata"], sequences=[1], steps=[0, 1])[0]
    assert f"pooled over {DRAWS} draws x 1 sequence x 2 steps" in ax.get_title()
    matplotlib.pyplot.close(ax.figure)
    c = diag.compute_prior_posterior(trained["bivariate"]["idata"], units=[1], bins=20)
    widths = np.diff(c["edges"])
    for group in ("posterior", "prior"):
        assert c[group]["input_gate"].shape == (1, 20)
        assert (c[group]["forget_gate"] * widths).sum() == pytest.approx(1.0)
    diag.save_figure(axes, tmp_path / "a.png")
    check_png(tmp_path / "a.png")


def test_plot_joint_gates(trained, tmp_path):
    idata = trained["bivariate"]["idata"]
    ax = diag.plot_joint_gates(idata, layer=0, unit=1)
    assert any(isinstance(c, matplotlib.collections.QuadMesh) for c in ax.collections)
    corr = diag.gate_correlation(idata)[0, 1]
    assert f"corr(i, f) = {corr:.2f}" in ax.get_title()
    assert ax.get_xlabel() == "input gate i" and ax.get_ylabel() == "forget gate f"
    c = diag.compute_joint_gates(idata, layer=0, unit=1)
    assert c["counts"].sum() == DRAWS * sum(n - 1 for n in LENGTHS)
    diag.save_figure(ax, tmp_path / "b.png")
    check_png(tmp_path / "b.png")
    # many counts a bin: a log colour scale, and the colour bar says so
    ax = diag.plot_joint_gates(idata, layer=0, unit=1, bins=3)
    assert ax.get_title().startswith("posterior (i, f), layer 0")
    bar = ax.collections[0].colorbar
    assert bar.ax.get_ylabel() == "count (draws x steps) (log scale)"
    matplotlib.pyplot.close(ax.figure)
    # one deterministic draw: no "posterior" or "draws", a linear scale with whole counts
    ax = diag.plot_joint_gates(trained["sigmoid"]["idata"], layer=0, unit=1)
    assert ax.get_title().startswith("deterministic gates (i, f), layer 0, unit 1")
    bar = ax.collections[0].colorbar
    assert bar.ax.get_ylabel() == "count (steps)"
    ticks = bar.get_ticks()
    assert len(ticks) and np.all(ticks == np.round(ticks))
    matplotlib.pyplot.close(ax.figure)


def test_plot_token_gates(trained, tmp_path):
    idata = trained["bivariate"]["idata"]
    # one token per valid step of sequence 0 (8 steps)
    tokens = "a film that never quite finds its feet".split()
    fig, ax = matplotlib.pyplot.subplots()
    out = diag.plot_token_gates(idata, tokens, sequence=0, ax=ax)
    assert out is ax
    assert len(ax.patches) == 2 * len(tokens)
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert len(fig.axes) == 2  # the correlation colour bar
    assert "corr(i, f)" in ax.get_title() and ax.get_legend() is not None
    c = diag.compute_token_gates(idata, sequence=0)
    assert np.all(np.abs(c["corr"]) <= 1) and c["input_mean"].shape == (len(tokens),)
    with pytest.raises(ValueError, match="tokens"):
        diag.plot_token_gates(idata, tokens[:3], sequence=0)
    diag.save_figure(ax, tmp_path / "c.png")
    check_png(tmp_path / "c.png")


def test_plot_gate_heatmap(trained, tmp_path):
    idata = trained["bivariate"]["idata"]
    ax = diag.plot_gate_heatmap(idata, sequence=1, layer=1, gate="input_gate")
    assert len(ax.images) == 1
    assert ax.images[0].get_array().shape == (HIDDEN, LENGTHS[1] - 1)  # valid steps only
    assert ax.get_xlabel() == "time step" and ax.get_ylabel() == "unit" and ax.get_title()
    assert len(ax.figure.axes) == 2  # colour bar
    assert "steps" not in ax.get_title()  # the whole sequence
    assert ax.images[0].colorbar.ax.get_ylabel() == "mean of input gate i over draws"
    sd = diag.compute_gate_heatmap(idata, sequence=0, gate="forget_gate", stat="sd")
    assert (sd > 0).all()
    diag.save_figure(ax, tmp_path / "d.png")
    check_png(tmp_path / "d.png")
    # a sequence cut at the steps shown (8 valid steps of 20): the title says which
    axes = diag.plot_gate_heatmaps(idata, sequence=0, total_steps=20)
    assert all(a.get_title().endswith("steps 0\u20137 of 20") for a in axes.ravel())
    matplotlib.pyplot.close(axes[0, 0].figure)
    # deterministic gates: one draw, nothing "over draws"
    ax = diag.plot_gate_heatmap(trained["sigmoid"]["idata"], sequence=0, gate="forget_gate")
    assert ax.get_title() == "forget gate f (deterministic), sequence 0, layer 0"
    assert ax.images[0].colorbar.ax.get_ylabel() == "forget gate f"
    matplotlib.pyplot.close(ax.figure)


def test_plot_gate_histograms(trained, tmp_path):
    sigmoid, bblstm = trained["sigmoid"]["idata"], trained["bivariate"]["idata"]
    raw = sample_gates(trained["bivariate"]["model"], trained["bivariate"]["batch"], 3)
    axes = diag.plot_gate_histograms(sigmoid, raw, labels=("LSTM", "bBLSTM"))
    for ax in axes:
        assert len(ax.patches) == 4  # filled and outlined histogram per model
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        # each model's draws in its label
        assert texts[0].startswith("LSTM (1 draw): skew")
        assert texts[1].startswith("bBLSTM (3 draws): skew")
        assert "modes at" in texts[0]
    c = diag.compute_gate_histograms({"LSTM": sigmoid, "bBLSTM": bblstm}, layer=0)
    assert np.isfinite(c["models"]["bBLSTM"]["input_gate"]["skew"])
    assert len(c["models"]["LSTM"]["forget_gate"]["modes"]) >= 1
    assert c["models"]["bBLSTM"]["draws"] == DRAWS and c["models"]["LSTM"]["draws"] == 1
    diag.save_figure(axes, tmp_path / "e.png")
    check_png(tmp_path / "e.png")


def test_gate_histograms_of_a_flat_density():
    """A near-flat density: no modes marked, and a skew just below 0 printed "+0.00"."""
    grid = (np.arange(2014) + 0.5) / 2014  # uniform on (0, 1), symmetric
    values = np.concatenate([grid, [0.97, 0.98]]).reshape(2, 3, 7, 1, 48)  # 2 draws
    flat = {"input_gate": values, "forget_gate": values[:, :, :, :, ::-1]}
    skew = diag.compute_gate_histograms({"flat": flat})["models"]["flat"]["input_gate"]["skew"]
    assert -0.005 < skew < 0  # would print "-0.00"
    peaked = {k: np.clip(0.5 + 0.05 * (v - 0.5), 0, 1) for k, v in flat.items()}
    axes = diag.plot_gate_histograms(peaked, flat, labels=("peaked", "flat"))
    c = diag.compute_gate_histograms({"flat": flat})["models"]["flat"]
    assert len(c["input_gate"]["modes"]) == 0 and len(c["forget_gate"]["modes"]) == 0
    texts = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert texts[1] == "flat (2 draws): skew +0.00; no clear mode"
    assert "modes at" in texts[0]
    assert len(axes[0].lines) == 1  # a mode marker for the peaked model only
    matplotlib.pyplot.close(axes[0].figure)


def test_plot_gradient_magnitudes(tmp_path):
    rng = np.random.default_rng(0)
    grads = {"LSTM": rng.lognormal(-5, 1, 500), "bBLSTM": -rng.lognormal(-2, 1, (10, 50))}
    ax = diag.plot_gradient_magnitudes(grads)
    assert ax.get_xscale() == "log" and len(ax.patches) == 4
    c = diag.compute_gradient_histograms(grads)
    assert c["median"]["bBLSTM"] > c["median"]["LSTM"] > 0  # absolute values are taken
    assert sum(c["fraction"]["LSTM"]) == pytest.approx(1.0)
    assert c["below_floor"]["LSTM"] == 0.0
    tiny = {"x": np.concatenate([rng.lognormal(-5, 1, 90), np.zeros(5), np.full(5, 1e-30)])}
    c = diag.compute_gradient_histograms(tiny, floor=1e-12)
    assert c["below_floor"]["x"] == pytest.approx(0.1) and c["edges"][0] >= 1e-12
    diag.save_figure(ax, tmp_path / "f.png")
    check_png(tmp_path / "f.png")


def test_plot_gradient_history(tmp_path):
    ax = diag.plot_gradient_history({"LSTM": [1e-3, 5e-4, 2e-4], "bBLSTM(5G)": [3e-3, 2e-3, 1e-3]})
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    diag.save_figure(ax, tmp_path / "h.png")
    check_png(tmp_path / "h.png")
    with pytest.raises(ValueError, match="empty"):
        diag.plot_gradient_history({})


def test_plot_elbo_history(trained, tmp_path):
    ax = diag.plot_elbo_history(trained["sigmoid"]["idata"])
    assert len(ax.lines) == 1 and ax.get_xlabel() == "epoch"
    # deterministic gates: the loss is a negative log-likelihood, not an ELBO
    assert "ELBO" not in ax.get_title() + ax.get_ylabel()
    assert ax.get_title().startswith("training log-likelihood (-loss)")
    assert "deterministic gates" in ax.get_title()
    assert ax.get_ylabel() == "log-likelihood (nats per training sequence)"
    # one epoch: a whole-number tick, not 0.945 ... 1.050
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1"]
    bblstm = diag.plot_elbo_history(trained["bivariate"]["idata"])  # KL weight 1
    assert bblstm.get_title() == "training ELBO (-loss)"
    assert bblstm.get_ylabel() == "ELBO (nats per training sequence)"
    raw = sample_gates(trained["bivariate"]["model"], trained["bivariate"]["batch"], 2)
    for weights, expected in (
        ([0.001], "KL weight 0.001: log-likelihood - 0.001 x KL"),
        ([0.0], "KL weight 0: no KL term"),
        ([0.5, 1.0], "KL weight annealed from 0.5 to 1"),
    ):
        history = [
            {"epoch": e + 1, "train_loss": 5.0 - e, "kl_weight": w} for e, w in enumerate(weights)
        ]
        idata = diag.to_inference_data(raw, history=history, attrs={"prior": "gamma"})
        other = diag.plot_elbo_history(idata)
        assert other.get_title().endswith(expected) and "ELBO" not in other.get_title()
        labels = [t.get_text() for t in other.get_xticklabels()]
        assert labels == [str(e + 1) for e in range(len(weights))]
        matplotlib.pyplot.close(other.figure)
    matplotlib.pyplot.close(bblstm.figure)
    diag.save_figure(ax, tmp_path / "g.png")
    check_png(tmp_path / "g.png")
    with pytest.raises(ValueError, match="history"):
        diag.plot_elbo_history(
            diag.to_inference_data(
                sample_gates(trained["sigmoid"]["model"], trained["sigmoid"]["batch"], 1)
            )
        )


def test_only_diagnostics_imports_arviz_and_matplotlib():
    package = ROOT / "pyro_betalstm"
    pattern = re.compile(r"^\s*(import|from)\s+(arviz|matplotlib)\b", re.M)
    offenders = []
    for path in package.rglob("*.py"):
        found = {m.group(2) for m in pattern.finditer(path.read_text())}
        rel = path.relative_to(package).as_posix()
        if "arviz" in found and rel != "diagnostics/arviz_io.py":
            offenders.append(rel)
        if "matplotlib" in found and not rel.startswith("diagnostics/"):
            offenders.append(rel)
    assert not offenders


# ----- the command line on saved runs ---------------------------------------------------------------
def load_music_example():
    return load_script(ROOT / "examples" / "polyphonic_music.py")


@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
def test_cli_on_saved_music_runs(tmp_path, capsys):
    from pyro_betalstm.diagnostics.__main__ import main

    music = load_music_example()
    runs = {}
    for variant in ("bblstm", "lstm"):
        runs[variant] = tmp_path / variant
        args = ["--smoke", "--no-progress", "--dataset", "jsb", "--data-dir", str(MUSIC_DIR)]
        music.main(music.parse_args([*args, "--variant", variant, "--out-dir", str(runs[variant])]))
    # the defaults are the example's own render's: rendering again writes the same files
    own = runs["bblstm"] / "diagnostics"
    before = {p.name: p.read_bytes() for p in own.iterdir() if p.suffix != ".nc"}
    own_idata = diag.from_netcdf(own / "inference_data.nc")  # read into memory
    again = main([str(runs["bblstm"])])
    capsys.readouterr()
    assert {p.name for p in again} == {*before, "inference_data.nc"}
    assert {p.name: p.read_bytes() for p in again if p.suffix != ".nc"} == before
    idata = diag.from_netcdf(own / "inference_data.nc")
    assert idata.posterior.sizes["draw"] == 10 and "alpha" not in idata.posterior  # smoke run
    for group in ("posterior", "prior"):
        assert idata[group].drop_attrs().identical(own_idata[group].drop_attrs())
    out = tmp_path / "diagnostics"
    written = main(
        [
            str(runs["bblstm"]),
            "--out",
            str(out),
            "--num-samples",
            "6",
            "--max-steps",
            "12",
            "--compare",
            str(runs["lstm"]),
        ]
    )
    printed = capsys.readouterr().out
    names = {p.name for p in written}
    assert names == {
        "inference_data.nc",
        "gate_summary.csv",
        "elbo_history.png",
        "prior_posterior.png",
        "joint_if.png",
        "gate_heatmap.png",
        "gate_histograms.png",
    }
    for path in written:
        assert f"wrote {path}" in printed
        if path.suffix == ".png":
            check_png(path)
    idata = diag.from_netcdf(out / "inference_data.nc")  # from the saved draws only
    assert {"posterior", "prior", "sample_stats"} <= set(idata.groups())
    assert idata.posterior.sizes["draw"] == 6 and idata.posterior.sizes["time"] <= 12
    assert idata.posterior.sizes["unit"] == 8  # the smoke run's hidden size
    # a deterministic run alone: no prior plot
    alone = main(
        [
            str(runs["lstm"]),
            "--out",
            str(tmp_path / "lstm_diag"),
            "--num-samples",
            "3",
            "--max-steps",
            "8",
            "--no-basis",
        ]
    )
    assert "prior_posterior.png" not in {p.name for p in alone}


def test_importing_the_diagnostics_keeps_the_users_matplotlib_backend():
    # a notebook's inline backend (here svg, set as a notebook sets it, by MPLBACKEND) must
    # survive `import pyro_betalstm.diagnostics`; use_file_backend, which the command line and
    # the scripts call, switches to Agg
    import subprocess
    import sys

    code = (
        "import matplotlib, pyro_betalstm.diagnostics as d; print(matplotlib.get_backend()); "
        "d.use_file_backend(); print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [name.lower() for name in out] == ["svg", "agg"]


def test_run_title_names_an_overridden_family_once(trained):
    from pyro_betalstm.diagnostics.plots import run_title

    # a --gate override's paper name already says its gates ("... with chained gates"): the
    # title used to repeat them ("..., chained gates, chained gates, seed 0")
    run = trained["bivariate"]
    named = {"paper_name": "bBLSTM(5G+p) with bivariate gates", "seed": 0}
    idata = diag.gate_inference_data(run["model"], run["batch"], DRAWS, attrs=named)
    title = run_title(idata)
    assert title.startswith("bBLSTM(5G+p) with bivariate gates, seed 0: ")
    assert title.count("bivariate gates") == 1
