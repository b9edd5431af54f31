"""Diagnostics of trained gate models: ArviZ ``InferenceData``, summaries and plots.

This subpackage is the only part of :mod:`pyro_betalstm` that imports ArviZ (all of it in
:mod:`pyro_betalstm.diagnostics.arviz_io`) and matplotlib (in
:mod:`pyro_betalstm.diagnostics.plots`, with the non-interactive Agg backend unless another
backend was chosen first).

Example::

    idata = gate_inference_data(model, batch, num_samples=100, history="runs/music/x")
    to_netcdf(idata, "gates.nc")
    summarize_gates(idata)  # mean, sd, HDI, ESS per unit; corr(i, f)
    plot_joint_gates(idata, layer=0, unit=3)
    az.plot_pair(idata, var_names=["gates"], coords={"sequence": [0], "time": [2], "unit": [3]})

ArviZ's own functions take the ``InferenceData`` as it is: its dims are named (``sequence``,
``time``, ``layer``, ``unit``, ``gate``...) with coords, ``posterior_predictive`` pairs with
``observed_data`` for ``az.plot_ppc``, and ``sample_stats`` is the ELBO history as a trace for
``az.plot_trace`` (layout: :mod:`pyro_betalstm.diagnostics.arviz_io`).

Command line, for a run saved by any of ``examples/*.py`` (it reads the run's
``results.json``, ``gate_draws.pt`` and ``metrics.json`` only; the defaults are the examples'
own render's)::

    pyro-betalstm diagnostics RUN_DIR [--out DIR] [--num-samples N] [--compare RUN]
    python -m pyro_betalstm.diagnostics RUN_DIR ...  # the same
"""

from .arviz_io import from_netcdf, gate_arrays, to_inference_data, to_netcdf
from .draws import gate_inference_data, load_history, posterior_gate_draws, prior_gate_draws
from .plots import (
    compute_gate_heatmap,
    compute_gate_histograms,
    compute_gradient_histograms,
    compute_joint_gates,
    compute_prior_posterior,
    compute_token_gates,
    plot_elbo_history,
    plot_gate_heatmap,
    plot_gate_heatmaps,
    plot_gate_histograms,
    plot_gradient_history,
    plot_gradient_magnitudes,
    plot_joint_gates,
    plot_prior_posterior,
    plot_time_to_quality,
    plot_token_gates,
    save_figure,
    use_file_backend,
)
from .render import SavedRun, load_gate_draws, load_saved_run, render_run, run_inference_data
from .summary import gate_correlation, pooled_corr, summarize_gates

__all__ = [
    "SavedRun",
    "compute_gate_heatmap",
    "compute_gate_histograms",
    "compute_gradient_histograms",
    "compute_joint_gates",
    "compute_prior_posterior",
    "compute_token_gates",
    "from_netcdf",
    "gate_arrays",
    "gate_correlation",
    "gate_inference_data",
    "load_history",
    "load_gate_draws",
    "load_saved_run",
    "plot_elbo_history",
    "plot_gate_heatmap",
    "plot_gate_heatmaps",
    "plot_gate_histograms",
    "plot_gradient_history",
    "plot_gradient_magnitudes",
    "plot_joint_gates",
    "plot_prior_posterior",
    "plot_time_to_quality",
    "plot_token_gates",
    "pooled_corr",
    "posterior_gate_draws",
    "prior_gate_draws",
    "render_run",
    "run_inference_data",
    "save_figure",
    "summarize_gates",
    "to_inference_data",
    "to_netcdf",
    "use_file_backend",
]
