"""What a results record says about where and with what code a run ran."""

from __future__ import annotations

import subprocess

import pytest
import torch

from pyro_betalstm.provenance import PACKAGE_ROOT, cpu_model, git_commit, git_state, run_hardware


def test_run_hardware_names_processor_threads_and_device():
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


def test_git_commit_is_none_outside_a_checkout(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_state(tmp_path) == {"commit": None, "package_dirty": None}


def test_this_package_reports_its_own_checkout():
    if not (PACKAGE_ROOT / ".git").exists():
        pytest.skip("the package is not imported from a git checkout here (an installed wheel)")
    commit = git_commit()
    assert commit is not None and len(commit.split("+")[0]) == 40
