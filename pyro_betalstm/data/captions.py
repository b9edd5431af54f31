"""A SYNTHETIC image-captioning data set built from real digit images, and its vocabulary.

No real captioning data set (COCO, Flickr) can be had offline, so
:func:`build_synthetic_grid_captions` composes one from real images: every image is a 2 x 2
grid (56 x 56 for 28 x 28 digits) whose cells hold MNIST digits drawn, with a fixed seed, from
one split of real MNIST (cells may be empty), and its reference captions are generated from
what is where, with several templates and orderings::

    a seven in the top left and a two in the bottom right
    there is a two in the bottom right and a seven in the top left
    the top left has a seven and the bottom right has a two

The task is called *synthetic* (``synthetic-grid-mnist``) everywhere it appears: its images are
real handwriting, but its layouts and captions are generated, and its scores are not comparable
with scores on COCO.

:func:`caption_vocabulary` maps words to indices (``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` first)
and :class:`CaptionDataset` pairs images with encoded captions as a
:class:`~pyro_betalstm.data.SequenceDataset` whose minibatches carry the images in
``SequenceBatch.extras["images"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..batch import SequenceBatch
from .batching import SequenceDataset
from .vocabulary import CAPTION_SPECIALS, Vocabulary

#: Name of the synthetic task wherever results are written.
SYNTHETIC_NAME = "synthetic-grid-mnist"
#: Cell names in row-major order (cell ``k`` is row ``k // 2``, column ``k % 2``).
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Each reference caption of an image uses a different template (cycled when more are asked).
TEMPLATES = ("plain", "there_is", "has", "at", "shows")
EMPTY = -1


def _article(word: str) -> str:
    return "an" if word == "eight" else "a"  # "one" is said with a consonant


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return " , ".join(parts[:-1]) + " and " + parts[-1]


def caption_from_cells(cells: Sequence[tuple[int, int]], template: str = "plain") -> str:
    """One caption for ``cells``, a list of ``(cell, digit)`` in the order they are mentioned.

    ``cell`` indexes :data:`POSITIONS`; ``digit`` is 0..9. Templates: ``plain`` ("a seven in the
    top left and ..."), ``there_is``, ``has`` ("the top left has a seven ..."), ``at`` and
    ``shows`` ("the image shows a seven in the top left ...").
    """
    if not cells:
        raise ValueError("a caption needs at least one (cell, digit) pair")
    items = []
    for cell, digit in cells:
        if not 0 <= cell < 4 or not 0 <= digit < 10:
            raise ValueError(f"cell must be in 0..3 and digit in 0..9, got ({cell}, {digit})")
        word = DIGIT_WORDS[digit]
        thing, where = f"{_article(word)} {word}", POSITIONS[cell]
        if template == "has":
            items.append(f"the {where} has {thing}")
        elif template == "at":
            items.append(f"{thing} at the {where}")
        elif template in ("plain", "there_is", "shows"):
            items.append(f"{thing} in the {where}")
        else:
            raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
    text = _join(items)
    if template == "there_is":
        text = "there is " + text
    elif template == "shows":
        text = "the image shows " + text
    return text


def captions_for_layout(
    layout: Sequence[int], num_captions: int, rng: np.random.Generator
) -> list[str]:
    """``num_captions`` reference captions of a grid ``layout`` (digit per cell, -1 = empty).

    Caption ``j`` uses template ``TEMPLATES[j % 5]``; the first mentions the digits in reading
    order, the others in an order drawn from ``rng`` (so references differ in wording and order).
    """
    cells = [(k, int(d)) for k, d in enumerate(layout) if d != EMPTY]
    if len(layout) != 4 or not cells:
        raise ValueError(f"layout must have 4 cells with at least one digit, got {list(layout)}")
    if num_captions < 1:
        raise ValueError(f"num_captions must be positive, got {num_captions}")
    captions = []
    for j in range(num_captions):
        order = cells if j == 0 else [cells[i] for i in rng.permutation(len(cells))]
        captions.append(caption_from_cells(order, TEMPLATES[j % len(TEMPLATES)]))
    return captions


def parse_caption(caption: str) -> dict[int, int]:
    """Read back ``{cell: digit}`` from a caption in any of the :data:`TEMPLATES`.

    Recognises "a|an <digit> in|at the <position>" and "the <position> has a|an <digit>";
    other words are ignored, and a cell mentioned twice keeps its first digit. Used to score
    decoded captions by what they say (layout accuracy), which n-gram metrics only approximate.
    """
    words = caption.split()
    digits = {w: d for d, w in enumerate(DIGIT_WORDS)}
    places = {tuple(p.split()): k for k, p in enumerate(POSITIONS)}
    found: dict[int, int] = {}
    for i, word in enumerate(words):
        if word in ("a", "an") and i + 4 < len(words) and words[i + 1] in digits:
            if words[i + 2] in ("in", "at") and words[i + 3] == "the":
                cell = places.get(tuple(words[i + 4 : i + 6]))
                if cell is not None:
                    found.setdefault(cell, digits[words[i + 1]])
        elif word == "the" and i + 4 < len(words) and words[i + 3] == "has":
            cell = places.get(tuple(words[i + 1 : i + 3]))
            if cell is not None and words[i + 4] in ("a", "an") and i + 5 < len(words):
                if words[i + 5] in digits:
                    found.setdefault(cell, digits[words[i + 5]])
    return found


def layout_accuracy(captions: Sequence[str], layouts: np.ndarray) -> float:
    """Fraction of captions that name exactly the digits of their layout, each in its cell."""
    layouts = np.asarray(layouts)
    if len(captions) != len(layouts) or len(captions) == 0:
        raise ValueError(
            f"need one caption per layout (got {len(captions)} captions, {len(layouts)} layouts)"
        )
    hits = 0
    for caption, layout in zip(captions, layouts, strict=True):
        truth = {k: int(d) for k, d in enumerate(layout) if d != EMPTY}
        hits += parse_caption(caption) == truth
    return hits / len(captions)


def cell_accuracy(captions: Sequence[str], layouts: np.ndarray) -> float:
    """Fraction of grid cells a caption gets right: the right digit, or nothing for an empty cell.

    A softer score than :func:`layout_accuracy` (which needs all four cells right at once).
    """
    layouts = np.asarray(layouts)
    if len(captions) != len(layouts) or len(captions) == 0:
        raise ValueError(
            f"need one caption per layout (got {len(captions)} captions, {len(layouts)} layouts)"
        )
    right = 0
    for caption, layout in zip(captions, layouts, strict=True):
        said = parse_caption(caption)
        right += sum(said.get(k, EMPTY) == int(d) for k, d in enumerate(layout))
    return right / (4 * len(captions))


@dataclass
class SyntheticGridCaptions:
    """One split of the synthetic task.

    ``images``: ``(N, 2h, 2w)`` float32 composites; ``layouts``: ``(N, 4)`` digit label per cell in
    row-major order (-1 empty); ``sources``: ``(N, 4)`` index of each cell's digit in the source
    split (-1 empty); ``captions``: ``N`` lists of reference captions.
    """

    images: np.ndarray
    layouts: np.ndarray
    sources: np.ndarray
    captions: list[list[str]]
    name: str = SYNTHETIC_NAME

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict:
        digits = (self.layouts != EMPTY).sum(1)
        return {
            "images": len(self),
            "captions_per_image": len(self.captions[0]) if self.captions else 0,
            "digits_per_image_mean": float(digits.mean()) if len(self) else 0.0,
        }


def build_synthetic_grid_captions(
    images: np.ndarray,
    labels: np.ndarray,
    num_images: int,
    seed: int = 0,
    num_captions: int = 5,
    min_digits: int = 1,
    max_digits: int = 4,
    name: str = SYNTHETIC_NAME,
) -> SyntheticGridCaptions:
    """Compose ``num_images`` 2 x 2 grids from real digit ``images`` ``(M, h, w)`` and ``labels``.

    Each grid holds a number of digits drawn uniformly from ``[min_digits, max_digits]`` in cells
    drawn at random (the other cells are zero), each digit a source image drawn at random; all
    draws come from ``numpy.random.default_rng(seed)``, so the same arguments give the same data.
    Use one split of the source (e.g. MNIST train) per split of the task, so that no source
    image is shared between the task's splits.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(
            f"images must be a non-empty (N, height, width) array, got shape {images.shape}"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},), one per image, got {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("labels must be digits in 0..9")
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    if not 1 <= min_digits <= max_digits <= 4:
        raise ValueError(
            f"need 1 <= min_digits <= max_digits <= 4, got min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    rng = np.random.default_rng(seed)
    h, w = images.shape[1:]
    out = np.zeros((num_images, 2 * h, 2 * w), dtype=np.float32)
    layouts = np.full((num_images, 4), EMPTY, dtype=np.int64)
    sources = np.full((num_images, 4), EMPTY, dtype=np.int64)
    captions = []
    for n in range(num_images):
        count = int(rng.integers(min_digits, max_digits + 1))
        cells = np.sort(rng.choice(4, size=count, replace=False))
        picks = rng.integers(0, images.shape[0], size=count)
        for cell, src in zip(cells, picks, strict=True):
            r, c = divmod(int(cell), 2)
            out[n, r * h : (r + 1) * h, c * w : (c + 1) * w] = images[src]
            layouts[n, cell] = labels[src]
            sources[n, cell] = src
        captions.append(captions_for_layout(layouts[n], num_captions, rng))
    return SyntheticGridCaptions(out, layouts, sources, captions, name)


def caption_vocabulary(captions: Iterable[str], min_count: int = 1) -> Vocabulary:
    """The :class:`~pyro_betalstm.data.vocabulary.Vocabulary` of ``captions`` (its specials
    :data:`~pyro_betalstm.data.vocabulary.CAPTION_SPECIALS`: ``<pad>``, ``<bos>``, ``<eos>``,
    ``<unk>`` = 0..3): the words occurring at least ``min_count`` times, most frequent first."""
    return Vocabulary.build((c.split() for c in captions), min_count, specials=CAPTION_SPECIALS)


def encode_caption(vocab: Vocabulary, caption: str) -> list[int]:
    """Word ids of ``caption`` (unknown words: ``<unk>``) framed by ``<bos>`` and ``<eos>``.

    Captions are lower-case words separated by single spaces (the generator's output), so
    tokenising is ``str.split``.
    """
    if not isinstance(caption, str) or not caption.split():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    return vocab.encode(caption.split(), add_bos_eos=True)


def decode_caption(vocab: Vocabulary, ids: Iterable[int]) -> str:
    """Text of word ``ids``: stops at ``<eos>``, drops ``<pad>`` and ``<bos>``."""
    return " ".join(vocab.decode(ids))


@dataclass
class CaptionDataset(SequenceDataset):
    """Image-caption pairs for teacher forcing.

    ``inputs[n]``: ``(T_n, 1)`` long tensor ``[<bos>, w_1, ..., w_m]``; ``targets[n]``: ``(T_n,)``
    ``[w_1, ..., w_m, <eos>]``; ``images``: ``(N_images, H, W)``; ``image_index[n]``: which image
    caption ``n`` describes. Minibatches put the images in ``extras["images"]`` (``(B, H, W)``).
    """

    images: torch.Tensor | None = None
    image_index: torch.Tensor | None = None
    references: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if self.images is None or self.image_index is None:
            raise ValueError(f"{self.name}: a caption data set needs images and image_index")
        if self.images.dim() != 3:
            raise ValueError(
                f"{self.name}: images must be (N, height, width), got {tuple(self.images.shape)}"
            )
        if self.image_index.shape != (len(self.inputs),):
            raise ValueError(f"{self.name}: image_index must have one entry per caption")
        if len(self.image_index) and (
            self.image_index.min() < 0 or self.image_index.max() >= len(self.images)
        ):
            raise ValueError(
                f"{self.name}: image_index points outside the {len(self.images)} images"
            )

    def batch(self, index) -> SequenceBatch:
        batch = super().batch(index)
        idx = torch.as_tensor([int(i) for i in index], dtype=torch.long)
        batch.extras["images"] = self.images[self.image_index[idx]]
        batch.extras["image_index"] = self.image_index[idx]
        return batch


def caption_dataset(
    split: SyntheticGridCaptions,
    vocab: Vocabulary,
    captions_per_image: int = 1,
    seed: int = 0,
    name: str | None = None,
) -> CaptionDataset:
    """Teacher-forcing pairs: ``captions_per_image`` references per image, chosen by ``seed``."""
    available = len(split.captions[0]) if split.captions else 0
    if not 1 <= captions_per_image <= available:
        raise ValueError(
            f"captions_per_image must lie in [1, {available}] (the references per image), "
            f"got {captions_per_image}"
        )
    rng = np.random.default_rng(seed)
    inputs, targets, owners = [], [], []
    for n, refs in enumerate(split.captions):
        for j in rng.permutation(len(refs))[:captions_per_image]:
            ids = torch.tensor(encode_caption(vocab, refs[j]), dtype=torch.long)
            inputs.append(ids[:-1, None])
            targets.append(ids[1:])
            owners.append(n)
    return CaptionDataset(
        inputs,
        targets,
        name=name or split.name,
        images=torch.as_tensor(split.images, dtype=torch.float32),
        image_index=torch.tensor(owners, dtype=torch.long),
        references=split.captions,
    )
