"""The minibatch type every layer passes around, and the step mask built from its lengths.

A leaf module: it imports torch and nothing of this package, so data loaders (``data/``) build
batches without importing Pyro or the models that consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checks import is_integer

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
    scale (None: the batch is the whole data set); an integer, at least ``B``.

    Checked on construction from Python values and shapes only (no tensor value is read, so
    no host sync per training step): ``dataset_size``, and ``lengths`` given as a list (or
    any sequence) become a tensor on the inputs' device. The values of ``inputs`` and
    ``lengths`` are checked where the network reads them
    (:func:`~pyro_betalstm.nn.stochastic_lstm.validate_sequences`).
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    dataset_size: int | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.lengths is not None and not isinstance(self.lengths, torch.Tensor):
            device = self.inputs.device if isinstance(self.inputs, torch.Tensor) else None
            self.lengths = lengths_tensor(self.lengths, device)
        if self.dataset_size is not None:
            self.dataset_size = _checked_dataset_size(self.dataset_size, self.inputs)

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

    def repeat(self, times: int) -> SequenceBatch:
        """The batch ``times`` over, stacked along the batch (``(times * B, ...)``, copy-major:
        row ``k * B + b`` is sequence ``b``): every per-sequence tensor, extras included, is
        repeated, so that ``times`` gate draws run as one batch. ``dataset_size`` is dropped.
        ``times`` must be a positive integer (a ValueError otherwise)."""
        if not is_integer(times) or times < 1:
            raise ValueError(f"times must be a positive integer, got {times!r}")

        def repeat(t):
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == self.batch_size:
                return t.repeat(times, *[1] * (t.dim() - 1))
            return t

        extras = {k: repeat(v) for k, v in self.extras.items()}
        return SequenceBatch(
            repeat(self.inputs), repeat(self.targets), repeat(self.lengths), None, extras
        )

    @property
    def batch_size(self) -> int:
        """Number of sequences ``B``."""
        return self.inputs.shape[0]

    def num_valid_steps(self) -> int:
        """Valid (unpadded) steps of all sequences: ``B * T`` without ``lengths``."""
        if self.lengths is None:
            return self.inputs.shape[0] * self.inputs.shape[1]
        return int(self.lengths.sum())

    def step_mask(self) -> torch.Tensor:
        """Boolean ``(B, T)`` mask of valid steps, on the CPU (all True without ``lengths``)."""
        B, T = self.inputs.shape[:2]
        if self.lengths is None:
            return torch.ones(B, T, dtype=torch.bool)
        return lengths_to_mask(self.lengths.cpu(), T)


def lengths_tensor(lengths, device=None) -> torch.Tensor:
    """``lengths`` given as a tensor, Python or NumPy data, as a tensor on ``device``; a
    TypeError for what is not a sequence of numbers (strings, ragged lists...)."""
    try:
        return torch.as_tensor(lengths, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"lengths must be a tensor or a sequence of integers, one per sequence; got "
            f"{type(lengths).__name__} ({error})"
        ) from None


def _checked_dataset_size(size, inputs) -> int:
    """``size`` as an int, or a clear error: a positive integer, at least the batch size (the
    plate's scale ``size / B`` must not shrink or flip the likelihood)."""
    if not is_integer(size):
        raise TypeError(
            f"dataset_size must be an integer (the number of sequences the batch was drawn "
            f"from) or None, got {size!r}"
        )
    batch_size = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() else 0
    if size < max(batch_size, 1):
        raise ValueError(
            f"dataset_size must be a positive integer at least the batch size ({batch_size}), "
            f"got {size}"
        )
    return int(size)


def as_whole_numbers(values: torch.Tensor, message: str) -> torch.Tensor:
    """``values`` as int64; floats must be whole numbers (``.long()`` would truncate 0.7 to 0
    and turn NaN into a huge negative number), else a ValueError with ``message``. Reads the
    values: a host sync on a GPU."""
    if values.is_floating_point() and not torch.equal(values, values.round()):
        raise ValueError(message)
    return values.long()
