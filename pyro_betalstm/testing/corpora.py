"""Tiny made-up corpora in the layouts the data loaders read, for tests and smoke checks."""

from __future__ import annotations

from pathlib import Path


def write_rt_polarity(folder: Path) -> Path:
    """60 made-up snippets (30 positive, 30 negative, latin-1, one non-ASCII word) as
    ``rt-polarity.pos`` / ``rt-polarity.neg`` in ``folder``, the MR corpus's layout."""
    good = ["good", "great", "witty", "moving", "caf\u00e9-fresh", "superb"]
    bad = ["bad", "dull", "tedious", "flat", "lifeless", "clumsy"]
    pos = [f"a {good[i % 6]} and {good[(i + 1) % 6]} film , number {i} ." for i in range(30)]
    neg = [f"a {bad[i % 6]} and {bad[(i + 2) % 6]} film , number {i} ." for i in range(30)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rt-polarity.pos").write_bytes("\n".join(pos).encode("latin-1"))
    (folder / "rt-polarity.neg").write_bytes("\n".join(neg).encode("latin-1"))
    return folder
