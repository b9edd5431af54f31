"""Fixtures of the fault-injection suite: a clean Pyro state for every test."""

from __future__ import annotations

import pyro
import pytest


@pytest.fixture(autouse=True)
def _clean_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()
