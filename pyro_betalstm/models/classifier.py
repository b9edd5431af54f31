"""Sequence classification: the top layer's last valid state to class logits."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from ..batch import SequenceBatch
from ..nn import LayerRun, StochasticLSTM
from ..priors import PriorSpec
from .base import GateModel, any_index_outside, check_size


def class_index_targets(batch: SequenceBatch) -> torch.Tensor:
    """The batch's targets, which must be class indices of shape ``(B,)`` (a ValueError
    otherwise); their range is the model's to check."""
    y = batch.targets
    if y is None or y.shape != (batch.batch_size,):
        raise ValueError(
            f"targets must be class indices of shape ({batch.batch_size},), got "
            f"{None if y is None else tuple(y.shape)}"
        )
    return y


class SequenceClassifier(GateModel):
    """``y ~ Categorical(logits = W h_T + b)`` with ``h_T`` the top layer's last valid state.

    ``batch.targets`` are class indices ``(B,)``. The LSTM's ``output_dropout=True`` drops
    ``h_T`` while training (:meth:`~pyro_betalstm.nn.StochasticLSTM.top_state`).

    :param lstm: the recurrent network, built with ``batch_first=True`` (a ValueError
        otherwise).
    :param num_classes: the number of classes, an integer >= 2 (a TypeError or ValueError
        otherwise).
    :param prior: the gate prior, as for :class:`~pyro_betalstm.models.GateModel`.
    :param kl_weight: the weight of the gate KL, as for :class:`~pyro_betalstm.models.GateModel`.
    """

    def __init__(
        self,
        lstm: StochasticLSTM,
        num_classes: int,
        prior: PriorSpec = None,
        kl_weight: float | None = None,
    ):
        super().__init__(lstm, prior, kl_weight)
        self.num_classes = check_size("num_classes", num_classes, minimum=2)
        self.output = nn.Linear(lstm.hidden_size, self.num_classes)

    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        return self.output(self.lstm.top_state(run))

    def _targets(self, batch: SequenceBatch) -> torch.Tensor:
        y = class_index_targets(batch)
        if any_index_outside(y, self.num_classes):
            raise ValueError(f"targets must lie in [0, {self.num_classes - 1}]")
        return y

    def observation(
        self, run: LayerRun, batch: SequenceBatch
    ) -> tuple[dist.Distribution, torch.Tensor]:
        logits = self.predict_from_run(run, batch)
        return dist.Categorical(logits=logits), self._targets(batch)
