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
