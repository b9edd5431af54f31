"""Inference: SVI training, prediction and gate draws."""

from .elbo import GateMeanFieldELBO
from .loss_units import loss_per_sequence
from .predict import (
    EVAL_BATCH_SIZE,
    GATE_DIMS,
    PREDICTIVE_ROW_STEPS,
    draws_per_pass,
    evaluate_classifier,
    evaluate_nll,
    gate_kl_summary,
    predictive_log_likelihood,
    sample_gates,
    sample_posterior_predictive,
)
from .train import DivergenceError, FitResult, NonFiniteLossError, TrainConfig, fit, load_best

__all__ = [
    "EVAL_BATCH_SIZE",
    "GATE_DIMS",
    "PREDICTIVE_ROW_STEPS",
    "DivergenceError",
    "FitResult",
    "GateMeanFieldELBO",
    "NonFiniteLossError",
    "TrainConfig",
    "draws_per_pass",
    "evaluate_classifier",
    "evaluate_nll",
    "fit",
    "gate_kl_summary",
    "load_best",
    "loss_per_sequence",
    "predictive_log_likelihood",
    "sample_gates",
    "sample_posterior_predictive",
]
