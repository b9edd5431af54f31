"""Recurrent modules whose input and forget gates come from a gate family."""

from .cuda_graphs import RECURRENCES, LayerGraphs
from .gate_modes import GateMode, GivenBasis, MeanGates, PriorBasis, SampledBasis
from .gradient_probe import GateGradientProbe
from .layer import LAYER_ARRAYS, GateLayer, LayerRun, set_recurrence, stack_layers
from .sizing import layer_parameters, matched_hidden_size
from .stochastic_lstm import LayerCall, StochasticLSTM

__all__ = [
    "GateGradientProbe",
    "GateLayer",
    "GateMode",
    "GivenBasis",
    "LAYER_ARRAYS",
    "LayerCall",
    "LayerGraphs",
    "LayerRun",
    "MeanGates",
    "PriorBasis",
    "RECURRENCES",
    "SampledBasis",
    "StochasticLSTM",
    "layer_parameters",
    "matched_hidden_size",
    "set_recurrence",
    "stack_layers",
]
