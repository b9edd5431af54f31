"""Render the diagnostics of a saved polyphonic-music run (``examples/polyphonic_music.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..batch import SequenceBatch
from ..data.music import (
    BENCHMARK_FILES,
    PianoRolls,
    build_jsb_music21,
    load_benchmark,
    load_piano_rolls,
)
from ..infer.train import load_best
from ..io import atomic_write_path, read_json
from ..models import NextStepBernoulli
from ..nn import StochasticLSTM
from . import arviz_io, plots
from .draws import gate_inference_data, load_history, posterior_gate_draws
from .summary import gate_correlation, summarize_gates

NUM_KEYS = 88


def _resolve(source: str, run_dir: Path) -> Path | None:
    """A data path as recorded (possibly relative to the directory the run started in)."""
    path = Path(source)
    if path.is_absolute():
        return path if path.exists() else None
    for base in (Path.cwd(), run_dir, *run_dir.resolve().parents):
        if (base / path).exists():
            return base / path
    return None


def load_run_data(
    results: dict, run_dir: str | Path, data_dir: str | Path | None = None
) -> PianoRolls:
    """Reload the piano rolls a run trained on, from its ``results.json`` record.

    ``data_source`` is tried first (a ``.mat``/``.pickle`` file, or the ``jsb-music21`` cache
    ``.npz``); if it cannot be found, a benchmark is read from ``data_dir``.
    """
    run_dir = Path(run_dir)
    name, source = results.get("dataset"), results.get("data_source") or ""
    path = _resolve(source, run_dir) if source else None
    if path is not None and path.suffix == ".npz":
        match = re.fullmatch(r"jsb_music21_seed(\d+)(?:_first(\d+))?\.npz", path.name)
        if match is None:
            raise ValueError(f"unrecognised jsb-music21 cache file name: {path}")
        first = match.group(2)
        return build_jsb_music21(
            path.parent,
            seed=int(match.group(1)),
            progress=False,
            max_chorales=int(first) if first else None,
        )
    if path is not None:
        return load_piano_rolls(path, name=name)
    if data_dir is not None and name in BENCHMARK_FILES:
        return load_benchmark(name, data_dir)
    raise FileNotFoundError(
        f"cannot find the data of run {run_dir} (dataset {name!r}, data_source {source!r}); "
        "pass data_dir (--data-dir) with the benchmark files"
    )


def load_music_run(run_dir: str | Path, device: str = "cpu") -> tuple[NextStepBernoulli, dict]:
    """The model of a saved music run (best checkpoint) and its ``results.json`` record."""
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.exists():
        raise FileNotFoundError(f"{results_path} not found: is {run_dir} a finished music run?")
    results = read_json(results_path, "results record")
    if not isinstance(results, dict) or not isinstance(results.get("settings"), dict):
        raise ValueError(f"{results_path}: expected a results record with a 'settings' dict")
    s = results["settings"]
    lstm = StochasticLSTM(
        NUM_KEYS, s["hidden"], s["layers"], gate=s["gate"], batch_first=True, dropout=s["dropout"]
    )
    model = NextStepBernoulli(lstm, NUM_KEYS, prior=s["prior"], kl_weight=s["kl_weight"])
    load_best(model, run_dir, device)
    model.eval()
    return model, results


def _truncate(batch: SequenceBatch, max_steps: int | None) -> SequenceBatch:
    if max_steps is None or batch.inputs.shape[1] <= max_steps:
        return batch
    lengths = batch.lengths.clamp(max=max_steps) if batch.lengths is not None else None
    if lengths is not None and bool((lengths == max_steps).all()):
        lengths = None
    targets = batch.targets[:, :max_steps] if batch.targets is not None else None
    return SequenceBatch(batch.inputs[:, :max_steps], targets, lengths, batch.dataset_size)


def _label(results: dict, run_dir: Path) -> str:
    return results.get("paper_name") or results.get("variant") or run_dir.name


def render_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    num_samples: int = 100,
    compare: str | Path | None = None,
    num_sequences: int = 2,
    max_steps: int | None = 64,
    data_dir: str | Path | None = None,
    include_basis: bool = True,
    seed: int = 0,
) -> list[Path]:
    """Write ``inference_data.nc``, ``gate_summary.csv`` and the PNG plots of a music run.

    Gates are drawn on the first ``num_sequences`` test sequences (cut to ``max_steps``
    frames): ``num_samples`` posterior and prior draws. Plots: the training ELBO, posterior
    vs prior densities (latent gate families), the joint ``(i, f)`` density of the unit with
    the strongest correlation, time x unit heat maps of both gates for every layer, and with
    ``compare`` (another run directory, e.g. a sigmoid LSTM) the gate-value histograms of both
    models on the same sequences. The per-token plot needs text and the gradient plot needs
    gradients, so neither is drawn for music. Returns the paths written (default
    ``out_dir``: ``RUN_DIR/diagnostics``).
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    model, results = load_music_run(run_dir)
    rolls = load_run_data(results, run_dir, data_dir)
    test = rolls.next_step("test")
    batch = _truncate(test.batch(range(min(num_sequences, len(test)))), max_steps)
    torch.manual_seed(seed)
    history = load_history(run_dir) if (run_dir / "metrics.json").exists() else None
    label = _label(results, run_dir)
    idata = gate_inference_data(
        model,
        batch,
        num_samples,
        history=history,
        include_basis=include_basis,
        attrs={"run_dir": str(run_dir), "dataset": results.get("dataset"), "variant": label},
    )
    written = [arviz_io.to_netcdf(idata, out / "inference_data.nc")]
    summary = summarize_gates(idata)
    atomic_write_path(out / "gate_summary.csv", summary.to_csv)
    written.append(out / "gate_summary.csv")

    def save(ax, name: str) -> None:
        plots.save_figure(ax, out / name)
        written.append(out / name)

    if history:
        save(plots.plot_elbo_history(idata), "elbo_history.png")
    corr = gate_correlation(idata)  # (layer, unit)
    layer0 = np.nan_to_num(np.abs(corr[0]), nan=-1.0)
    strongest = [int(u) for u in np.argsort(-layer0)[:3]]
    if model.family.is_latent:
        save(plots.plot_prior_posterior(idata, layer=0, units=strongest), "prior_posterior.png")
    save(plots.plot_joint_gates(idata, layer=0, unit=strongest[0]), "joint_if.png")
    import matplotlib.pyplot as plt

    L = model.lstm.num_layers
    fig, axes = plt.subplots(2, L, figsize=(6.5 * L, 7.0), squeeze=False)
    for k in range(L):
        for row, gate in enumerate(("input_gate", "forget_gate")):
            plots.plot_gate_heatmap(idata, sequence=0, layer=k, gate=gate, ax=axes[row, k])
    save(axes, "gate_heatmap.png")
    if compare is not None:
        compare = Path(compare)
        other, other_results = load_music_run(compare)
        other_draws = posterior_gate_draws(other, batch, num_samples)
        labels = (_label(results, run_dir), _label(other_results, compare))
        if labels[0] == labels[1]:
            labels = (f"{labels[0]} ({run_dir.name})", f"{labels[1]} ({compare.name})")
        # the deterministic model goes first (it is the usual baseline)
        pair = [(idata, labels[0], model), (other_draws, labels[1], other)]
        pair.sort(key=lambda p: p[2].family.is_latent)
        save(
            plots.plot_gate_histograms(pair[0][0], pair[1][0], labels=(pair[0][1], pair[1][1])),
            "gate_histograms.png",
        )
    return written
