"""Token <-> id maps for the text tasks (sentence classification and captions).

One :class:`Vocabulary` serves both: its special tokens come first, ``<pad>`` at id 0, and
each task names the specials it needs (:data:`WORD_SPECIALS` for classification,
:data:`CAPTION_SPECIALS` for captions, which add the sentence marks ``<bos>`` and ``<eos>``).
Tokens are given as lists (tokenising is the task's job), so a string is never mistaken for
its characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
#: Specials of a classification vocabulary: ``<pad>`` = 0, ``<unk>`` = 1.
WORD_SPECIALS = (PAD, UNK)
#: Specials of a caption vocabulary: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.
CAPTION_SPECIALS = (PAD, BOS, EOS, UNK)


class Vocabulary:
    """Tokens <-> ids, the ``specials`` first (they must include ``<pad>`` first and ``<unk>``).

    Build it with :meth:`build` on the training texts only, so that validation and test tokens
    unseen in training map to ``<unk>`` as they would for new data.

    :param itos: every token, by id; it must start with ``specials``.
    :param specials: the special tokens, :data:`WORD_SPECIALS` or :data:`CAPTION_SPECIALS`.
    """

    def __init__(self, itos: Sequence[str], specials: Sequence[str] = WORD_SPECIALS):
        itos, specials = list(itos), tuple(specials)
        if not specials or specials[0] != PAD or UNK not in specials:
            raise ValueError(f"specials must start with {PAD!r} and hold {UNK!r}, got {specials}")
        if tuple(itos[: len(specials)]) != specials:
            raise ValueError(
                f"a vocabulary must start with {list(specials)}; got {itos[: len(specials)]}"
            )
        if len(set(itos)) != len(itos):
            raise ValueError("vocabulary tokens must be distinct")
        self.itos: list[str] = itos
        self.specials: tuple[str, ...] = specials
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(itos)}

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = WORD_SPECIALS,
    ) -> Vocabulary:
        """Vocabulary of the tokens seen at least ``min_count`` times, most frequent first.

        ``texts`` are token lists. Ties are broken alphabetically so that the ids do not depend
        on the text order. ``max_size`` caps the number of real tokens (specials not counted).
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for tokens in texts:
            if isinstance(tokens, str):
                raise ValueError("build expects token lists (tokenize the texts), got a str")
            counts.update(tokens)
        for special in specials:
            counts.pop(special, None)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[:max_size]
        if not kept:
            raise ValueError(
                f"empty vocabulary: no token occurs at least {min_count} times in the texts"
            )
        return cls([*specials, *kept], specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    @property
    def bos_id(self) -> int:
        """Id of ``<bos>`` (a KeyError naming it when the vocabulary has no sentence marks)."""
        return self._special_id(BOS)

    @property
    def eos_id(self) -> int:
        """Id of ``<eos>`` (a KeyError naming it when the vocabulary has no sentence marks)."""
        return self._special_id(EOS)

    def _special_id(self, token: str) -> int:
        if token not in self.specials:
            raise KeyError(f"this vocabulary has no {token!r} (its specials: {self.specials})")
        return self.stoi[token]

    def encode(self, tokens: Sequence[str], add_bos_eos: bool = False) -> list[int]:
        """Ids of ``tokens`` (unknown ones: ``<unk>``), framed by ``<bos>`` and ``<eos>`` when
        ``add_bos_eos``."""
        if isinstance(tokens, str):
            raise ValueError("encode expects a token list (tokenize the text), got a str")
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return [self.bos_id, *ids, self.eos_id] if add_bos_eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``: ``<pad>`` and ``<bos>`` dropped, stopping at ``<eos>``."""
        skipped = {self.stoi[t] for t in self.specials if t in (PAD, BOS)}
        end = self.stoi[EOS] if EOS in self.specials else None
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary of {len(self.itos)} tokens")
            if i == end:
                break
            if i not in skipped:
                tokens.append(self.itos[i])
        return tokens

    def to_dict(self) -> dict:
        """The saved form (``vocab.json``): every token by id, and the specials."""
        return {"itos": list(self.itos), "specials": list(self.specials)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        """The vocabulary of :meth:`to_dict`; also reads the files written before the two
        vocabularies were one: ``{"itos": ...}`` (classification) and ``{"words": ...}``
        (captions)."""
        if "words" in d:  # an earlier caption vocabulary
            return cls(d["words"], d.get("specials", CAPTION_SPECIALS))
        return cls(d["itos"], d.get("specials", WORD_SPECIALS))
