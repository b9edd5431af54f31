"""Prediction: the paper's mean gates, the posterior predictive over S gate draws, gate draws."""

from __future__ import annotations

import math

import torch

from ..data import SequenceDataset
from ..models.base import GateModel, SequenceBatch

#: Dimension names of the arrays returned by :func:`sample_gates`.
GATE_DIMS = ("draw", "sequence", "time", "layer", "unit")


@torch.no_grad()
def evaluate_nll(
    model: GateModel,
    data: SequenceDataset,
    batch_size: int = 64,
    num_samples: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Negative log-likelihood per prediction (per frame for music, per sequence otherwise).

    Always reports ``nll_mean_gates`` (the paper's evaluation: gates at their Beta means). With
    ``num_samples = S > 0`` and a latent gate family it also reports ``nll_predictive``, the
    posterior predictive ``-log (1/S) sum_s p(y | u_s)``, ``u_s ~ q(u | x)``, per sequence.
    """
    was_training = model.training
    model.eval()
    total_mean, total_pred, count = 0.0, 0.0, 0
    try:
        for batch in data.batches(batch_size):
            batch = batch.to(device)
            run = model.run_network(batch, gate_mode="mean")[-1]
            total_mean += float(model.log_likelihood(run, batch).sum())
            if num_samples and model.family.is_latent:
                total_pred += float(predictive_log_likelihood(model, batch, num_samples).sum())
            count += model.num_predictions(batch)
    finally:
        model.train(was_training)
    result = {"nll_mean_gates": -total_mean / count, "num_predictions": count}
    if num_samples and model.family.is_latent:
        result["nll_predictive"] = -total_pred / count
        result["num_samples"] = num_samples
    return result


@torch.no_grad()
def predictive_log_likelihood(
    model: GateModel, batch: SequenceBatch, num_samples: int
) -> torch.Tensor:
    """``log (1/S) sum_s p(y | u_s)`` per sequence with ``S`` gate draws from the guide."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    draws = torch.stack(
        [
            model.log_likelihood(model.run_network(batch, gate_mode="sample")[-1], batch)
            for _ in range(num_samples)
        ]
    )
    return torch.logsumexp(draws, dim=0) - math.log(num_samples)


@torch.no_grad()
def sample_gates(
    model: GateModel, batch: SequenceBatch, num_samples: int = 100, gate_mode: str = "sample"
) -> dict[str, torch.Tensor]:
    """Gate draws from the amortised posterior, with named dimensions.

    Returns ``input_gate`` and ``forget_gate`` with dims :data:`GATE_DIMS` =
    (draw, sequence, time, layer, unit); for latent families also ``alpha`` and ``log_basis``
    with a trailing ``basis`` dimension; and ``mask`` (sequence, time) of valid steps.
    ``gate_mode="mean"`` gives the paper's mean gates (identical draws).
    """
    was_training = model.training
    model.eval()
    try:
        keys = ["input_gate", "forget_gate", "alpha", "log_basis"]
        out: dict[str, list] = {k: [] for k in keys}
        for _ in range(num_samples):
            mask = model._mask(batch)
            runs = model.lstm.run(batch.inputs, mask, gate_mode=gate_mode, record_gates=True)
            out["input_gate"].append(torch.stack([r.gates[0] for r in runs], dim=2))
            out["forget_gate"].append(torch.stack([r.gates[1] for r in runs], dim=2))
            if model.family.is_latent:
                out["alpha"].append(torch.stack([r.alpha for r in runs], dim=2))
                if runs[0].log_basis is not None:
                    out["log_basis"].append(torch.stack([r.log_basis for r in runs], dim=2))
    finally:
        model.train(was_training)
    result = {k: torch.stack(v) for k, v in out.items() if v}
    B, T = batch.inputs.shape[:2]
    result["mask"] = (
        torch.ones(B, T, dtype=torch.bool)
        if batch.lengths is None
        else torch.arange(T)[None, :] < batch.lengths[:, None].cpu()
    )
    return result
