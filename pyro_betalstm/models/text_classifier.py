"""Sentence classification: token embeddings, a stochastic-gate LSTM, the last state to classes."""

from __future__ import annotations

import torch
from torch import nn

from ..batch import SequenceBatch
from ..nn import LayerRun, StochasticLSTM
from ..priors import PriorSpec
from .base import checked_token_ids
from .classifier import SequenceClassifier


class TextClassifier(SequenceClassifier):
    """``y ~ Categorical(W dropout(h_T) + b)`` over ``h_T`` of an LSTM run on word embeddings.

    ``batch.inputs`` hold token ids, ``(B, T, 1)`` or ``(B, T)`` integers with 0 the padding id
    (as :func:`pyro_betalstm.data.text.encode_dataset` makes them). The embedding layer is an
    ordinary parameter trained with the rest (or frozen); the Pyro model and guide embed the
    batch and then proceed as :class:`~pyro_betalstm.models.SequenceClassifier`. Dropout on
    ``h_T`` before the output layer (Kim 2014) acts in the model's likelihood only, never in the
    guide's recurrence.

    :param lstm: the recurrent network, built with ``batch_first=True``; its ``input_size``
        is the embedding size.
    :param vocab_size: number of token ids (including padding and unknown), at least 2 (a
        ValueError otherwise).
    :param num_classes: number of classes, an integer >= 2.
    :param prior: the gate prior, as for :class:`~pyro_betalstm.models.GateModel`.
    :param kl_weight: the weight of the gate KL, as for :class:`~pyro_betalstm.models.GateModel`.
    :param embeddings: optional ``(vocab_size, lstm.input_size)`` initial vectors (GloVe),
        copied into the embedding layer (a ValueError for another shape); None: PyTorch's
        random initialisation.
    :param freeze_embeddings: keep the embeddings fixed (no gradient).
    :param dropout: dropout rate in ``[0, 1)`` on the final state before the output layer,
        while training (after the LSTM's own dropout of it, when it was built with
        ``output_dropout=True``).
    :param padding_idx: the padding id (its embedding is zero and receives no gradient).
    """

    def __init__(
        self,
        lstm: StochasticLSTM,
        vocab_size: int,
        num_classes: int,
        prior: PriorSpec = None,
        kl_weight: float | None = None,
        embeddings: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
        dropout: float = 0.5,
        padding_idx: int = 0,
    ):
        super().__init__(lstm, num_classes, prior, kl_weight)
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.embedding = nn.Embedding(vocab_size, lstm.input_size, padding_idx=padding_idx)
        if embeddings is not None:
            if tuple(embeddings.shape) != (vocab_size, lstm.input_size):
                raise ValueError(
                    f"embeddings must have shape ({vocab_size}, {lstm.input_size}), got "
                    f"{tuple(embeddings.shape)}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(embeddings)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.dropout = nn.Dropout(dropout)

    def token_ids(self, batch: SequenceBatch) -> torch.Tensor:
        """The ``(B, T)`` token ids of a batch, checked."""
        return checked_token_ids(batch.inputs, self.embedding.num_embeddings, "text")

    def embed_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The same batch with ``inputs`` replaced by their embeddings ``(B, T, E)``."""
        return SequenceBatch(
            self.embedding(self.token_ids(batch)),
            batch.targets,
            batch.lengths,
            batch.dataset_size,
            batch.extras,
        )

    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        return self.output(self.dropout(self.lstm.top_state(run)))
