"""Gate draws from a trained model: posterior (amortised guide), prior, and training history."""

from __future__ import annotations

from pathlib import Path

import pyro.poutine as poutine
import torch

from ..batch import SequenceBatch
from ..infer.predict import sample_gates, sample_posterior_predictive
from ..io import read_json
from ..models.base import GateModel
from ..models.modes import evaluating
from ..nn import PriorBasis, stack_layers
from . import arviz_io


def posterior_gate_draws(
    model: GateModel, batch: SequenceBatch, num_samples: int = 100
) -> dict[str, torch.Tensor]:
    """Gate draws from the amortised posterior (:func:`~pyro_betalstm.infer.sample_gates`).

    Deterministic gate families (``sigmoid``, ``coupled``, and ``gumbel`` in evaluation mode)
    give identical draws, so they are drawn once (a single draw).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    return sample_gates(model, batch, num_samples if model.family.is_latent else 1)


@torch.no_grad()
def prior_gate_draws(
    model: GateModel, batch: SequenceBatch, num_samples: int = 100
) -> dict[str, torch.Tensor]:
    """Gate draws from the model's prior on the inputs of ``batch``.

    Each draw runs the recurrence layer by layer with the basis drawn from the prior at every
    step (given that step's input and previous hidden state), as ``GateModel.model`` does
    without a guide; a prior with a hyper-prior (``HierarchicalGammaPrior``) draws its
    hyper-parameters once per draw. Returns ``input_gate``, ``forget_gate``, ``log_basis`` and
    ``mask`` in the layout of :func:`~pyro_betalstm.infer.sample_gates`.
    """
    if not model.family.is_latent:
        raise ValueError(
            f"the {model.family.name!r} gate family has deterministic gates: there is no prior"
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    with evaluating(model):
        batch = model.embed_batch(batch)  # raw inputs through the model's front end
        lstm, mask = model.lstm, model.mask(batch)
        out: dict[str, list] = {"input_gate": [], "forget_gate": [], "log_basis": []}
        with poutine.block():
            for _ in range(num_samples):
                model.prior.model()  # hyper-priors, if any
                runs = lstm.run(
                    batch.inputs,
                    mask,
                    record_gates=True,
                    layer_hook=lambda call: call.run(PriorBasis(model.prior_sampler(call.index))),
                )
                for name, array in stack_layers(runs, tuple(out)).items():
                    out[name].append(array)
    result = {k: torch.stack(v).cpu() for k, v in out.items()}
    result["mask"] = batch.step_mask()
    return result


def load_history(path: str | Path) -> list[dict]:
    """Per-epoch records of ``metrics.json`` written by :func:`~pyro_betalstm.infer.fit`
    (``path``: the file or its run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    return read_json(path, "metrics file")


def gate_inference_data(
    model: GateModel,
    batch: SequenceBatch,
    num_samples: int = 100,
    prior_samples: int | None = None,
    history: list[dict] | str | Path | None = None,
    include_basis: bool = True,
    attrs: dict | None = None,
    posterior_predictive: bool = True,
) -> arviz_io.az.InferenceData:  # arviz is imported by arviz_io alone
    """Draw gates from ``model`` on ``batch`` and build an ArviZ ``InferenceData``.

    ``posterior`` holds ``num_samples`` guide draws, ``prior`` (latent families only)
    ``prior_samples`` prior draws (default ``num_samples``), ``posterior_predictive``
    ``num_samples`` draws of the targets, each given the gates of the same posterior draw
    (:func:`~pyro_betalstm.infer.sample_posterior_predictive`; ``posterior_predictive=False``
    leaves it out), ``observed_data`` the batch targets, ``constant_data`` the mask and
    inputs, and ``sample_stats`` the training history (``history``: records, or a
    ``metrics.json`` path or run directory). ``include_basis=False`` leaves out ``alpha`` and
    ``log_basis`` (large for wide models). See :mod:`pyro_betalstm.diagnostics.arviz_io` for
    the layout.

    ArviZ's functions take the result as it is, for instance ``az.summary(idata,
    var_names=["gates"], coords={"sequence": [0], "time": [0]})``, ``az.plot_ppc(idata)`` and
    ``az.plot_trace(idata.sample_stats, var_names=["elbo"])``.
    """
    predictive = None
    if posterior_predictive:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        posterior = sample_posterior_predictive(model, batch, num_samples)
        predictive = {"targets": posterior.pop("targets")}
        if not model.family.is_latent:  # identical gate draws: keep one, as posterior_gate_draws
            posterior = {k: v if k == "mask" else v[:1] for k, v in posterior.items()}
    else:
        posterior = posterior_gate_draws(model, batch, num_samples)
    prior = None
    if model.family.is_latent and (prior_samples is None or prior_samples > 0):
        prior = prior_gate_draws(model, batch, prior_samples or num_samples)
    if not include_basis:
        posterior = {k: v for k, v in posterior.items() if k not in ("alpha", "log_basis")}
        if prior is not None:
            prior = {k: v for k, v in prior.items() if k != "log_basis"}
    if isinstance(history, str | Path):
        history = load_history(history)
    meta = {
        "gate_family": model.family.name,
        "paper_name": model.family.paper_name,
        "prior": type(model.prior).__name__ if model.family.is_latent else "none",
        "kl_weight": float(model.kl_weight),
        "num_layers": model.lstm.num_layers,
        "hidden_size": model.lstm.hidden_size,
    }
    meta.update(attrs or {})
    return arviz_io.to_inference_data(
        posterior,
        prior=prior,
        targets=batch.targets,
        history=history,
        inputs=batch.inputs,
        attrs=meta,
        posterior_predictive=predictive,
    )
