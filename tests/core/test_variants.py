"""The paper's variant table."""

from __future__ import annotations

import pytest

from pyro_betalstm.gates import GATE_FAMILIES
from pyro_betalstm.variants import VARIANTS, get_variant


def test_every_variant_names_a_gate_family_and_only_5g_plus_p_has_the_prior():
    assert len(VARIANTS) == 7
    assert all(v.gate in GATE_FAMILIES for v in VARIANTS.values())
    assert [k for k, v in VARIANTS.items() if v.prior_term] == ["bblstm5gp"]
    assert get_variant("bblstm5g").gate == get_variant("bblstm5gp").gate == "bivariate5"


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(ValueError, match="expected one of .*'lstm'"):
        get_variant("gru")
