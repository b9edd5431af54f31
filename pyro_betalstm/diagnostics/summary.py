"""Summaries of gate draws suited to SVI: per-unit moments, HDI, corr(i, f) and ESS.

The draws of an amortised guide are independent (one chain), so there is no R-hat. Statistics
pool the draws and the valid steps of every sequence of the batch, per ``(layer, unit)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import arviz_io

SHORT = {"input_gate": "i", "forget_gate": "f"}


def pooled_corr(x: np.ndarray, y: np.ndarray, axis) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` over ``axis`` (an int or a tuple of ints), pairs
    with a NaN ignored; NaN where either does not vary."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x, 0.0).sum(axis=axis, keepdims=True) / n
        my = np.where(ok, y, 0.0).sum(axis=axis, keepdims=True) / n
        dx, dy = np.where(ok, x - mx, 0.0), np.where(ok, y - my, 0.0)
        cov = (dx * dy).sum(axis=axis)
        corr = cov / np.sqrt((dx * dx).sum(axis=axis) * (dy * dy).sum(axis=axis))
    return np.clip(corr, -1.0, 1.0)


def gate_correlation(data, group: str = "posterior", over: str = "pooled") -> np.ndarray:
    """corr(i, f) of every unit.

    ``over="pooled"``: one value per ``(layer, unit)``, over draws and valid steps of every
    sequence. ``over="draws"``: one value per ``(sequence, time, layer, unit)``, over draws only
    (NaN at padded steps and where the gates do not vary across draws); a ValueError for
    another ``over``.

    :param data: an ``InferenceData`` (:func:`~pyro_betalstm.diagnostics.gate_inference_data`),
        a draw dict of :func:`~pyro_betalstm.infer.sample_gates`, or
        ``{"posterior": draws, "prior": draws}``.
    :param group: ``"posterior"`` or ``"prior"``: the ``InferenceData`` group or dict key to
        read (a plain draw dict holds posterior draws); a ValueError when ``data`` has none.
    """
    arrays = arviz_io.gate_arrays(data, group)
    i, f = arrays["input_gate"], arrays["forget_gate"]
    if over == "pooled":
        return pooled_corr(i, f, axis=(0, 1, 2))
    if over == "draws":
        return pooled_corr(i, f, axis=0)
    raise ValueError(f"over must be 'pooled' or 'draws', got {over!r}")


def summarize_gates(data, group: str = "posterior", hdi_prob: float = 0.94) -> pd.DataFrame:
    """One row per ``(layer, unit)``: the distribution of each gate over draws and valid steps.

    Columns, for ``g`` in ``i`` (input gate) and ``f`` (forget gate): ``mean_g``, ``sd_g``,
    ``hdi_lower_g``, ``hdi_upper_g`` (the ``hdi_prob`` highest-density interval of the pooled
    values), ``ess_g`` (bulk effective sample size, over draws, of the unit's gate averaged over
    the valid steps: about the number of draws for an amortised guide, NaN with fewer than 4
    draws or identical draws); and ``corr_if``, the correlation of ``i`` and ``f`` over draws
    and valid steps.

    :param data: an ``InferenceData`` (:func:`~pyro_betalstm.diagnostics.gate_inference_data`),
        a draw dict of :func:`~pyro_betalstm.infer.sample_gates`, or
        ``{"posterior": draws, "prior": draws}``.
    :param group: ``"posterior"`` or ``"prior"``: the ``InferenceData`` group or dict key to
        read (a plain draw dict holds posterior draws); a ValueError when ``data`` has none.
    :param hdi_prob: the probability mass of the HDI.
    """
    arrays = arviz_io.gate_arrays(data, group)
    _, _, _, L, H = arrays["input_gate"].shape
    columns: dict[str, np.ndarray] = {}
    for name, g in SHORT.items():
        x = arrays[name]
        flat = x.transpose(3, 4, 0, 1, 2).reshape(L, H, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
            columns[f"mean_{g}"] = np.nanmean(flat, axis=-1).ravel()
            columns[f"sd_{g}"] = np.nanstd(flat, axis=-1).ravel()
            per_draw = np.nanmean(x, axis=(1, 2))  # (sample, layer, unit): the unit's mean
        bounds = np.array([arviz_io.hdi(v, hdi_prob) for v in flat.reshape(L * H, -1)])
        columns[f"hdi_lower_{g}"], columns[f"hdi_upper_{g}"] = bounds[:, 0], bounds[:, 1]
        columns[f"ess_{g}"] = arviz_io.ess(per_draw[None]).ravel()
    columns["corr_if"] = pooled_corr(
        arrays["input_gate"], arrays["forget_gate"], axis=(0, 1, 2)
    ).ravel()
    index = pd.MultiIndex.from_product([range(L), range(H)], names=["layer", "unit"])
    return pd.DataFrame(columns, index=index)
