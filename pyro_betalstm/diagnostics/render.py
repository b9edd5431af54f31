"""Render the gate diagnostics of any saved example run, from its files alone.

Every example saves ``results.json`` and ``gate_draws.pt`` (:mod:`pyro_betalstm.results`): the
posterior gate draws on a few test sequences, the prior draws of latent gate families and,
for text, the words of each sequence. Rendering reads those files (and the training history
``metrics.json``) and nothing else: no model is rebuilt and no data set is reloaded, so the
same code serves music, sentence classification, MNIST and captioning runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_path, remove_temporaries, safe_torch_load
from ..results import (
    DIAGNOSTICS_DIR,
    GATE_DRAWS_FILE,
    history_path,
    load_results,
    record_kind,
    remove_render_files,
)
from . import arviz_io, plots
from .draws import load_history
from .summary import gate_correlation, summarize_gates

#: Entries of a draw dict with dims (draw, sequence, time, ...).
DRAW_ENTRIES = ("input_gate", "forget_gate", "alpha", "log_basis")

#: The test sequences and steps per sequence :func:`render_run` shows by default.
NUM_SEQUENCES, MAX_STEPS = 2, 64
#: The draws the examples' own render uses (``examples/polyphonic_music.py``: 20, 10 for a
#: ``--smoke`` run, without the basis): the command line's defaults, so that rendering a run
#: again writes the files the example wrote.
EXAMPLE_NUM_SAMPLES, SMOKE_NUM_SAMPLES = 20, 10


@dataclass
class SavedRun:
    """A finished run as its files describe it."""

    run_dir: Path
    results: dict[str, Any]
    draws: dict[str, Any]

    @property
    def label(self) -> str:
        return self.results.get("paper_name") or self.results.get("variant") or self.run_dir.name

    @property
    def is_latent(self) -> bool:
        """Whether the gates are random (the guide's concentrations ``alpha`` were saved)."""
        return "alpha" in self.draws


def load_gate_draws(run_dir: str | Path) -> dict[str, Any]:
    """The ``gate_draws.pt`` of a run (read with ``weights_only=True``), checked for the
    entries rendering needs."""
    path = Path(run_dir) / GATE_DRAWS_FILE
    draws = safe_torch_load(path, what="gate draws file")
    if not isinstance(draws, dict) or not {"input_gate", "forget_gate", "mask"} <= set(draws):
        raise ValueError(f"{path}: expected a dict with input_gate, forget_gate and mask")
    return draws


def load_saved_run(run_dir: str | Path) -> SavedRun:
    """The results record and gate draws of a finished run of any example."""
    run_dir = Path(run_dir)
    return SavedRun(run_dir, load_results(run_dir), load_gate_draws(run_dir))


def example_num_samples(run: SavedRun) -> int:
    """The draws the example's own render uses for ``run`` (:data:`EXAMPLE_NUM_SAMPLES`)."""
    return SMOKE_NUM_SAMPLES if run.results.get("protocol") == "smoke" else EXAMPLE_NUM_SAMPLES


def check_comparable(run: SavedRun, other: SavedRun) -> None:
    """``ValueError`` unless ``other`` is a run of the same task and data set as ``run`` (the
    gate histograms of :func:`render_run` compare the two on the same test sequences)."""
    for what, key in (("task", record_kind), ("data set", lambda r: r["dataset"])):
        mine, theirs = key(run.results), key(other.results)
        if mine != theirs:
            raise ValueError(
                f"cannot compare {run.run_dir} ({what} {mine}) with {other.run_dir} ({what} "
                f"{theirs}): the run to compare with must be of the same task and data set"
            )


def _check_sizes(num_samples, num_sequences, max_steps) -> None:
    for name, value in (("num_samples", num_samples), ("num_sequences", num_sequences)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1 (None: whole sequences), got {max_steps}")


def select_draws(
    draws: dict[str, Any],
    num_samples: int | None = None,
    num_sequences: int | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """The first ``num_samples`` draws of the first ``num_sequences`` sequences, cut to
    ``max_steps`` steps (None: all). Other entries (``prior``, ``tokens``) are left out."""
    draw, seq, step = slice(num_samples), slice(num_sequences), slice(max_steps)
    out = {k: draws[k][draw, seq, step] for k in DRAW_ENTRIES if k in draws}
    out["mask"] = draws["mask"][seq, step]
    return out


def run_inference_data(
    run: SavedRun,
    num_samples: int | None = None,
    num_sequences: int | None = None,
    max_steps: int | None = None,
    include_basis: bool = True,
) -> arviz_io.az.InferenceData:  # arviz is imported by arviz_io alone
    """An ArviZ ``InferenceData`` of a saved run: its posterior (one draw for deterministic
    gates, whose draws are identical) and prior draws, and its training history.

    :param run: the run, from :func:`load_saved_run`.
    :param num_samples: keep the first draws only (None: all saved; one for deterministic
        gates).
    :param num_sequences: keep the first sequences only (None: all saved).
    :param max_steps: keep the first steps of each sequence only (None: all).
    :param include_basis: False leaves out ``alpha`` and ``log_basis``.
    """
    posterior = select_draws(
        run.draws, num_samples if run.is_latent else 1, num_sequences, max_steps
    )
    prior = None
    if "prior" in run.draws:
        prior = select_draws(run.draws["prior"], num_samples, num_sequences, max_steps)
    if not include_basis:
        for draws in (posterior, prior or {}):
            draws.pop("alpha", None)
            draws.pop("log_basis", None)
    history_file = history_path(run.run_dir, run.results)
    settings = run.results["settings"]
    attrs = {
        "run_dir": str(run.run_dir),
        "example": record_kind(run.results),
        "dataset": run.results["dataset"],
        "variant": run.label,
        "seed": run.results.get("seed"),
        "gate_family": settings.get("gate", "unknown"),
        "prior": settings.get("prior", "gamma") if run.is_latent else "none",
        "kl_weight": float(settings.get("kl_weight", 0.0)),
        "num_layers": int(posterior["input_gate"].shape[3]),
        "hidden_size": int(posterior["input_gate"].shape[4]),
    }
    return arviz_io.to_inference_data(
        posterior,
        prior=prior,
        history=load_history(history_file) if history_file.exists() else None,
        attrs=attrs,
    )


def _tokens(run: SavedRun, max_steps: int | None) -> list[str] | None:
    """The words of the first sequence, one per valid step shown (text runs only)."""
    tokens = run.draws.get("tokens")
    return None if not tokens else list(tokens[0])[:max_steps]


def render_run(
    run_dir: str | Path | SavedRun,
    out_dir: str | Path | None = None,
    num_samples: int = 100,
    compare: str | Path | SavedRun | None = None,
    num_sequences: int = NUM_SEQUENCES,
    max_steps: int | None = MAX_STEPS,
    include_basis: bool = True,
) -> list[Path]:
    """Write ``inference_data.nc``, ``gate_summary.csv`` and the PNG plots of a saved run.

    Uses at most ``num_samples`` of the saved draws, on the first ``num_sequences`` test
    sequences cut to ``max_steps`` steps. Every figure is titled with the run (variant, gate
    family, seed, posterior draws: ``pyro_betalstm.diagnostics.plots.run_title``).
    Plots: the training objective (the ELBO for latent gates with KL weight 1), posterior vs prior
    densities (latent gate families), the joint ``(i, f)`` density of the unit with the
    strongest correlation, time x unit heat maps of both gates for every layer, the gates per
    word (text runs), and with ``compare`` (another run directory of the same task, e.g. a
    sigmoid LSTM) the gate-value histograms of both models. Returns the paths written (default
    ``out_dir``: ``RUN_DIR/diagnostics``); the :data:`~pyro_betalstm.results.RENDER_FILES` of
    an earlier render in that folder are deleted first. ``run_dir`` and ``compare`` may be run
    directories or loaded runs (:func:`load_saved_run`).

    Raises ``ValueError`` for sizes below 1 and for a ``compare`` run of another task or data
    set (``check_comparable``). The examples render with ``num_samples=20`` (10 for a
    ``--smoke`` run) and ``include_basis=False``.
    """
    _check_sizes(num_samples, num_sequences, max_steps)
    run = run_dir if isinstance(run_dir, SavedRun) else load_saved_run(run_dir)
    other = None
    if compare is not None:
        other = compare if isinstance(compare, SavedRun) else load_saved_run(compare)
        check_comparable(run, other)
    out = Path(out_dir) if out_dir is not None else run.run_dir / DIAGNOSTICS_DIR
    idata = run_inference_data(run, num_samples, num_sequences, max_steps, include_basis)
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)  # what a render killed mid-write left in its own folder
    remove_render_files(out)  # an earlier render's; other files in out are left alone
    written = [arviz_io.to_netcdf(idata, out / "inference_data.nc")]
    atomic_write_path(out / "gate_summary.csv", summarize_gates(idata).to_csv)
    written.append(out / "gate_summary.csv")

    title = plots.run_title(idata)

    def save(ax, name: str, figure_title: str | None = title) -> None:
        if figure_title:
            plots.figure_title(ax, figure_title)
        plots.save_figure(ax, out / name)
        written.append(out / name)

    if "sample_stats" in idata.groups():
        save(plots.plot_elbo_history(idata), "elbo_history.png")
    layer0 = np.nan_to_num(np.abs(gate_correlation(idata)[0]), nan=-1.0)
    strongest = [int(u) for u in np.argsort(-layer0)[:3]]
    if "prior" in idata.groups():
        why = (
            f"units {', '.join(map(str, strongest))}: the {len(strongest)} of layer 0 with the "
            "strongest posterior |corr(i, f)|"
        )
        axes = plots.plot_prior_posterior(idata, layer=0, units=strongest, suptitle=why)
        save(axes, "prior_posterior.png")
    save(plots.plot_joint_gates(idata, layer=0, unit=strongest[0]), "joint_if.png")
    length = int(np.asarray(run.draws["mask"][0]).sum())  # the whole first sequence
    save(plots.plot_gate_heatmaps(idata, sequence=0, total_steps=length), "gate_heatmap.png")
    tokens = _tokens(run, max_steps)
    if tokens is not None:
        save(plots.plot_token_gates(idata, tokens, sequence=0), "token_gates.png")
    if other is not None:
        shown = (num_sequences, max_steps)
        axes, labels = _compare(run, idata, other, num_samples, *shown)
        both = f"{labels[0]} vs {labels[1]}: gate values on the same test sequences"
        save(axes, "gate_histograms.png", both)
    return written


def _compare(
    run: SavedRun,
    idata,
    other: SavedRun,
    num_samples: int,
    num_sequences: int | None,
    max_steps: int | None,
):
    """Gate-value histograms of two runs on the same sequences and steps, the deterministic
    one (the usual baseline) first; returns the axes and the two labels in that order."""
    labels = (run.label, other.label)
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} ({run.run_dir.name})", f"{labels[1]} ({other.run_dir.name})")
    samples = num_samples if other.is_latent else 1
    other_draws = select_draws(other.draws, samples, num_sequences, max_steps)
    pair = [(idata, labels[0], run.is_latent), (other_draws, labels[1], other.is_latent)]
    pair.sort(key=lambda p: p[2])
    labels = (pair[0][1], pair[1][1])
    return plots.plot_gate_histograms(pair[0][0], pair[1][0], labels=labels), labels
