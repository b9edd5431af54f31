"""The minibatch type every layer passes around, and the step mask built from its lengths.

A leaf module: it imports torch and nothing of this package, so data loaders (``data/``) build
batches without importing Pyro or the models that consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["SequenceBatch", "lengths_to_mask"]


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, T)`` mask of valid steps from per-sequence lengths."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


@dataclass
class SequenceBatch:
    """A minibatch of (possibly padded) sequences.

    ``inputs``: ``(B, T, D)`` batch first. ``lengths``: ``(B,)`` valid steps or None when all
    are full. ``targets``: task-specific (class labels ``(B,)``, next frames ``(B, T, D')``...).
    ``dataset_size``: number of sequences the minibatch was drawn from, for the subsampling
    scale (None: the batch is the whole data set).
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    dataset_size: int | None = None
    extras: dict = field(default_factory=dict)

    def to(self, device) -> SequenceBatch:
        """The same batch with every tensor (extras included) moved to ``device``."""
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return SequenceBatch(
            move(self.inputs),
            move(self.targets),
            move(self.lengths),
            self.dataset_size,
            {k: move(v) for k, v in self.extras.items()},
        )

    @property
    def batch_size(self) -> int:
        """Number of sequences ``B``."""
        return self.inputs.shape[0]

    def step_mask(self) -> torch.Tensor:
        """Boolean ``(B, T)`` mask of valid steps, on the CPU (all True without ``lengths``)."""
        B, T = self.inputs.shape[:2]
        if self.lengths is None:
            return torch.ones(B, T, dtype=torch.bool)
        return lengths_to_mask(self.lengths.cpu(), T)
