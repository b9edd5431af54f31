"""The registry-driven battery: every registered gate family and prior, and the case registries
kept in step with the package's registries (a new family or prior fails until it has a case)."""

from __future__ import annotations

import pytest
import torch

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
    GateFamilyCase,
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
    with pytest.raises(ValueError, match="'sigmoid' is built in and cannot be replaced"):
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


def test_a_family_of_ones_own_is_checked_where_it_is_made(monkeypatch):
    # a wrong pre-activation count failed at the first forward pass, in a message about the
    # basis layout; a built-in name could be replaced; a law without log_prob raised a bare
    # NotImplementedError
    from pyro_betalstm.distributions import BivariateBeta, GateDistribution
    from pyro_betalstm.distributions.gate_algebra import GammaRatioGates
    from pyro_betalstm.gates import LatentGateFamily

    class Chained(GateDistribution):
        algebra = GammaRatioGates("Chained", 3, (0,), (1,), (1,), (2,))

    with pytest.raises(ValueError, match="num_gate_preactivations must be the basis size of Ch"):
        LatentGateFamily("chained", "chained", 4, Chained)
    monkeypatch.setattr("pyro_betalstm.gates.GATE_FAMILIES", dict(GATE_FAMILIES))
    with pytest.raises(ValueError, match="'bivariate' is built in and cannot be replaced"):
        register_gate_family(LatentGateFamily("bivariate", "mine", 3, Chained), replace=True)
    assert get_gate_family("bivariate").distribution is BivariateBeta
    with pytest.raises(NotImplementedError, match="Chained has no log_prob: a subclass writes"):
        Chained(torch.ones(3)).log_prob(torch.full((2,), 0.5))


def test_battery_failures_show_the_values(monkeypatch):
    # the batteries' asserts are rewritten by pytest (registered in pyro_betalstm.testing), so
    # a user's failing family shows what differed, not a bare AssertionError
    monkeypatch.setitem(GATE_FAMILY_CASES, "bivariate", GateFamilyCase(4, ((0,), (2,), (1,), (3,))))
    with pytest.raises(AssertionError, match=r"assert 3 == 4"):
        GateFamilyBattery().test_family_agrees_with_its_case("bivariate")


def test_family_kinds_partition_the_registry():
    latent, deterministic = gate_family_names(latent=True), gate_family_names(latent=False)
    assert sorted(latent + deterministic) == sorted(GATE_FAMILIES)
    assert all(get_gate_family(n).is_latent for n in latent)
    assert not any(get_gate_family(n).is_latent for n in deterministic)
