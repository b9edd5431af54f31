"""Test batteries that every registered gate family, prior and task model inherits.

Task models: :mod:`pyro_betalstm.testing.tasks` (``TASK_CASES``, ``TaskModelTests``).

Each registry of the package has a registry of test cases here, keyed the same way:
:data:`GATE_FAMILY_CASES` for :data:`pyro_betalstm.gates.GATE_FAMILIES` and :data:`PRIOR_CASES`
for :data:`pyro_betalstm.priors.PRIORS`. A case holds what a test needs to know about one entry,
written independently of the package code it checks (the index sets of a latent family's gate
map, the formula of a deterministic family's gates). Tests iterate over the *package's*
registries (:func:`gate_family_names`, :func:`prior_names`) and look the case up, so a newly
registered family or prior fails (:func:`gate_family_case` raises, and
:func:`missing_cases` is non-empty) until its case is added.

The mixins :class:`GateFamilyBattery` and :class:`PriorBattery` hold the shared tests; a test
module subclasses them and provides a parametrised ``gate_family`` or ``prior_name`` fixture::

    @pytest.fixture(params=gate_family_names())
    def gate_family(request):
        return request.param


    @pytest.fixture(params=gate_family_names(latent=True))
    def latent_gate_family(request):
        return request.param


    class TestGateFamilies(GateFamilyBattery):
        pass

To add a gate family: register it (:func:`pyro_betalstm.gates.register_gate_family`), then add
its :class:`GateFamilyCase` to :data:`GATE_FAMILY_CASES`. To add a prior: add it to
:data:`pyro_betalstm.priors.PRIORS`, then its :class:`PriorCase` to :data:`PRIOR_CASES`.
"""

import pytest

# the batteries' asserts say what differed (values, not a bare AssertionError) also when they
# run from a user's own test file; registered before the modules are imported
pytest.register_assert_rewrite(
    "pyro_betalstm.testing.gate_families",
    "pyro_betalstm.testing.priors",
    "pyro_betalstm.testing.tasks",
)

from .gate_families import (  # noqa: E402 (after the rewrite registration)
    GATE_FAMILY_CASES,
    GateFamilyBattery,
    GateFamilyCase,
    gate_family_case,
    gate_family_names,
    ratio_gates,
)
from .priors import PRIOR_CASES, PriorBattery, PriorCase, prior_case, prior_names  # noqa: E402
from .registry import missing_cases  # noqa: E402

__all__ = [
    "GATE_FAMILY_CASES",
    "PRIOR_CASES",
    "GateFamilyBattery",
    "GateFamilyCase",
    "PriorBattery",
    "PriorCase",
    "gate_family_case",
    "gate_family_names",
    "missing_cases",
    "prior_case",
    "prior_names",
    "ratio_gates",
]
