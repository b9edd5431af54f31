"""Data sets and loaders. Loaders of named data sets import heavy dependencies lazily."""

from ._packages import MissingDependency
from .batching import DatasetShard, FixedLengthSequences, SequenceDataset

__all__ = ["DatasetShard", "FixedLengthSequences", "MissingDependency", "SequenceDataset"]
