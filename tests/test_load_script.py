"""pyro_betalstm.testing.scripts.load_script: the repository's scripts as modules."""

from __future__ import annotations

import sys

import pytest

from pyro_betalstm.testing.scripts import load_script


def test_load_script_runs_the_file_once_per_call_and_registers_on_request(tmp_path):
    script = tmp_path / "tiny_tool.py"
    script.write_text("import itertools\nCOUNT = next(itertools.count(7))\n")
    first, second = load_script(script), load_script(script)
    assert first.COUNT == 7 and first is not second and "tiny_tool" not in sys.modules
    try:
        registered = load_script(script, register=True)
        assert sys.modules["tiny_tool"] is registered
        assert load_script(script, register=True) is registered  # the module already there
        assert str(tmp_path) in sys.path  # its siblings can be imported
    finally:
        sys.modules.pop("tiny_tool", None)
        sys.path.remove(str(tmp_path))


def test_a_missing_script_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no script at .*absent.py"):
        load_script(tmp_path / "absent.py")
