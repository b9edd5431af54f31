"""Parameter counts of stochastic-gate LSTMs, and hidden sizes matched to a parameter budget.

The paper compares gate families at about equal parameter counts: a family with more gate
pre-activations per unit (``bivariate5`` has five, the LSTM two) gets fewer hidden units.
:func:`layer_parameters` counts one layer's weights; :func:`matched_hidden_size` searches the
hidden size that fits a budget for any counting function (one layer, a stack, a stack plus an
output layer...).

Example::

    budget = layer_parameters("sigmoid", 50, 128)  # an LSTM of 128 units on 50-d inputs
    matched_hidden_size(lambda h: layer_parameters("bivariate5", 50, h), budget, "closest")  # 92
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ..gates import get_gate_family

MatchRule = Literal["closest", "at_most"]
MATCH_RULES: tuple[str, ...] = ("closest", "at_most")


def layer_parameters(gate: str, input_size: int, hidden: int) -> int:
    """Weights of one :class:`~pyro_betalstm.nn.GateLayer` of ``gate`` (with bias).

    Each of its ``num_gate_preactivations + 2`` pre-activation blocks (gate blocks, cell input
    ``g``, output gate ``o``) has ``hidden`` rows over the input, the previous hidden state and
    a bias: ``blocks * hidden * (input_size + hidden + 1)``. For ``sigmoid`` that is
    ``torch.nn.LSTM``'s count less the second of its two bias vectors.
    """
    blocks = get_gate_family(gate).num_gate_preactivations + 2
    return blocks * hidden * (input_size + hidden + 1)


def matched_hidden_size(count: Callable[[int], int], budget: int, rule: MatchRule) -> int:
    """Hidden size ``h >= 1`` whose parameter count ``count(h)`` matches ``budget``.

    ``count`` must increase strictly with ``h``. ``rule="closest"``: the ``h`` whose count is
    nearest to ``budget`` (the smaller one on a tie; 1 when even ``count(1)`` is over the
    budget). ``rule="at_most"``: the largest ``h`` with ``count(h) <= budget``; ``ValueError``
    when ``count(1)`` already exceeds it.
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {list(MATCH_RULES)}")
    hidden, current = 1, count(1)
    if rule == "at_most" and current > budget:
        raise ValueError(
            f"budget {budget} is below count(1) = {current}: no hidden size has at most "
            "that many parameters"
        )
    following = count(2)
    while following <= budget:
        if following <= current:
            raise ValueError(
                f"count must increase with the hidden size; count({hidden + 1}) "
                f"= {following} after count({hidden}) = {current}"
            )
        hidden, current, following = hidden + 1, following, count(hidden + 2)
    if rule == "closest" and abs(following - budget) < abs(current - budget):
        hidden += 1
    return hidden
