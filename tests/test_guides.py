"""The how-to guides' Python code runs as written (each guide in one namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDES = sorted((Path(__file__).resolve().parents[1] / "guides").glob("*.md"))
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_there_are_guides():
    assert GUIDES, "guides/ has no Markdown guides"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.stem)
def test_guide_code_runs(guide, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # guides that write files write them here
    blocks = CODE_BLOCK.findall(guide.read_text())
    assert blocks, f"{guide.name} has no python code blocks"
    namespace: dict = {"__name__": f"guide_{guide.stem}"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"{guide.name}[block {number}]", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message says which block failed
            raise AssertionError(f"{guide.name}, code block {number} failed: {err!r}") from err
