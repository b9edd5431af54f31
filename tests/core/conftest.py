"""Fixtures of the core tests: a clean Pyro state and float64 where a test asks for it."""

from __future__ import annotations

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _clean_state():
    """Every test starts with an empty param store, validation on and the default dtype kept."""
    dtype = torch.get_default_dtype()
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    torch.set_default_dtype(dtype)
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Run the test in float64 (models and priors must be built inside the test)."""
    torch.set_default_dtype(torch.float64)
    yield torch.float64
