"""Image captioning: a small CNN encoder and a stochastic-gate LSTM decoder (Show and Tell style).

The image enters the decoder's inputs: with ``image_input="first"`` (Show and Tell) step 0
reads ``embed(<bos>) + W cnn(image)`` and step ``t > 0`` reads ``embed(w_t)``; with
``image_input="every"`` (the default) every step reads ``embed(w_t) + W cnn(image)``, which gives
the CNN a gradient at every word (trained from scratch behind only the first input, it was still
ignored after six epochs of the synthetic task; see docs/results/image_captioning.md). Step
``t`` predicts ``w_{t+1}`` (the last one ``<eos>``). Training is teacher forcing inside the
:class:`~pyro_betalstm.models.GateModel` program: ``w_{t+1} ~ Categorical(logits = W h_t + b)``
at every valid step, so every gate family trains through the same SVI path as the other tasks.
Decoding (greedy and beam search) uses the paper's mean gates.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from ..batch import SequenceBatch
from ..nn import LayerRun, StochasticLSTM
from ..priors import PriorSpec
from .base import GateModel, any_index_outside, checked_token_ids
from .modes import evaluating


class ConvEncoder(nn.Module):
    """Three conv-ReLU-maxpool blocks, then a ``grid x grid`` adaptive average pool.

    Pooling to a coarse grid (not a global pool) keeps *where* features are, which the captions
    of the synthetic grid task are about. Input ``(B, H, W)`` or ``(B, 1, H, W)``; output
    ``(B, out_features)``.

    :param out_features: size of the output features.
    :param channels: output channels of each conv-ReLU-maxpool block, one block per entry.
    :param grid: side of the adaptive average pool's grid.
    """

    def __init__(
        self, out_features: int, channels: Sequence[int] = (16, 32, 64), grid: int = 2
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            previous = c
        layers.append(nn.AdaptiveAvgPool2d(grid))
        self.features = nn.Sequential(*layers)
        self.project = nn.Linear(previous * grid * grid, out_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of grey-scale images ``(B, H, W)`` or ``(B, 1, H, W)``: ``(B, out_features)``;
        another shape is a ValueError."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(
                f"images must be (B, H, W) or (B, 1, H, W) grey-scale, got {tuple(images.shape)}"
            )
        return self.project(self.features(images).flatten(1))


class CaptionDecoder(GateModel):
    """``p(caption | image)``: CNN features as the first input of a stochastic-gate LSTM.

    Batches (see :class:`~pyro_betalstm.data.captions.CaptionDataset`) hold token indices
    ``inputs`` ``(B, T, 1)`` = ``[<bos>, w_1, ..., w_m]``, ``targets`` ``(B, T)`` =
    ``[w_1, ..., w_m, <eos>]`` (padding masked by ``lengths``) and the images in
    ``extras["images"]`` ``(B, H, W)``. The NLL is reported per predicted token.

    :param lstm: the decoder, built with ``batch_first=True``; its ``input_size`` is the
        word-embedding size (and the size of the image features).
    :param vocab_size: number of words including ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``,
        at least 4 (a ValueError otherwise).
    :param prior: the gate prior, as for :class:`~pyro_betalstm.models.GateModel`.
    :param kl_weight: the weight of the gate KL, as for :class:`~pyro_betalstm.models.GateModel`.
    :param cnn_channels: output channels of the image encoder's conv-ReLU-maxpool blocks,
        one block per entry (:class:`~pyro_betalstm.models.caption.ConvEncoder`).
    :param image_input: ``"every"`` (image features added to every step's input) or ``"first"``
        (only to the first, as in Show and Tell); a ValueError otherwise.
    :param dropout: dropout rate in ``[0, 1)`` on the decoder inputs (embeddings plus image
        features) and on the decoder outputs while training (after the LSTM's own dropout of
        its outputs, when it was built with ``output_dropout=True``).
    :param pad_index: index of ``<pad>`` (its embedding is zero and receives no gradient).
    :param bos_index: index of ``<bos>``, the first input of every caption.
    :param eos_index: index of ``<eos>``, which ends a caption.
    """

    def __init__(
        self,
        lstm: StochasticLSTM,
        vocab_size: int,
        prior: PriorSpec = None,
        kl_weight: float | None = None,
        cnn_channels: Sequence[int] = (16, 32, 64),
        image_input: str = "every",
        dropout: float = 0.0,
        pad_index: int = 0,
        bos_index: int = 1,
        eos_index: int = 2,
    ):
        super().__init__(lstm, prior, kl_weight)
        if vocab_size < 4:
            raise ValueError(f"vocab_size must be at least 4 (the special words), got {vocab_size}")
        if image_input not in ("every", "first"):
            raise ValueError(f"image_input must be 'every' or 'first', got {image_input!r}")
        self.image_input = image_input
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        self.pad_index, self.bos_index, self.eos_index = pad_index, bos_index, eos_index
        self.embedding = nn.Embedding(vocab_size, lstm.input_size, padding_idx=pad_index)
        self.encoder = ConvEncoder(lstm.input_size, cnn_channels)
        self.output = nn.Linear(lstm.hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    # ----- inputs ------------------------------------------------------------------------------
    def _tokens(self, batch: SequenceBatch) -> torch.Tensor:
        return checked_token_ids(batch.inputs, self.vocab_size, "caption")

    def _images(self, batch: SequenceBatch) -> torch.Tensor:
        images = batch.extras.get("images")
        if images is None:
            raise ValueError("caption batches need the images in batch.extras['images']")
        if images.shape[0] != batch.batch_size:
            raise ValueError(
                f"{images.shape[0]} images for {batch.batch_size} captions; expected one each"
            )
        return images

    def embed_batch(self, batch: SequenceBatch) -> SequenceBatch:
        """The decoder's float inputs ``(B, T, E)``: word embeddings plus image features."""
        x = self.embedding(self._tokens(batch))
        image = self._image_features(self._images(batch))
        if self.image_input == "every":
            x = x + image[:, None]
        else:
            x = torch.cat([x[:, :1] + image[:, None], x[:, 1:]], dim=1)
        x = self.dropout(x)
        return SequenceBatch(x, batch.targets, batch.lengths, batch.dataset_size, batch.extras)

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's features of ``images`` in the model's dtype (a data set stores float32
        images; a ``.double()`` model scores and decodes them alike)."""
        return self.encoder(images.to(self.embedding.weight.dtype))

    # ----- likelihood --------------------------------------------------------------------------
    def predict_from_run(self, run: LayerRun, batch: SequenceBatch) -> torch.Tensor:
        """Next-word logits ``(B, T, vocab_size)``."""
        return self.output(self.dropout(self.lstm.top_output(run)))

    def _targets(self, batch: SequenceBatch) -> torch.Tensor:
        y = batch.targets
        expected = tuple(batch.inputs.shape[:2])
        if y is None or tuple(y.shape) != expected or y.is_floating_point():
            raise ValueError(
                f"targets must be token indices of shape {expected} (batch, time), got "
                f"{None if y is None else (y.dtype, tuple(y.shape))}"
            )
        if any_index_outside(y, self.vocab_size):
            raise ValueError(f"target indices must lie in [0, {self.vocab_size - 1}]")
        return y

    def observation(
        self, run: LayerRun, batch: SequenceBatch
    ) -> tuple[dist.Distribution, torch.Tensor]:
        """Next words at every valid step: ``log p(caption | image, gates)`` per caption."""
        words = dist.Categorical(logits=self.predict_from_run(run, batch))  # (B, T)
        return self.over_valid_steps(words, batch), self._targets(batch)

    def num_predictions(self, batch: SequenceBatch) -> int:
        """Predicted tokens (words and ``<eos>``): the NLL is reported per token."""
        return batch.num_valid_steps()

    # ----- scoring and decoding with the paper's mean gates ------------------------------------
    @torch.no_grad()
    def score_captions(
        self, images: torch.Tensor, captions: Sequence[Sequence[int]]
    ) -> torch.Tensor:
        """Teacher-forced ``log p(tokens | image)`` with mean gates, one per caption ``(B,)``.

        ``captions[b]`` are the predicted tokens (for a finished caption, its words then
        ``<eos>``); the decoder reads ``<bos>`` and all but the last of them.
        """
        if len(captions) != images.shape[0] or any(len(c) == 0 for c in captions):
            raise ValueError("need one non-empty token sequence per image")
        device = images.device
        targets = nn.utils.rnn.pad_sequence(
            [torch.as_tensor(list(c), dtype=torch.long, device=device) for c in captions],
            batch_first=True,
            padding_value=self.pad_index,
        )
        bos = torch.full((len(captions), 1), self.bos_index, dtype=torch.long, device=device)
        inputs = torch.cat([bos, targets[:, :-1]], dim=1)
        lengths = torch.tensor([len(c) for c in captions], device=device)
        batch = SequenceBatch(inputs[..., None], targets, lengths, extras={"images": images})
        with evaluating(self):
            return self.log_likelihood(self.run_network(batch, "mean")[-1], batch)

    def _step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        """One decoder step from inputs ``x`` ``(N, E)``; next-word log-probabilities and state."""
        hx = (torch.stack([h for h, _ in state]), torch.stack([c for _, c in state]))
        runs = self.lstm.run(x[:, None], None, hx, gate_mode="mean")  # eval: no dropout
        new_state = [(run.h_n, run.c_n) for run in runs]
        log_p = self.output(runs[-1].outputs[:, 0]).log_softmax(-1)
        # <pad> and <bos> are never predicted (their log-probabilities stay in the normaliser)
        log_p[:, [self.pad_index, self.bos_index]] = -torch.inf
        return log_p, new_state

    def _start(self, images: torch.Tensor, copies: int):
        if images.dim() not in (3, 4) or images.shape[0] == 0:
            raise ValueError(
                f"images must be a non-empty (B, H, W) batch, got {tuple(images.shape)}"
            )
        feature = self._image_features(images).repeat_interleave(copies, dim=0)
        n, hidden = feature.shape[0], self.lstm.hidden_size
        bos = torch.full((n,), self.bos_index, dtype=torch.long, device=feature.device)
        zeros = feature.new_zeros(n, hidden)
        state = [(zeros, zeros) for _ in self.lstm.layers]
        # inputs after the first: word embedding plus (per row) the image features, or nothing
        extra = feature if self.image_input == "every" else torch.zeros_like(feature)
        return self.embedding(bos) + feature, state, extra

    @torch.no_grad()
    def greedy_decode(
        self, images: torch.Tensor, max_length: int = 40
    ) -> tuple[list[list[int]], torch.Tensor]:
        """Most probable word at every step (mean gates) until ``<eos>`` or ``max_length`` words.

        Returns the word indices of each caption (without ``<eos>``) and the log-probability of
        the predicted tokens (``<eos>`` included when it was reached), ``(B,)``.
        """
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        with evaluating(self):
            x, state, extra = self._start(images, 1)
            B = images.shape[0]
            captions: list[list[int]] = [[] for _ in range(B)]
            total = x.new_zeros(B)
            live = torch.ones(B, dtype=torch.bool, device=x.device)
            for _ in range(max_length):
                log_p, state = self._step(x, state)
                best, word = log_p.max(dim=-1)
                total = total + torch.where(live, best, best.new_zeros(()))
                for b in live.nonzero().flatten().tolist():
                    if word[b] != self.eos_index:
                        captions[b].append(int(word[b]))
                live = live & (word != self.eos_index)
                if not bool(live.any()):
                    break
                x = self.embedding(word) + extra
            return captions, total

    @torch.no_grad()
    def beam_decode(
        self, images: torch.Tensor, beam_size: int = 3, max_length: int = 40
    ) -> tuple[list[list[int]], torch.Tensor]:
        """Beam search with mean gates: the highest total log-probability caption found.

        Keeps ``beam_size`` partial captions per image; a caption ends at ``<eos>`` or after
        ``max_length`` tokens. ``beam_size=1`` is greedy decoding. Returns the word indices of
        each caption (without ``<eos>``) and its log-probability ``(B,)``.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be positive, got {beam_size}")
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        with evaluating(self):
            return self._beam(images, beam_size, max_length)

    def _beam(self, images, K: int, max_length: int):
        B, V = images.shape[0], self.vocab_size
        x, state, extra = self._start(images, K)
        device = x.device
        # only the first copy of each image starts live, so the first expansion has no duplicates
        scores = torch.full((B, K), -torch.inf, device=device)
        scores[:, 0] = 0.0
        tokens = torch.empty(B, K, 0, dtype=torch.long, device=device)
        finished = torch.zeros(B, K, dtype=torch.bool, device=device)
        rows = torch.arange(B, device=device)[:, None]
        for _ in range(max_length):
            log_p, state = self._step(x, state)
            log_p = log_p.view(B, K, V)
            # a finished caption continues only with <pad>, at no cost
            done = torch.full((V,), -torch.inf, device=device)
            done[self.pad_index] = 0.0
            log_p = torch.where(finished[..., None], done, log_p)
            candidates = (scores[..., None] + log_p).view(B, K * V)
            scores, flat = candidates.topk(K, dim=1)
            beam, word = flat // V, flat % V
            tokens = torch.cat([tokens[rows, beam], word[..., None]], dim=-1)
            finished = finished[rows, beam] | (word == self.eos_index)
            order = (rows * K + beam).flatten()
            state = [(h[order], c[order]) for h, c in state]
            if bool((finished | scores.isneginf()).all()):  # -inf: beams never started
                break
            # rows stay within their image's block of K, so ``extra`` needs no reordering
            x = self.embedding(word.flatten()) + extra
        best = scores.argmax(dim=1)
        captions = []
        for b in range(B):
            words = []
            for w in tokens[b, best[b]].tolist():
                if w in (self.eos_index, self.pad_index):
                    break
                words.append(w)
            captions.append(words)
        return captions, scores[torch.arange(B, device=device), best]
