"""Recurrent modules whose input and forget gates come from a gate family."""

from .gradient_probe import GateGradientProbe
from .layer import GateLayer, LayerRun
from .sizing import layer_parameters, matched_hidden_size
from .stochastic_lstm import StochasticLSTM

__all__ = [
    "GateGradientProbe",
    "GateLayer",
    "LayerRun",
    "StochasticLSTM",
    "layer_parameters",
    "matched_hidden_size",
]
