"""The paper's seven model variants, by the short names the example scripts take (``--variant``).

Each is a gate family and whether the Gamma(0.5, 1) prior term is in the loss. bBLSTM(5G) and
bBLSTM(5G+p) share the Arnold–Ng family; the first trains without the prior term
(``kl_weight = 0``), the second with it. ``music_hidden`` and ``music_dropout`` are the authors'
music settings: hidden sizes chosen so that every variant has about the same number of parameters.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperVariant:
    key: str
    paper_name: str
    gate: str
    prior_term: bool
    music_hidden: int
    music_dropout: float


VARIANTS: dict[str, PaperVariant] = {
    v.key: v
    for v in (
        PaperVariant("lstm", "LSTM", "sigmoid", False, 200, 0.1),
        PaperVariant("cifg", "CIFG", "coupled", False, 232, 0.1),
        PaperVariant("g2lstm", "G2-LSTM", "gumbel", False, 200, 0.1),
        PaperVariant("blstm", "BLSTM", "beta", False, 161, 0.1),
        PaperVariant("bblstm", "bBLSTM", "bivariate", False, 177, 0.1),
        PaperVariant("bblstm5g", "bBLSTM(5G)", "bivariate5", False, 148, 0.2),
        PaperVariant("bblstm5gp", "bBLSTM(5G+p)", "bivariate5", True, 148, 0.2),
    )
}


def get_variant(key: str) -> PaperVariant:
    """Look a variant up by its short name; ``ValueError`` lists the known ones."""
    try:
        return VARIANTS[key]
    except KeyError:
        raise ValueError(f"unknown variant {key!r}; expected one of {list(VARIANTS)}") from None
