"""Pyro models for each task shape: gate sites per layer and a task likelihood."""

from ..batch import SequenceBatch  # re-exported: part of the models API since 0.1
from .base import BASIS_SITE_DIMS, GATE_SITE_DIMS, GATE_SITES, STATE_SITES, GateModel, site_name
from .caption import CaptionDecoder
from .classifier import SequenceClassifier
from .gate_sites import GuideGateSequence, PriorGateSequence
from .modes import evaluating
from .next_step import NextStepBernoulli
from .text_classifier import TextClassifier

__all__ = [
    "BASIS_SITE_DIMS",
    "GATE_SITES",
    "GATE_SITE_DIMS",
    "STATE_SITES",
    "CaptionDecoder",
    "GateModel",
    "GuideGateSequence",
    "NextStepBernoulli",
    "PriorGateSequence",
    "SequenceBatch",
    "SequenceClassifier",
    "TextClassifier",
    "evaluating",
    "site_name",
]
