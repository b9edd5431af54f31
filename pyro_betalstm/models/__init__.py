"""Pyro models for each task shape: gate sites per layer and a task likelihood."""

from .base import GateModel, SequenceBatch, site_name
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
