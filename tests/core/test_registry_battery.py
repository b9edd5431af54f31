"""The registry-driven battery: every registered gate family and prior, and the case registries
kept in step with the package's registries (a new family or prior fails until it has a case)."""

from __future__ import annotations

import pytest

from pyro_betalstm.gates import (
    GATE_FAMILIES,
    GateFamily,
    SigmoidGates,
    get_gate_family,
    register_gate_family,
)
from pyro_betalstm.priors import PRIORS
from pyro_betalstm.testing import (
    GATE_FAMILY_CASES,
    PRIOR_CASES,
    GateFamilyBattery,
    PriorBattery,
    gate_family_case,
    gate_family_names,
    missing_cases,
    prior_names,
)


@pytest.fixture(params=gate_family_names())
def gate_family(request):
    return request.param


@pytest.fixture(params=gate_family_names(latent=True))
def latent_gate_family(request):
    return request.param


@pytest.fixture(params=prior_names())
def prior_name(request):
    return request.param


class TestGateFamilies(GateFamilyBattery):
    pass


class TestPriors(PriorBattery):
    pass


def test_every_registered_family_and_prior_has_a_case():
    assert missing_cases(GATE_FAMILIES, GATE_FAMILY_CASES) == {"no case": [], "no entry": []}
    assert missing_cases(PRIORS, PRIOR_CASES) == {"no case": [], "no entry": []}


def test_a_family_without_a_case_is_reported():
    registry = {**GATE_FAMILIES, "new": SigmoidGates("new", "new LSTM", 2)}
    assert missing_cases(registry, GATE_FAMILY_CASES) == {"no case": ["new"], "no entry": []}
    with pytest.raises(KeyError, match="'new' is registered but has no test case: add one"):
        gate_family_case("new")


def test_register_gate_family_checks_the_name_and_the_kind():
    with pytest.raises(ValueError, match="'sigmoid' is already registered"):
        register_gate_family(SigmoidGates("sigmoid", "LSTM", 2))
    with pytest.raises(TypeError, match="LatentGateFamily or a DeterministicGateFamily"):
        register_gate_family(GateFamily("plain", "plain", 2))
    assert list(GATE_FAMILIES) == list(GATE_FAMILY_CASES)  # nothing was added


def test_replace_puts_a_new_family_under_a_registered_name(monkeypatch):
    # a notebook cell that registers its family, run twice: the second run is refused unless
    # it says replace=True, and then the new definition is the one a model gets by name
    monkeypatch.setattr("pyro_betalstm.gates.GATE_FAMILIES", dict(GATE_FAMILIES))
    from pyro_betalstm import gates

    first = register_gate_family(SigmoidGates("mine", "mine, first", 2))
    with pytest.raises(ValueError, match="'mine' is already registered .replace=True"):
        register_gate_family(SigmoidGates("mine", "mine, second", 2))
    assert gates.get_gate_family("mine") is first
    second = register_gate_family(SigmoidGates("mine", "mine, second", 2), replace=True)
    assert gates.get_gate_family("mine") is second and second is not first


def test_family_kinds_partition_the_registry():
    latent, deterministic = gate_family_names(latent=True), gate_family_names(latent=False)
    assert sorted(latent + deterministic) == sorted(GATE_FAMILIES)
    assert all(get_gate_family(n).is_latent for n in latent)
    assert not any(get_gate_family(n).is_latent for n in deterministic)
