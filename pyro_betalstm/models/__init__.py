"""Pyro models for each task shape: gate sites per layer and a task likelihood."""

from ..batch import SequenceBatch  # re-exported: part of the models API since 0.1
from .base import GateModel, site_name
from .caption import CaptionDecoder
from .classifier import SequenceClassifier
from .gate_sites import GuideGateSequence, PriorGateSequence
from .modes import evaluating
from .next_step import NextStepBernoulli
from .text_classifier import TextClassifier

__all__ = [
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
