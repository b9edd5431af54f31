"""Gate plots. Each ``compute_*`` function returns arrays; each ``plot_*`` function calls it and
draws on ``ax`` (created when None) and returns the axes.

``data`` arguments accept an ArviZ ``InferenceData`` (see
:func:`~pyro_betalstm.diagnostics.gate_inference_data`) or a draw dict as returned by
:func:`pyro_betalstm.infer.sample_gates`. Figures are not closed here: close them with
``plt.close(ax.figure)`` once saved.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

# No backend is chosen here: importing this module leaves the user's (a notebook's inline
# backend, a desktop's window) as it is. The command line and the example scripts, which only
# write files, choose Agg themselves (use_file_backend).
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..io import atomic_write_path
from . import arviz_io
from .summary import SHORT, pooled_corr

GATE_LABELS = {"input_gate": "input gate i", "forget_gate": "forget gate f"}
#: :func:`~pyro_betalstm.diagnostics.plot_joint_gates` uses a log colour scale when a bin holds
#: more values than this.
JOINT_LOG_ABOVE = 30
#: :func:`_modes` finds no mode in a density whose smoothed peak is below this times its mean.
FLAT_PEAK_RATIO = 1.4


def use_file_backend() -> None:
    """Draw with matplotlib's Agg backend, which writes files and opens no window: for a
    program that only saves plots (the command line, the example scripts), not for a library
    call, which keeps the backend its user chose."""
    plt.switch_backend("Agg")


# ----- helpers ---------------------------------------------------------------------------------
def _axes(ax, n: int, figsize=None) -> np.ndarray:
    """``n`` axes: a new row of subplots when ``ax`` is None, else ``ax`` checked."""
    if ax is None:
        _, axes = plt.subplots(1, n, figsize=figsize or (4.2 * n, 3.6), squeeze=False)
        return axes[0]
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
    if axes.size != n:
        raise ValueError(f"this plot needs {n} axes, got {axes.size}")
    return axes


def _select(array: np.ndarray, sequences, steps) -> np.ndarray:
    """Restrict a ``(sample, sequence, time, ...)`` array to ``sequences`` and ``steps``."""
    if sequences is not None:
        array = (
            array[:, np.atleast_1d(sequences)]
            if not isinstance(sequences, slice)
            else array[:, sequences]
        )
    if steps is not None:
        array = (
            array[:, :, np.atleast_1d(steps)]
            if not isinstance(steps, slice)
            else array[:, :, steps]
        )
    return array


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _density(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = _finite(values)
    if values.size == 0:
        return np.zeros(len(edges) - 1)
    counts, _ = np.histogram(values, bins=edges)
    return counts / (values.size * np.diff(edges))


def _valid_length(mask: np.ndarray, sequence: int) -> int:
    return int(mask[sequence].sum())


def _attrs(data) -> Mapping:
    """The attributes an ``InferenceData`` records (gate family, prior...); none for a dict."""
    if arviz_io.is_inference_data(data) and "posterior" in data.groups():
        return data.posterior.attrs
    return {}


def _deterministic(data) -> bool:
    """Whether the posterior gates are known to be deterministic: attributes that record no
    prior (``prior="none"``, as :func:`gate_inference_data` and the render write for
    sigmoid-like gate families) and no guide concentrations (``alpha``). A single draw alone
    does not say so: a latent run may be rendered with one draw."""
    return _attrs(data).get("prior") == "none" and "alpha" not in data.posterior


def _draws(n: int) -> str:
    return f"{n} draw{'' if n == 1 else 's'}"


def _number(value: float, digits: int = 2) -> str:
    """``value`` with a sign and ``digits`` decimals, never a negative zero ("-0.00")."""
    return f"{round(float(value), digits) + 0.0:+.{digits}f}"


def run_title(data) -> str:
    """A figure title naming the run an ``InferenceData`` was built from: its variant (paper
    name), gate family, seed (when recorded) and posterior draws, e.g.
    ``"bBLSTM(5G+p), bivariate5 gates, seed 0: 10 posterior draws"`` or
    ``"LSTM, sigmoid gates, seed 0: deterministic (1 draw)"``."""
    attrs = _attrs(data)
    arrays = arviz_io.gate_arrays(data, "posterior")
    n = arrays["input_gate"].shape[0]
    name = attrs.get("variant") or attrs.get("paper_name") or "gate model"
    family = attrs.get("gate_family")
    # a name that says its gates already ("... with chained gates", a --gate override) is
    # not followed by them again
    said = family and f"with {family} gates" in str(name)
    parts = [str(name)] + ([f"{family} gates"] if family and not said else [])
    if attrs.get("seed") is not None:
        parts.append(f"seed {attrs['seed']}")
    if _deterministic(data):
        draws = f"deterministic ({_draws(n)})"
    else:
        draws = f"{n} posterior draw{'' if n == 1 else 's'}"
    return f"{', '.join(parts)}: {draws}"


def figure_title(ax, title: str) -> None:
    """Put ``title`` over the figure of ``ax`` (an axes or an array of axes), above the title
    the figure already has, if any. A title too long for the figure (about 9 characters an
    inch) is broken after its first colon, then wrapped."""
    fig = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()[0].figure
    existing = fig.get_suptitle()
    width = max(20, int(9 * fig.get_figwidth()))
    if len(title) > width:
        head, colon, tail = title.partition(": ")
        lines = [head + colon.rstrip(), tail] if colon else [title]
        title = "\n".join(textwrap.fill(line, width) for line in lines)
    fig.suptitle(f"{title}\n{existing}" if existing else title)


# ----- (a) posterior vs prior densities ----------------------------------------------------------
def compute_prior_posterior(
    data, layer: int = 0, units: Sequence[int] = (0,), sequences=None, steps=None, bins: int = 40
) -> dict:
    """Histogram densities of ``i`` and ``f`` of ``units`` of ``layer`` under the posterior and
    the prior, pooled over draws, valid steps of ``sequences`` (default all) and ``steps``
    (time indices or a slice; default all).

    Returns ``edges`` ``(bins + 1,)``, ``units``, ``posterior`` / ``prior`` dicts mapping
    each gate to ``(len(units), bins)`` densities (``prior`` is None without a prior group),
    ``layer``, and ``pooled``: per group, ``(draws, valid steps of each sequence)``.

    :param data: an ``InferenceData`` (:func:`gate_inference_data`), a draw dict of
        :func:`~pyro_betalstm.infer.sample_gates`, or ``{"posterior": draws, "prior": draws}``;
        the posterior is required, the prior is read when there is one.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    units = [int(u) for u in np.atleast_1d(units)]
    result = {"edges": edges, "units": units, "layer": layer, "posterior": None, "prior": None}
    result["pooled"] = {}
    for group in ("posterior", "prior"):
        try:
            arrays = arviz_io.gate_arrays(data, group)
        except ValueError:
            if group == "posterior":
                raise
            continue
        shown = _select(arrays["input_gate"], sequences, steps)[..., layer, units[0]]
        lengths = tuple(int(v) for v in np.isfinite(shown[0]).sum(axis=-1))  # NaN when padded
        result["pooled"][group] = (shown.shape[0], lengths)
        result[group] = {
            name: np.stack(
                [
                    _density(_select(arrays[name], sequences, steps)[..., layer, u], edges)
                    for u in units
                ]
            )
            for name in SHORT
        }
    return result


def plot_prior_posterior(
    data,
    layer: int = 0,
    units: Sequence[int] = (0,),
    sequences=None,
    steps=None,
    bins=40,
    ax=None,
    suptitle: str | None = None,
) -> np.ndarray:
    """Posterior (solid) against prior (dashed) density of ``i`` (left) and ``f`` (right) for
    ``units`` of ``layer``. ``ax``: two axes or None; ``suptitle``: a title over both (e.g. why
    these units). The axes titles name the prior (the ``prior`` attribute of an
    ``InferenceData``, when recorded) and what is pooled. Returns the two axes.

    :param data: as for :func:`compute_prior_posterior`, which takes the other arguments too.
    :param ax: two axes (left, right) to draw on; None: a new figure with two (a ValueError
        for another number of axes).
    """
    c = compute_prior_posterior(data, layer, units, sequences, steps, bins)
    axes = _axes(ax, 2, figsize=(10.0, 4.8))
    prior = str(_attrs(data).get("prior") or "")
    prior = "prior" if not prior else prior if prior.lower().endswith("prior") else f"{prior} prior"
    n, lengths = c["pooled"]["posterior"]
    draws = _draws(n)
    if "prior" in c["pooled"] and c["pooled"]["prior"][0] != n:
        draws = f"{n} posterior / {c['pooled']['prior'][0]} prior draws"
    if len(set(lengths)) == 1:
        steps_text = (
            f"{len(lengths)} sequence{'' if len(lengths) == 1 else 's'} x {lengths[0]} steps"
        )
    else:
        steps_text = f"{sum(lengths)} steps of {len(lengths)} sequences"
    pooled = f"pooled over {draws} x {steps_text}"
    for a, name in zip(axes, SHORT, strict=True):
        for j, unit in enumerate(c["units"]):
            colour = f"C{j % 10}"
            a.stairs(
                c["posterior"][name][j],
                c["edges"],
                color=colour,
                lw=1.8,
                label=f"unit {unit} posterior",
            )
            if c["prior"] is not None:
                a.stairs(
                    c["prior"][name][j],
                    c["edges"],
                    color=colour,
                    lw=1.2,
                    ls="--",
                    label=f"unit {unit} prior",
                )
        a.set_xlim(0, 1)
        a.set_xlabel(GATE_LABELS[name])
        a.set_ylabel("density")
        vs = prior if c["prior"] is not None else "prior (none recorded)"
        a.set_title(f"{GATE_LABELS[name]}, layer {layer}: posterior vs {vs}\n{pooled}")
        a.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    if suptitle:
        axes[0].figure.suptitle(suptitle)
    return axes


# ----- (b) joint (i, f) density --------------------------------------------------------------------
def compute_joint_gates(
    data,
    layer: int = 0,
    unit: int = 0,
    sequences=None,
    steps=None,
    bins: int = 30,
    group="posterior",
) -> dict:
    """2-D histogram of ``(i, f)`` of one unit over draws and valid steps, and its correlation.

    Returns ``counts`` ``(bins, bins)`` (first index: ``i`` bins), ``edges``, ``corr``,
    ``draws`` (the number of draws), ``deterministic`` (see ``_deterministic``) and the
    ``layer`` and ``unit`` given.

    :param data: an ``InferenceData`` (:func:`gate_inference_data`), a draw dict of
        :func:`~pyro_betalstm.infer.sample_gates`, or ``{"posterior": draws, "prior": draws}``.
    :param group: ``"posterior"`` or ``"prior"``: the ``InferenceData`` group or dict key
        to read (a plain draw dict holds posterior draws); a ValueError when ``data`` has none.
    """
    arrays = arviz_io.gate_arrays(data, group)
    draws = arrays["input_gate"].shape[0]
    deterministic = group == "posterior" and _deterministic(data)
    i = _select(arrays["input_gate"], sequences, steps)[..., layer, unit].ravel()
    f = _select(arrays["forget_gate"], sequences, steps)[..., layer, unit].ravel()
    ok = np.isfinite(i) & np.isfinite(f)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _, _ = np.histogram2d(i[ok], f[ok], bins=[edges, edges])
    corr = float(pooled_corr(i[ok], f[ok], axis=0)) if ok.sum() > 1 else np.nan
    return {
        "counts": counts,
        "edges": edges,
        "corr": corr,
        "layer": layer,
        "unit": unit,
        "draws": draws,
        "deterministic": deterministic,
    }


def plot_joint_gates(
    data,
    layer: int = 0,
    unit: int = 0,
    sequences=None,
    steps=None,
    bins=30,
    group="posterior",
    ax=None,
) -> plt.Axes:
    """Joint density of ``(i, f)`` of one unit, corr(i, f) in the title: a log colour scale
    when a bin holds more than :data:`~pyro_betalstm.diagnostics.plots.JOINT_LOG_ABOVE` values,
    else a linear one with whole counts (the colour bar says which). Returns the axes.

    :param data: as for :func:`compute_joint_gates`, which takes the other arguments too.
    :param group: as for :func:`compute_joint_gates`.
    :param ax: the axes to draw on; None: a new figure.
    """
    c = compute_joint_gates(data, layer, unit, sequences, steps, bins, group)
    (ax,) = _axes(ax, 1, figsize=(4.8, 4.2))
    counts = np.ma.masked_equal(c["counts"].T, 0)
    # a log colour scale shows the sparse corners of U-shaped gates; few counts read better linear
    log = bool(counts.count()) and counts.max() > JOINT_LOG_ABOVE
    norm = LogNorm(vmin=1, vmax=counts.max()) if log else None
    mesh = ax.pcolormesh(c["edges"], c["edges"], counts, norm=norm, cmap="viridis")
    what = "count (draws x steps)" if c["draws"] > 1 else "count (steps)"
    bar = ax.figure.colorbar(mesh, ax=ax, label=f"{what}{' (log scale)' if log else ''}")
    if not log:
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(GATE_LABELS["input_gate"])
    ax.set_ylabel(GATE_LABELS["forget_gate"])
    if c["deterministic"]:
        what = "deterministic gates (i, f)"
    elif c["draws"] == 1:
        what = f"{group} (i, f), 1 draw"
    else:
        what = f"{group} (i, f)"
    ax.set_title(f"{what}, layer {layer}, unit {unit}\ncorr(i, f) = {c['corr']:.2f}")
    return ax


# ----- (c) per-token gate bars (the paper's Figure 1) -----------------------------------------------
def compute_token_gates(data, sequence: int = 0, layer: int = 0, unit: int | None = None) -> dict:
    """Per valid step of ``sequence``: mean ``i`` and ``f`` over draws (and over units when
    ``unit`` is None) and corr(i, f) over draws (averaged over units when ``unit`` is None;
    NaN where the gates do not vary across draws).

    Returns ``input_mean``, ``forget_mean`` and ``corr``, each ``(T,)`` with ``T`` the valid
    steps of ``sequence``.

    :param data: an ``InferenceData`` (:func:`gate_inference_data`), a draw dict of
        :func:`~pyro_betalstm.infer.sample_gates`, or ``{"posterior": draws, "prior": draws}``;
        the posterior draws are read.
    """
    arrays = arviz_io.gate_arrays(data, "posterior")
    T = _valid_length(arrays["mask"], sequence)
    i = arrays["input_gate"][:, sequence, :T, layer]  # (sample, T, H)
    f = arrays["forget_gate"][:, sequence, :T, layer]
    if unit is not None:
        i, f = i[..., [unit]], f[..., [unit]]
    corr = pooled_corr(i, f, axis=0)  # (T, H)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(corr)
        mean_corr = np.where(
            valid.any(-1), np.where(valid, corr, 0).sum(-1) / valid.sum(-1), np.nan
        )
    return {
        "input_mean": i.mean(axis=(0, 2)),
        "forget_mean": f.mean(axis=(0, 2)),
        "corr": mean_corr,
    }


def plot_token_gates(
    data, tokens: Sequence[str], sequence: int = 0, layer: int = 0, unit: int | None = None, ax=None
) -> plt.Axes:
    """Bars of the mean input (plain) and forget (hatched) gate for each token of a text
    sequence, coloured by corr(i, f) over draws (the paper's Figure 1). ``tokens``: one string
    per valid step of ``sequence`` (a ValueError otherwise). Returns the axes.

    :param data: as for :func:`compute_token_gates`.
    :param ax: the axes to draw on; None: a new figure.
    """
    c = compute_token_gates(data, sequence, layer, unit)
    tokens = [str(t) for t in tokens]
    if len(tokens) != len(c["corr"]):
        raise ValueError(f"{len(tokens)} tokens for a sequence of {len(c['corr'])} valid steps")
    (ax,) = _axes(ax, 1, figsize=(max(5.0, 0.55 * len(tokens) + 2), 3.8))
    cmap, norm = plt.get_cmap("coolwarm"), Normalize(-1.0, 1.0)
    colours = [cmap(norm(r)) if np.isfinite(r) else (0.7, 0.7, 0.7, 1.0) for r in c["corr"]]
    x = np.arange(len(tokens))
    width = 0.4
    ax.bar(x - width / 2, c["input_mean"], width, color=colours, edgecolor="black", lw=0.6)
    ax.bar(
        x + width / 2, c["forget_mean"], width, color=colours, edgecolor="black", lw=0.6, hatch="//"
    )
    ax.set_xticks(x, tokens, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_xlabel("token")
    ax.set_ylabel("mean gate value")
    which = "mean over units" if unit is None else f"unit {unit}"
    ax.set_title(f"gates per token (layer {layer}, {which}); colour: corr(i, f)")
    ax.legend(
        handles=[
            Patch(facecolor="white", edgecolor="black", label="input gate i"),
            Patch(facecolor="white", edgecolor="black", hatch="//", label="forget gate f"),
        ],
        fontsize="small",
        loc="upper right",
    )
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    ax.figure.colorbar(sm, ax=ax, label="corr(i, f) over draws")
    return ax


# ----- (d) time x unit heat map ------------------------------------------------------------------------
def compute_gate_heatmap(
    data,
    sequence: int = 0,
    layer: int = 0,
    gate: str = "forget_gate",
    stat: str = "mean",
    group="posterior",
) -> np.ndarray:
    """``(unit, time)`` array of the ``stat`` (``mean`` or ``sd`` over draws) of ``gate`` over the
    valid steps of ``sequence``.

    :param data: an ``InferenceData`` (:func:`gate_inference_data`), a draw dict of
        :func:`~pyro_betalstm.infer.sample_gates`, or ``{"posterior": draws, "prior": draws}``.
    :param gate: ``"input_gate"`` or ``"forget_gate"`` (a ValueError otherwise).
    :param group: ``"posterior"`` or ``"prior"``: the ``InferenceData`` group or dict key
        to read (a plain draw dict holds posterior draws); a ValueError when ``data`` has none.
    """
    if gate not in SHORT:
        raise ValueError(f"gate must be one of {tuple(SHORT)}, got {gate!r}")
    arrays = arviz_io.gate_arrays(data, group)
    T = _valid_length(arrays["mask"], sequence)
    values = arrays[gate][:, sequence, :T, layer]  # (sample, T, H)
    if stat == "mean":
        return values.mean(axis=0).T
    if stat == "sd":
        return values.std(axis=0).T
    raise ValueError(f"stat must be 'mean' or 'sd', got {stat!r}")


def plot_gate_heatmap(
    data,
    sequence=0,
    layer=0,
    gate="forget_gate",
    stat="mean",
    group="posterior",
    ax=None,
    total_steps: int | None = None,
) -> plt.Axes:
    """Heat map of a gate over time (x) and units (y) for one sequence, with a colour bar.

    ``total_steps``: the valid steps of the whole sequence when ``data`` holds only its first
    steps (a render's ``max_steps``); the title then says which steps are shown. With one draw
    the title says so ("deterministic" for deterministic gates) instead of a statistic over
    draws. Returns the axes.

    :param data: as for :func:`compute_gate_heatmap`, which takes the other arguments too.
    :param group: as for :func:`compute_gate_heatmap`.
    :param ax: the axes to draw on; None: a new figure.
    """
    values = compute_gate_heatmap(data, sequence, layer, gate, stat, group)
    arrays = arviz_io.gate_arrays(data, group)
    draws = arrays["input_gate"].shape[0]
    deterministic = group == "posterior" and _deterministic(data)
    (ax,) = _axes(ax, 1, figsize=(7.0, 3.8))
    vmax = 1.0 if stat == "mean" else max(float(np.nanmax(values)), 1e-6)
    image = ax.imshow(
        values,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=0.0,
        vmax=vmax,
        interpolation="nearest",
    )
    if draws > 1:
        label, what = f"{stat} of {GATE_LABELS[gate]} over draws", stat
    elif stat == "mean":
        label, what = GATE_LABELS[gate], "deterministic" if deterministic else "1 draw"
    else:
        label, what = f"{stat} of {GATE_LABELS[gate]} (1 draw)", f"{stat}, 1 draw"
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_xlabel("time step")
    ax.set_ylabel("unit")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = f"{GATE_LABELS[gate]} ({what}), sequence {sequence}, layer {layer}"
    shown = values.shape[1]
    if total_steps is not None and total_steps > shown:
        title += f", steps 0\u2013{shown - 1} of {total_steps}"
    ax.set_title(title)
    return ax


def plot_gate_heatmaps(
    data,
    sequence: int = 0,
    stat: str = "mean",
    group="posterior",
    total_steps: int | None = None,
) -> np.ndarray:
    """:func:`plot_gate_heatmap` of both gates (rows) for every layer (columns) of one
    sequence, in a new figure; returns the ``(2, layers)`` array of axes.

    :param data: as for :func:`compute_gate_heatmap`.
    :param group: as for :func:`compute_gate_heatmap`.
    """
    layers = arviz_io.gate_arrays(data, group)["input_gate"].shape[3]
    fig, axes = plt.subplots(2, layers, figsize=(6.5 * layers, 7.0), squeeze=False)
    for k in range(layers):
        for row, gate in enumerate(GATE_LABELS):
            plot_gate_heatmap(
                data, sequence, k, gate, stat, group, ax=axes[row, k], total_steps=total_steps
            )
    return axes


# ----- (e) sigmoid LSTM vs bBLSTM gate histograms ------------------------------------------------------
def _modes(density: np.ndarray, edges: np.ndarray, max_modes: int = 4) -> np.ndarray:
    """Centres of the clear local maxima of a histogram (smoothed with a Gaussian of one bin).

    A peak counts if it reaches a quarter of the highest one and the valley separating it from
    a higher peak dips below 70 % of its height; at most ``max_modes``, highest first, sorted.
    A near-flat density has none: one whose smoothed peak is below :data:`FLAT_PEAK_RATIO`
    times its mean (1.4: the sampling noise of a uniform over the thousands of values a render
    pools stays under it; Beta(2, 2), whose peak is 1.5 times its mean, is above it).
    """
    if not np.any(density > 0):
        return np.array([])
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    smooth = np.convolve(np.pad(density, 3, mode="edge"), kernel / kernel.sum(), mode="valid")
    if smooth.max() < FLAT_PEAK_RATIO * smooth.mean():
        return np.array([])  # near-flat: any "peak" is sampling noise
    left = np.concatenate([[-np.inf], smooth[:-1]])
    right = np.concatenate([smooth[1:], [-np.inf]])
    candidates = np.flatnonzero((smooth > left) & (smooth >= right))
    candidates = candidates[smooth[candidates] >= 0.25 * smooth.max()]
    kept: list[int] = []
    for j in sorted(candidates, key=lambda j: -smooth[j]):
        separated = all(smooth[min(j, k) : max(j, k) + 1].min() < 0.7 * smooth[j] for k in kept)
        if separated:
            kept.append(int(j))
        if len(kept) == max_modes:
            break
    centres = (edges[:-1] + edges[1:]) / 2
    return np.sort(centres[kept])


def _skew(values: np.ndarray) -> float:
    values = _finite(values)
    if values.size < 3 or values.std() == 0:
        return np.nan
    z = (values - values.mean()) / values.std()
    return float((z**3).mean())


def compute_gate_histograms(
    datasets: Mapping[str, object], layer: int | None = None, bins: int = 50
) -> dict:
    """Gate-value histograms of several models (``{label: data}``), pooled over draws, valid
    steps, units and ``layer`` (None: every layer).

    Returns ``edges``, ``layer`` and ``models``: per label, ``draws`` and, per gate,
    ``density``, ``skew`` and ``modes``.

    :param datasets: ``{label: data}``, each ``data`` an ``InferenceData`` or a draw dict as
        in :func:`compute_joint_gates`; the posterior draws are read.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = {"edges": edges, "layer": layer, "models": {}}
    for label, data in datasets.items():
        arrays = arviz_io.gate_arrays(data, "posterior")
        stats = {}
        for name in SHORT:
            values = arrays[name] if layer is None else arrays[name][..., layer, :]
            density = _density(values, edges)
            stats[name] = {
                "density": density,
                "skew": _skew(values),
                "modes": _modes(density, edges),
            }
        stats["draws"] = int(arrays["input_gate"].shape[0])
        out["models"][str(label)] = stats
    return out


def plot_gate_histograms(
    baseline, other, labels: Sequence[str] = ("LSTM", "bBLSTM"), layer=None, bins=50, ax=None
) -> np.ndarray:
    """Histograms of input (left) and forget (right) gate values of two models (for instance a
    sigmoid LSTM and a bBLSTM), with each model's draws, skewness and modes (triangles; none
    on a near-flat density, see ``_modes``) in the legend. Returns the two axes.

    :param baseline: the first model's draws, as ``data`` of :func:`compute_joint_gates`.
    :param other: the second model's draws, likewise.
    :param labels: two distinct names for them (a ValueError otherwise).
    :param ax: two axes (left, right) to draw on; None: a new figure with two (a ValueError
        for another number of axes).
    """
    if len(labels) != 2 or labels[0] == labels[1]:
        raise ValueError(f"labels must be two distinct names, got {labels!r}")
    c = compute_gate_histograms({labels[0]: baseline, labels[1]: other}, layer, bins)
    axes = _axes(ax, 2, figsize=(10.5, 4.8))
    edges = c["edges"]
    for a, name in zip(axes, SHORT, strict=True):
        top = 0.0
        for j, label in enumerate(labels):
            s = c["models"][label][name]
            colour = f"C{j}"
            modes = ", ".join(f"{m:.2f}" for m in s["modes"])
            modes = f"modes at {modes}" if modes else "no clear mode"
            draws = _draws(c["models"][label]["draws"])
            a.stairs(
                s["density"],
                edges,
                fill=True,
                alpha=0.35,
                color=colour,
                label=f"{label} ({draws}): skew {_number(s['skew'])}; {modes}",
            )
            a.stairs(s["density"], edges, color=colour, lw=1.2)
            top = max(top, float(s["density"].max()))
            if len(s["modes"]):
                idx = np.clip(np.searchsorted(edges, s["modes"]) - 1, 0, len(s["density"]) - 1)
                a.plot(s["modes"], s["density"][idx], "v", color=colour, ms=7)
        a.set_xlim(0, 1)
        a.set_ylim(0, top * 1.25 if top > 0 else 1)
        a.set_xlabel(GATE_LABELS[name])
        a.set_ylabel("density")
        where = "all layers" if layer is None else f"layer {layer}"
        a.set_title(f"{GATE_LABELS[name]} values ({where})")
        a.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return axes


# ----- (f) gradient magnitudes ----------------------------------------------------------------------------
def compute_gradient_histograms(
    gradients: Mapping[str, np.ndarray], bins: int = 50, floor: float = 1e-12
) -> dict:
    """Histograms of ``|dL/d gate pre-activation|`` per variant on shared log-spaced bins.

    ``gradients``: ``{variant: array}`` (any shape; absolute values are taken, zeros and
    non-finite values dropped). Values below ``floor`` (including zeros) are left out of the
    bins, so that a few underflowing values do not stretch the axis over dozens of decades; their
    share is in ``below_floor``. Returns ``edges``, per-variant ``fraction`` (of the variant's
    values in each bin), ``median`` (of all its values) and ``below_floor``.
    """
    values = {str(k): np.abs(_finite(np.asarray(v, dtype=float))) for k, v in gradients.items()}
    below = {k: float(np.mean(v < floor)) if v.size else np.nan for k, v in values.items()}
    medians = {k: float(np.median(v)) if v.size else np.nan for k, v in values.items()}
    values = {k: v[v >= floor] for k, v in values.items()}
    pooled = np.concatenate([v for v in values.values() if v.size] or [np.array([1e-8, 1.0])])
    lo, hi = pooled.min(), pooled.max()
    if hi <= lo:
        lo, hi = lo / 10, hi * 10
    edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
    edges[0], edges[-1] = lo, hi  # exact ends: rounding must not drop the extremes
    out = {"edges": edges, "fraction": {}, "median": medians, "below_floor": below}
    for k, v in values.items():
        counts, _ = np.histogram(v, bins=edges)
        out["fraction"][k] = counts / max(v.size, 1)
    return out


def plot_gradient_magnitudes(
    gradients: Mapping[str, np.ndarray], bins: int = 50, floor: float = 1e-12, ax=None
) -> plt.Axes:
    """Histograms (log x-axis) of gradient magnitudes at the gate pre-activations per variant;
    the legend gives each median and the share of values below ``floor`` (not drawn).
    Returns the axes.

    :param gradients: as for :func:`compute_gradient_histograms`.
    :param ax: the axes to draw on; None: a new figure.
    """
    c = compute_gradient_histograms(gradients, bins, floor)
    (ax,) = _axes(ax, 1, figsize=(6.0, 3.8))
    for j, (label, fraction) in enumerate(c["fraction"].items()):
        colour = f"C{j % 10}"
        ax.stairs(
            fraction,
            c["edges"],
            fill=True,
            alpha=0.3,
            color=colour,
            label=f"{label} (median {c['median'][label]:.2g}, "
            f"{100 * c['below_floor'][label]:.1f}% below {floor:.0e})",
        )
        ax.stairs(fraction, c["edges"], color=colour, lw=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("|dL / d gate pre-activation|")
    ax.set_ylabel("fraction of values")
    ax.set_title("gradient magnitude at the gates")
    ax.legend(fontsize="small")
    return ax


def plot_gradient_history(
    history: Mapping[str, Sequence[float]], ylabel: str = "mean |dL / dz|", ax=None
) -> plt.Axes:
    """A per-epoch statistic (for instance the mean gate gradient of a
    :class:`~pyro_betalstm.nn.GateGradientProbe`) per variant, log y-axis. Returns the axes.

    :param history: ``{variant: per-epoch values}`` (a ValueError when empty).
    :param ax: the axes to draw on; None: a new figure.
    """
    if not history:
        raise ValueError("history is empty; expected {variant: per-epoch values}")
    (ax,) = _axes(ax, 1, figsize=(5.5, 3.6))
    for label, values in history.items():
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(1, len(values) + 1), values, "o-", label=str(label))
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("gradient at the gates during training")
    ax.legend(fontsize="small")
    return ax


# ----- training history --------------------------------------------------------------------------------------
def training_objective(data) -> tuple[str, str]:
    """The title and y label of the training history's ``elbo`` (``-train_loss``, per training
    sequence), named for what the loss was: the ELBO only for latent gates with KL weight 1.

    Deterministic gates (see :func:`_deterministic`) and KL weight 0 have no KL term (a
    log-likelihood); another weight gives a weighted objective. The weight is the history's
    per-epoch ``kl_weight`` (annealed runs vary), else the ``kl_weight`` attribute."""
    history = arviz_io.history_arrays(data)
    unit = "nats per training sequence"
    likelihood = "training log-likelihood (-loss)", f"log-likelihood ({unit})"
    if _deterministic(data):
        return f"{likelihood[0]}\ndeterministic gates: no KL term", likelihood[1]
    weights = _finite(history.get("kl_weight", []))
    if not weights.size and _attrs(data).get("kl_weight") is not None:
        weights = np.array([float(_attrs(data)["kl_weight"])])
    objective = "training objective (-loss)", f"-loss ({unit})"
    if not weights.size:
        return objective
    low, high = float(weights.min()), float(weights.max())
    if high == 0:
        return f"{likelihood[0]}\nKL weight 0: no KL term", likelihood[1]
    if low == high == 1:
        return "training ELBO (-loss)", f"ELBO ({unit})"
    if low == high:
        return f"{objective[0]}\nKL weight {low:g}: log-likelihood - {low:g} x KL", objective[1]
    return f"{objective[0]}\nKL weight annealed from {low:g} to {high:g}", objective[1]


def plot_elbo_history(data, ax=None) -> plt.Axes:
    """The training objective per training sequence (``-train_loss``, the ``elbo`` of the
    ``sample_stats`` group) against epoch, titled as ``training_objective`` names it, with
    a tick at every epoch when there are at most 10. Returns the axes.

    :param data: an ``InferenceData`` with a ``sample_stats`` group holding ``elbo`` (a
        ValueError otherwise), as :func:`gate_inference_data` builds with a ``history``.
    :param ax: the axes to draw on; None: a new figure.
    """
    history = arviz_io.history_arrays(data)
    if "elbo" not in history:
        raise ValueError("no training history (sample_stats with 'elbo') in the data")
    (ax,) = _axes(ax, 1, figsize=(5.5, 3.6))
    ax.plot(history["epoch"], history["elbo"], "o-")
    epochs = np.asarray(history["epoch"])
    if len(epochs) <= 10:
        ax.set_xticks(epochs)  # MaxNLocator finds no integers in the margins of a single epoch
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title, ylabel = training_objective(data)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


def plot_time_to_quality(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    threshold: float | None = None,
    ax=None,
) -> plt.Axes:
    """Validation metric against training wall-clock time, one line per recipe.

    ``curves``: ``{recipe: (seconds, values)}``, for instance each epoch's ``elapsed_s`` and
    ``valid_nll_mean_gates`` from ``metrics.json`` (a ValueError for an empty dict or
    lengths that differ); ``threshold`` is drawn as a dashed line. Returns the axes.

    :param ax: the axes to draw on; None: a new figure.
    """
    if not curves:
        raise ValueError("curves is empty; expected {recipe: (seconds, values)}")
    (ax,) = _axes(ax, 1, figsize=(6.5, 4.2))
    for label, (seconds, values) in curves.items():
        seconds, values = np.asarray(seconds, dtype=float), np.asarray(values, dtype=float)
        if seconds.shape != values.shape:
            raise ValueError(f"{label}: {seconds.size} times for {values.size} values")
        ax.plot(seconds / 60.0, values, ".-", label=str(label))
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"{threshold}")
    ax.set_xlabel("training wall-clock time (minutes, validation included)")
    ax.set_ylabel("validation NLL per frame")
    ax.set_title("time to quality")
    ax.legend(fontsize="small")
    return ax


def save_figure(ax, path, dpi: int = 110) -> None:
    """Save the figure of ``ax`` (an axes or an array of axes, as ArviZ's ``plot_*`` return)
    at ``dpi``, atomically, in the format of ``path``'s suffix (PNG for ``.png``), and close it."""
    first = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()[0]
    fig = first.figure
    with warnings.catch_warnings():
        # ArviZ's figures may hold axes tight_layout cannot place (e.g. colour bars): it is only
        # a better spacing, so its warning says nothing about the result
        warnings.filterwarnings("ignore", "This figure includes Axes", UserWarning)
        fig.tight_layout()
    try:
        # the format said, not read from the temporary file's name (see atomic_write_path)
        image_format = Path(path).suffix.lstrip(".") or "png"
        atomic_write_path(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=image_format))
    finally:
        plt.close(fig)
