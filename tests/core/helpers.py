"""Small model and data factories shared by the core tests."""

from __future__ import annotations

import torch

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.data import SequenceDataset
from pyro_betalstm.models import NextStepBernoulli, SequenceClassifier
from pyro_betalstm.nn import StochasticLSTM


def make_model(
    head: str = "classifier",
    gate: str = "bivariate",
    input_size: int = 3,
    hidden_size: int = 4,
    num_layers: int = 2,
    prior=None,
    kl_weight: float | None = None,
    num_outputs: int = 3,
    seed: int = 0,
):
    torch.manual_seed(seed)
    lstm = StochasticLSTM(input_size, hidden_size, num_layers, gate=gate, batch_first=True)
    if head == "classifier":
        return SequenceClassifier(lstm, num_outputs, prior=prior, kl_weight=kl_weight)
    return NextStepBernoulli(lstm, num_outputs, prior=prior, kl_weight=kl_weight)


def make_batch(
    head: str = "classifier",
    lengths=(5, 3, 4),
    input_size: int = 3,
    num_outputs: int = 3,
    dataset_size: int | None = 10,
    seed: int = 1,
) -> SequenceBatch:
    """A padded batch; ``lengths=None`` gives full sequences of length 5."""
    g = torch.Generator().manual_seed(seed)
    B = 3 if lengths is None else len(lengths)
    T = 5 if lengths is None else max(lengths)
    x = torch.randn(B, T, input_size, generator=g, dtype=torch.get_default_dtype())
    lengths_t = None if lengths is None else torch.tensor(lengths)
    if lengths_t is not None:
        x = x * (torch.arange(T)[None, :, None] < lengths_t[:, None, None])  # zero padding
    if head == "classifier":
        y = torch.randint(0, num_outputs, (B,), generator=g)
    else:
        y = torch.randint(0, 2, (B, T, num_outputs), generator=g).to(x.dtype)
    return SequenceBatch(x, y, lengths_t, dataset_size=dataset_size)


def make_dataset(
    n: int = 12, head: str = "classifier", input_size: int = 3, num_outputs: int = 3, seed=0
) -> SequenceDataset:
    """Variable-length sequences (lengths 2..6) with class labels or next-step targets."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 7, (n,), generator=g).tolist()
    xs = [torch.randn(t, input_size, generator=g) for t in lengths]
    if head == "classifier":
        ys = torch.randint(0, num_outputs, (n,), generator=g)
    else:
        ys = [
            torch.randint(0, 2, (t, num_outputs), generator=g).to(torch.get_default_dtype())
            for t in lengths
        ]
    return SequenceDataset(xs, ys)
