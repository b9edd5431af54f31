"""Learning-rate rules: after each epoch's validation, whether to divide the learning rate.

A rule is chosen by name in :class:`~pyro_betalstm.infer.TrainConfig` (``lr_rule``) and sees
the validation metric of every epoch so far (lower is better). Each rule may fire only at
epochs ``>= start_epoch``; when it fires, :func:`~pyro_betalstm.infer.fit` divides the learning
rate by ``lr_decay``.

Each rule fires after epoch ``e >= start_epoch`` when:

- ``no_new_best``: epoch ``e`` set no new best (the library's earlier default; once progress
  slows, the rate falls geometrically);
- ``authors``: the metric of epoch ``e`` is higher than each of the three previous epochs'
  (the rule of Song et al.'s music code, ``vloss > max(vloss_list[-3:])`` after epoch 10,
  i.e. ``start_epoch = 11``);
- ``none``: never.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: ``rule(values) -> bool`` where ``values`` are the metrics of epochs 1..e, the last one new.
LrRule = Callable[[Sequence[float]], bool]


def _no_new_best(values: Sequence[float]) -> bool:
    return len(values) > 1 and not values[-1] < min(values[:-1])


def _authors(values: Sequence[float]) -> bool:
    previous = values[-4:-1]
    return len(previous) > 0 and values[-1] > max(previous)


def _never(values: Sequence[float]) -> bool:
    return False


#: The rules by the names ``TrainConfig.lr_rule`` takes (see the module docstring).
LR_RULES: dict[str, LrRule] = {"no_new_best": _no_new_best, "authors": _authors, "none": _never}


def check_lr_rule(name: str) -> str:
    """``name`` if it is a known rule, else ``ValueError`` listing the known ones."""
    if name not in LR_RULES:
        raise ValueError(f"unknown lr_rule {name!r}; expected one of {sorted(LR_RULES)}")
    return name


def lr_rule_fires(name: str, values: Sequence[float], start_epoch: int) -> bool:
    """Whether rule ``name`` divides the learning rate after epoch ``len(values)``.

    ``values``: the validation metric of every epoch so far, oldest first (the training loss
    where there is no validation set). The rule never fires before ``start_epoch``.
    """
    epoch = len(values)
    return epoch >= start_epoch and LR_RULES[check_lr_rule(name)](values)
