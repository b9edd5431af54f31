"""Tiny models, data and settings for the fault-injection suite (also imported by the child
process that is killed), so that every case runs in well under a second of training."""

from __future__ import annotations

import torch

from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.infer import TrainConfig
from pyro_betalstm.models import SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM

NUM_EPOCHS = 6


def make_model(gate: str = "bivariate", seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)
    return SequenceClassifier(StochasticLSTM(3, 4, 1, gate=gate, batch_first=True), 3)


def make_data(n: int = 6, seed: int = 0) -> SequenceDataset:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 6, (n,), generator=g).tolist()
    xs = [torch.randn(t, 3, generator=g) for t in lengths]
    return SequenceDataset(xs, torch.randint(0, 3, (n,), generator=g))


def make_config(**kw) -> TrainConfig:
    base = dict(
        num_epochs=NUM_EPOCHS, batch_size=2, lr=1e-2, progress=False, seed=0, seed_globals=True
    )
    base.update(kw)
    return TrainConfig(**base)
