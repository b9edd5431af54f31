"""Recurrent modules whose input and forget gates come from a gate family."""

from .layer import GateLayer, LayerRun
from .stochastic_lstm import StochasticLSTM

__all__ = ["GateLayer", "LayerRun", "StochasticLSTM"]
