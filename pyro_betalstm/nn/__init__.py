"""Recurrent modules whose input and forget gates come from a gate family."""

from .gradient_probe import GateGradientProbe
from .layer import GateLayer, LayerRun
from .stochastic_lstm import StochasticLSTM

__all__ = ["GateGradientProbe", "GateLayer", "LayerRun", "StochasticLSTM"]
