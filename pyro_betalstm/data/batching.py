"""Sequence data sets and their minibatches: variable-length (padded) and equal-length."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from ..batch import SequenceBatch, as_whole_numbers


def _as_tensors(items: Sequence, what: str, name: str) -> Sequence[torch.Tensor]:
    """``items`` unchanged when all are tensors, else each through ``torch.as_tensor`` (NumPy
    arrays keep their dtype, as tensors do), or a TypeError saying tensors are expected."""
    if all(isinstance(x, torch.Tensor) for x in items):
        return items
    try:
        return [torch.as_tensor(x) for x in items]
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"{name}: {what} must be tensors (or NumPy arrays); got "
            f"{sorted({type(x).__name__ for x in items})} ({error})"
        ) from None


@dataclass
class SequenceDataset:
    """Sequences ``inputs[n]`` of shape ``(T_n, D)`` with per-sequence targets.

    ``targets`` is either a tensor with one entry per sequence (class labels) or a list of
    per-step tensors ``(T_n, D')`` (next-step targets), padded together with the inputs.
    NumPy arrays in place of tensors are converted with ``torch.as_tensor`` (dtype kept).
    """

    inputs: Sequence[torch.Tensor]
    targets: torch.Tensor | Sequence[torch.Tensor] | None = None
    name: str = "data"

    def __post_init__(self):
        self.inputs = _as_tensors(self.inputs, "sequences", self.name)
        if self.targets is not None and not isinstance(self.targets, torch.Tensor):
            if hasattr(self.targets, "__array__"):  # one array of labels, as a tensor would be
                self.targets = torch.as_tensor(self.targets)
            else:
                self.targets = _as_tensors(self.targets, "per-step targets", self.name)
        if len(self.inputs) == 0:
            raise ValueError(f"{self.name}: the data set is empty; expected at least one sequence")
        widths = {tuple(x.shape[1:]) for x in self.inputs}
        if any(x.dim() != 2 for x in self.inputs) or len(widths) != 1:
            raise ValueError(
                f"{self.name}: every sequence must be a 2-D (time, features) tensor with the same "
                f"feature width; got shapes like {sorted({tuple(x.shape) for x in self.inputs})[:3]}"
            )
        if any(x.shape[0] == 0 for x in self.inputs):
            raise ValueError(f"{self.name}: sequences must have at least one step")
        if self.targets is not None and len(self.targets) != len(self.inputs):
            raise ValueError(
                f"{self.name}: {len(self.targets)} targets for {len(self.inputs)} sequences"
            )
        if self.targets is not None and not isinstance(self.targets, torch.Tensor):
            self._check_step_targets()

    def _check_step_targets(self) -> None:
        """Per-step targets: as many steps as their inputs, one feature width for all (else
        padding them into a batch fails mid-training)."""
        for x, y in zip(self.inputs, self.targets, strict=True):
            if y.dim() == 0:
                raise ValueError(
                    f"{self.name}: targets must be one tensor of class labels or a list of "
                    f"per-step tensors; got a list of scalars (use torch.tensor(labels))"
                )
            if y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{self.name}: per-step targets must have as many steps as their inputs "
                    f"({y.shape[0]} != {x.shape[0]})"
                )
        widths = {tuple(y.shape[1:]) for y in self.targets}
        if len(widths) != 1:
            raise ValueError(
                f"{self.name}: per-step targets must all have the same feature width; got "
                f"widths {sorted(widths)[:3]}"
            )

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def input_size(self) -> int:
        return self.inputs[0].shape[1]

    def batch(self, index: Sequence[int] | torch.Tensor) -> SequenceBatch:
        """Pad the sequences at ``index`` into one :class:`~pyro_betalstm.batch.SequenceBatch`."""
        index = [int(i) for i in index]
        xs = [self.inputs[i] for i in index]
        lengths = torch.tensor([x.shape[0] for x in xs])
        inputs = pad_sequence(xs, batch_first=True)
        targets = None
        if isinstance(self.targets, torch.Tensor):
            targets = self.targets[index]
        elif self.targets is not None:
            targets = pad_sequence([self.targets[i] for i in index], batch_first=True)
        full = bool((lengths == inputs.shape[1]).all())
        return SequenceBatch(inputs, targets, None if full else lengths, dataset_size=len(self))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket: bool = False,
    ) -> Iterator[SequenceBatch]:
        """Minibatches in order, or shuffled with ``generator`` (for reproducible epochs).

        ``bucket=True`` groups sequences of similar length into the same minibatch, which cuts
        padding: with ``shuffle``, ties are broken at random and the minibatches come in random
        order; without it (evaluation), shortest first, ties in file order.
        """
        for chunk in self.batch_indices(batch_size, shuffle, generator, bucket):
            yield self.batch(chunk)

    def batch_indices(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket: bool = False,
    ) -> list[torch.Tensor]:
        """The sequence indices of each minibatch :meth:`batches` yields, in its order (the
        same draws from ``generator``): what a data-parallel run shares out among its ranks."""
        order = _index_order(len(self), batch_size, shuffle, generator)
        return _chunks(order, self.inputs if bucket else None, batch_size, shuffle, generator)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


def _chunks(
    order: torch.Tensor,
    sequences: Sequence[torch.Tensor] | None,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
) -> list[torch.Tensor]:
    """``order`` cut into minibatches of ``batch_size``. With ``sequences`` (bucketing) the
    order is first sorted by their lengths (stable: ties keep ``order``), shortest first, and
    the minibatches are shuffled with ``generator`` when ``shuffle``."""
    if sequences is not None:
        lengths = torch.tensor([sequences[int(i)].shape[0] for i in order], dtype=torch.long)
        order = order[torch.argsort(lengths, stable=True)]
    chunks = list(order.split(batch_size))
    if sequences is not None and shuffle:
        chunks = [chunks[int(i)] for i in torch.randperm(len(chunks), generator=generator)]
    return chunks


def _index_order(
    n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """The order in which an epoch visits ``n`` sequences (one ``randperm`` draw when
    shuffled), after checking ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


class FixedLengthSequences:
    """Equal-length sequences ``inputs (N, T, D)`` with class labels ``targets (N,)`` (whole
    numbers, stored as integers).

    The drop-in for :class:`~pyro_betalstm.data.SequenceDataset` (same ``batches``/``batch``/
    ``num_batches`` interface) when every sequence has the same length: a minibatch is one index
    into a stored tensor, with no padding, no length bookkeeping and ``lengths=None`` (so the
    LSTM runs without masks).
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, name: str = "data"):
        if inputs.dim() != 3:
            raise ValueError(f"{name}: inputs must be (N, T, D), got {tuple(inputs.shape)}")
        if inputs.shape[0] == 0 or inputs.shape[1] == 0:
            raise ValueError(f"{name}: need at least one sequence of at least one step")
        if targets.shape != (inputs.shape[0],):
            raise ValueError(
                f"{name}: targets must have shape ({inputs.shape[0]},), got {tuple(targets.shape)}"
            )
        targets = as_whole_numbers(targets, f"{name}: targets must be whole-number class labels")
        self.inputs, self.targets, self.name = inputs, targets, name

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def input_size(self) -> int:
        return self.inputs.shape[2]

    def batch(self, index: Sequence[int] | torch.Tensor) -> SequenceBatch:
        """The sequences at ``index`` as one :class:`~pyro_betalstm.batch.SequenceBatch` (no
        lengths: all full)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return SequenceBatch(self.inputs[index], self.targets[index], None, dataset_size=len(self))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket: bool = False,
    ) -> Iterator[SequenceBatch]:
        """Minibatches in order, or shuffled with ``generator``; ``bucket`` is a no-op here."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = len(self)
        if shuffle:
            for chunk in self.batch_indices(batch_size, shuffle, generator):
                yield self.batch(chunk)
        else:  # contiguous slices are views: no copy
            for start in range(0, n, batch_size):
                yield SequenceBatch(
                    self.inputs[start : start + batch_size],
                    self.targets[start : start + batch_size],
                    None,
                    dataset_size=n,
                )

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batch_indices(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket: bool = False,
    ) -> list[torch.Tensor]:
        """The sequence indices of each minibatch :meth:`batches` yields, in its order (the
        same draws from ``generator``; ``bucket`` is a no-op here)."""
        return list(_index_order(len(self), batch_size, shuffle, generator).split(batch_size))


class DatasetShard:
    """The sequences ``indices`` of ``data`` (a :class:`SequenceDataset` or
    :class:`FixedLengthSequences`), with the ``batches`` / ``num_batches`` interface that
    evaluation uses: one rank's part of a validation set in a data-parallel run. Any other
    attribute (``input_size``, a caption set's vocabulary...) is the whole data set's."""

    def __init__(self, data, indices: Sequence[int] | torch.Tensor):
        self.data = data
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        if self.indices.numel() and not (
            0 <= int(self.indices.min()) <= int(self.indices.max()) < len(data)
        ):
            raise ValueError(
                f"shard indices must lie in [0, {len(data)}), got {self.indices.tolist()[:5]}..."
            )

    @classmethod
    def of_rank(cls, data, rank: int, world_size: int) -> DatasetShard:
        """Every ``world_size``-th sequence of ``data`` from ``rank`` on (disjoint shards that
        cover it)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        return cls(data, torch.arange(rank, len(data), world_size))

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getattr__(self, name: str):
        if name == "data":  # not set yet (a copy or unpickling in progress): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def batch(self, index: Sequence[int] | torch.Tensor) -> SequenceBatch:
        return self.data.batch(self.indices[torch.as_tensor(index, dtype=torch.long)])

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        bucket: bool = False,
    ) -> Iterator[SequenceBatch]:
        """Minibatches of the shard's sequences, in shard order or shuffled with
        ``generator``; ``bucket`` sorts them by length first, as
        :meth:`SequenceDataset.batches` does (a no-op over equal-length sequences)."""
        order = _index_order(len(self), batch_size, shuffle, generator)
        if len(order) == 0:  # a rank with no sequence (fewer than ranks): no batch at all
            return
        sequences = None
        if bucket and isinstance(self.data, SequenceDataset):
            sequences = [self.data.inputs[int(i)] for i in self.indices]
        for chunk in _chunks(order, sequences, batch_size, shuffle, generator):
            yield self.batch(chunk)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)
