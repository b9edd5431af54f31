"""Atomic writes: the previous file survives a write that fails half-way."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_betalstm.io import atomic_torch_save, atomic_write_json, atomic_write_text


class Unserialisable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    atomic_write_text(tmp_path / "t.md", "| x |\n")
    assert (tmp_path / "t.md").read_text() == "| x |\n"
    atomic_torch_save({"w": torch.ones(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "r.json", "t.md"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"epoch": 1}, path)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"epoch": 2, "bad": Unserialisable()}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "r.json", {"x": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_a_killed_path_write_leaves_a_tmp_file_that_is_found_and_removed(tmp_path):
    """atomic_write_path's temporary file ends in .tmp, not in the target's suffix: a write
    killed half-way (here: the writer raises after writing) never leaves a file a "*.csv"
    glob would take for a result, and remove_temporaries finds what a kill leaves."""
    from pyro_betalstm.io import atomic_write_path, remove_temporaries

    seen = []

    def write(tmp):
        seen.append(tmp)
        tmp.write_text("a,b\n")

    atomic_write_path(tmp_path / "table.csv", write)
    assert seen[0].name.startswith(".table.csv.") and seen[0].suffix == ".tmp"
    assert (tmp_path / "table.csv").read_text() == "a,b\n"
    left = tmp_path / ".table.csv.abcd1234.tmp"  # what os._exit inside a write leaves
    left.write_text("half")
    assert list(tmp_path.glob("*.csv")) == [tmp_path / "table.csv"]
    assert remove_temporaries(tmp_path, ["table.csv", "other.png"]) == [left]
    assert not left.exists() and (tmp_path / "table.csv").exists()


def test_an_interruption_while_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    # Ctrl-C right after the temporary file was created, before its name reached the code that
    # cleans up (mkstemp returned it only then): the file was left (a flaky Ctrl-C test showed
    # it). Its name is now known before it exists.
    import pyro_betalstm.io as io_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_module.os, "chmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io_module.atomic_write_text(tmp_path / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_stale_temporary_file_of_a_dead_process_with_the_same_pid_is_passed_over(tmp_path):
    import os

    import pyro_betalstm.io as io_module

    upcoming = next(io_module._TEMP_NUMBERS) + 1  # the number the next write takes
    stale = tmp_path / f".a.txt.{os.getpid()}-{upcoming}.tmp"
    stale.write_text("half")
    io_module.atomic_write_text(tmp_path / "a.txt", "whole")
    assert (tmp_path / "a.txt").read_text() == "whole" and stale.read_text() == "half"
