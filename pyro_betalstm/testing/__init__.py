"""Test batteries that a new gate family, prior or task model inherits (used by the tests)."""
