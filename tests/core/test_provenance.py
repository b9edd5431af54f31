"""What a results record says about where and with what code a run ran."""

from __future__ import annotations

import subprocess

import pytest
import torch

from pyro_betalstm.provenance import PACKAGE_ROOT, cpu_model, git_commit, git_state, run_hardware


def test_run_hardware_names_processor_threads_and_device():
    from pyro_betalstm import variants

    assert variants.run_hardware is run_hardware  # its old import path still works
    text = run_hardware("cpu")
    assert text == f"{cpu_model()}, {torch.get_num_threads()} threads, device cpu"
    assert "(" not in text.split(", ")[-1]  # a GPU name only for CUDA devices


def test_cpu_model_reads_the_model_name_and_falls_back_to_the_architecture(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  7B13\n")
    assert cpu_model(info) == "AMD EPYC 7B13"  # runs of spaces folded
    info.write_text("processor\t: 0\n")  # no model name (e.g. some ARM kernels)
    assert cpu_model(info) and cpu_model(info) == cpu_model(tmp_path / "absent")


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_git_commit_names_head_and_marks_uncommitted_package_changes(tmp_path):
    try:
        _git(tmp_path, "init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available here")
    (tmp_path / "pyro_betalstm").mkdir()
    (tmp_path / "pyro_betalstm" / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("outside the package: not a change to the code\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "pyro_betalstm" / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head}+modified"
    assert git_state(tmp_path) == {"commit": head, "package_dirty": True}
    _git(tmp_path, "checkout", "--", "pyro_betalstm")
    assert git_commit(tmp_path) == head
    (tmp_path / "examples").mkdir()  # an example script is code too, a new one included
    (tmp_path / "examples" / "run.py").write_text("print(1)\n")
    assert git_commit(tmp_path) == f"{head}+modified"
    (tmp_path / "examples" / "run.py").unlink()
    (tmp_path / "docs" / "results").mkdir(parents=True)  # what runs write is not code
    (tmp_path / "docs" / "results" / "table.json").write_text("{}\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "docs" / "results" / "make_table.py").write_text("print(1)\n")
    assert git_commit(tmp_path) == f"{head}+modified"


def test_git_commit_says_unknown_when_git_cannot_tell(tmp_path, monkeypatch):
    from pyro_betalstm import provenance

    (tmp_path / ".git").mkdir()
    answers = {"rev-parse": "0" * 40, "status": None}  # e.g. status failed on a broken index
    monkeypatch.setattr(provenance, "_git", lambda root, command, *args: answers[command])
    assert git_commit(tmp_path) == "0" * 40 + "+unknown"


def test_git_commit_is_none_outside_a_checkout(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_state(tmp_path) == {"commit": None, "package_dirty": None}


def test_this_package_reports_its_own_checkout():
    if not (PACKAGE_ROOT / ".git").exists():
        pytest.skip("the package is not imported from a git checkout here (an installed wheel)")
    commit = git_commit()
    assert commit is not None and len(commit.split("+")[0]) == 40
