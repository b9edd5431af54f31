"""Next-step density of binary vectors (polyphonic music): frame ``t`` predicts frame ``t + 1``."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from ..batch import SequenceBatch
from ..nn import LayerRun, StochasticLSTM
from ..priors import PriorSpec
from .base import GateModel, check_size


class NextStepBernoulli(GateModel):
    """``y_t ~ Bernoulli(logits = W h_t + b)`` independently over ``output_size`` keys.

    ``batch.inputs`` are frames ``seq[:-1]`` and ``batch.targets`` frames ``seq[1:]``
    (``(B, T, output_size)`` in {0, 1}); padded steps are masked. Integer or bool targets are
    converted to the model's float dtype; the inputs must already have the network's dtype.

    :param lstm: the recurrent network, built with ``batch_first=True`` (a ValueError
        otherwise); its ``input_size`` is the frame width.
    :param output_size: keys per frame (88 for the piano roll), an integer >= 1 (a TypeError
        or ValueError otherwise).
    :param prior: the gate prior, as for :class:`~pyro_betalstm.models.GateModel`.
    :param kl_weight: the weight of the gate KL, as for :class:`~pyro_betalstm.models.GateModel`.
    """

    def __init__(
        self,
        lstm: StochasticLSTM,
        output_size: int,
        prior: PriorSpec = None,
        kl_weight: float | None = None,
    ):
        super().__init__(lstm, prior, kl_weight)
        self.output_size = check_size("output_size", output_size)
        self.output = nn.Linear(lstm.hidden_size, self.output_size)

    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        return self.output(self.lstm.top_output(run))

    def _targets(self, batch: SequenceBatch) -> torch.Tensor:
        y = batch.targets
        expected = (*batch.inputs.shape[:2], self.output_size)
        if y is None or tuple(y.shape) != expected:
            raise ValueError(
                f"targets must have shape {expected} (batch, time, keys), got "
                f"{None if y is None else tuple(y.shape)}"
            )
        if not y.is_floating_point():  # binary frames stored as integers or bools
            y = y.to(self.output.weight.dtype)
        return y

    def observation(
        self, run: LayerRun, batch: SequenceBatch
    ) -> tuple[dist.Distribution, torch.Tensor]:
        keys = dist.Bernoulli(logits=self.predict_from_run(run, batch))  # (B, T, output_size)
        return self.over_valid_steps(keys, batch), self._targets(batch)

    @torch.no_grad()
    def init_output_bias(self, frequencies: torch.Tensor) -> None:
        """Start the output bias at the log-odds of each key's training frequency.

        Without it the first epochs only learn how sparse the frames are (an untrained model
        scores about 61 nats per frame on 88 keys); with it training starts at the per-key
        frequency baseline.

        :param frequencies: ``(output_size,)`` shares of frames with each key on, in ``[0, 1]``
            (0 and 1 are moved 1e-4 inside, where the log-odds are finite).
        """
        p = torch.as_tensor(frequencies, dtype=self.output.bias.dtype)
        if p.shape != (self.output_size,):
            raise ValueError(
                f"frequencies must have shape ({self.output_size},), got {tuple(p.shape)}"
            )
        outside = ~((p >= 0) & (p <= 1))  # NaN fails both comparisons
        if bool(outside.any()):
            k = int(outside.nonzero()[0])
            raise ValueError(
                f"frequencies must be finite and lie in [0, 1] (each key's share of frames); "
                f"got frequencies[{k}] = {float(p[k])}"
            )
        self.output.bias.copy_(torch.logit(p.clamp(1e-4, 1 - 1e-4)))

    def num_predictions(self, batch: SequenceBatch) -> int:
        """Predicted frames: the NLL is reported per frame, summed over keys."""
        return batch.num_valid_steps()
