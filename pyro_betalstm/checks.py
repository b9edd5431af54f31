"""Type predicates for argument checks: Python's bools are integers, but never a size or a rate."""

from __future__ import annotations

import numbers


def is_integer(value) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real_number(value) -> bool:
    """Whether ``value`` is a real number (an integer or a float, Python's or numpy's), and
    not a bool; NaN and infinities are numbers here (the caller checks the range)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
