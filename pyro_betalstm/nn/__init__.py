"""Recurrent modules whose input and forget gates come from a gate family."""

from .gate_modes import GateMode, GivenBasis, MeanGates, PriorBasis, SampledBasis
from .gradient_probe import GateGradientProbe
from .layer import GateLayer, LayerRun, stack_layers
from .sizing import layer_parameters, matched_hidden_size
from .stochastic_lstm import LayerCall, StochasticLSTM

__all__ = [
    "GateGradientProbe",
    "GateLayer",
    "GateMode",
    "GivenBasis",
    "LayerCall",
    "LayerRun",
    "MeanGates",
    "PriorBasis",
    "SampledBasis",
    "StochasticLSTM",
    "layer_parameters",
    "matched_hidden_size",
    "stack_layers",
]
