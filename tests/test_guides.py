"""The how-to guides' Python code runs as written (each guide in one namespace, in order)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

GUIDES = sorted((Path(__file__).resolve().parents[1] / "guides").glob("*.md"))
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
#: A python block after ``<!-- file: NAME -->`` is a file the reader saves (a module of
#: theirs, a test file): the test writes it into the guide's folder instead of running it.
GUIDE_BLOCK = re.compile(r"(?:<!-- file: (\S+) -->\n)?```python\n(.*?)```", re.DOTALL)


def test_there_are_guides():
    assert GUIDES, "guides/ has no Markdown guides"


@pytest.fixture
def own_registries():
    """The registries a guide may add to (its own family, prior and their test cases) are
    restored, in place, after it: no other test sees what a guide registered."""
    from pyro_betalstm.gates import GATE_FAMILIES
    from pyro_betalstm.priors import PRIORS
    from pyro_betalstm.testing import GATE_FAMILY_CASES, PRIOR_CASES

    registries = (GATE_FAMILIES, PRIORS, GATE_FAMILY_CASES, PRIOR_CASES)
    saved = [dict(registry) for registry in registries]
    yield
    for registry, entries in zip(registries, saved, strict=True):
        registry.clear()
        registry.update(entries)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.stem)
@pytest.mark.usefixtures("own_registries")
def test_guide_code_runs(guide, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # guides that write files write them here
    monkeypatch.syspath_prepend(str(tmp_path))  # and import the modules they save there
    before = set(sys.modules)
    blocks = GUIDE_BLOCK.findall(guide.read_text())
    assert blocks, f"{guide.name} has no python code blocks"
    namespace: dict = {"__name__": f"guide_{guide.stem}"}
    try:
        for number, (file_name, block) in enumerate(blocks, start=1):
            if file_name:
                (tmp_path / file_name).write_text(block)
                continue
            try:
                exec(compile(block, f"{guide.name}[block {number}]", "exec"), namespace)
            except Exception as err:  # pragma: no cover - the message says which block failed
                raise AssertionError(f"{guide.name}, code block {number} failed: {err!r}") from err
    finally:
        for name in set(sys.modules) - before:  # the guide's own modules go with its folder
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
                del sys.modules[name]


def test_readme_library_example_runs(monkeypatch, tmp_path, capsys):
    # the README's "Using the library" block as written, on the first 24 chorales of the
    # embedded rebuild (the whole set takes half a minute): it trains, validates, writes its
    # folder and prints the best epoch and a finite validation NLL per frame
    pytest.importorskip("music21", reason="the README example builds jsb-music21 (music extra)")
    import functools

    import pyro_betalstm.data.music as music

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = CODE_BLOCK.findall(readme.split("## Using the library", 1)[1].split("\n## ")[0])
    small = functools.partial(music.build_jsb_music21, max_chorales=24)
    monkeypatch.setattr(music, "build_jsb_music21", small)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md[Using the library]", "exec"), {"__name__": "readme"})
    best_epoch, nll = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert 1 <= int(best_epoch) <= 5 and 0 < float(nll) < 20
    assert (tmp_path / "runs" / "mine" / "metrics.json").is_file()
