"""`evaluating(model)`: evaluation mode inside the block, the entry mode restored after it."""

import pytest
from torch import nn

from pyro_betalstm.models import evaluating


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_sets_eval_and_restores_the_entry_mode(training):
    net = _net().train(training)
    with evaluating(net) as inside:
        assert inside is net
        assert not any(m.training for m in net.modules())
    assert all(m.training == training for m in net.modules())


def test_evaluating_restores_the_mode_after_an_exception():
    net = _net().train()
    with pytest.raises(RuntimeError, match="boom"), evaluating(net):
        raise RuntimeError("boom")
    assert all(m.training for m in net.modules())
