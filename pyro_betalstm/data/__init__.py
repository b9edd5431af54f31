"""Data sets and loaders. Loaders of named data sets import heavy dependencies lazily."""

from .batching import SequenceDataset

__all__ = ["SequenceDataset"]
