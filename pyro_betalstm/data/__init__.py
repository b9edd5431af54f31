"""Data sets and loaders. Loaders of named data sets import heavy dependencies lazily."""

from .batching import FixedLengthSequences, SequenceDataset

__all__ = ["FixedLengthSequences", "SequenceDataset"]
