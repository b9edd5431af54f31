"""Where and with what code a run ran, for its results record.

A seeded CPU run can differ in its last bits between processors (an Intel and an AMD core
gave different JSB histories, docs/results/music.md) and between commits (374e80c changed
torch's sigmoid rounding at some hidden sizes), so every record names both: the processor's
model (:func:`run_hardware`) and the commit of the checkout the package was imported from
(:func:`git_commit`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

#: the checkout the package was imported from, if it is one (an editable install)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: the code a result depends on, as git pathspecs: the package and the scripts that make
#: results (the files runs write, such as ``docs/results/*.json``, are not code)
CODE_PATHS = (
    "pyro_betalstm",
    "examples",
    "benchmarks",
    "docs/results/*.py",
    "docs/results/*.sh",
)


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The processor's model name where the system says it (Linux's ``/proc/cpuinfo``), else
    its architecture (``platform.processor()`` or ``platform.machine()``)."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_hardware(device: str | torch.device) -> str:
    """Where a run ran: processor (its model name where known), torch CPU threads and
    ``device``, with the GPU's name for a CUDA device (e.g. ``"Intel(R) Xeon(R) Processor, 1
    threads, device cuda (NVIDIA H100 80GB HBM3)"``)."""
    text = f"{cpu_model()}, {torch.get_num_threads()} threads, device {device}"
    if torch.device(device).type == "cuda":
        text += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return text


def _git(root: Path, *args: str) -> str | None:
    # about the checkout at root whatever the caller's environment (a git hook sets GIT_DIR),
    # and without taking git's index lock, which would fail a user's own git command meanwhile
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE",
                                                            "GIT_INDEX_FILE")}  # fmt: skip
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(root: str | Path = PACKAGE_ROOT) -> dict[str, str | bool | None]:
    """``{"commit": ..., "package_dirty": ...}`` of the git checkout at ``root``: the commit
    of ``HEAD`` and whether the code in it (:data:`CODE_PATHS`: the package, the examples,
    the benchmarks and the results scripts) has uncommitted changes, new files included;
    None for each where ``root`` is not a checkout (an installed wheel, or a package inside
    a larger repository whose root is elsewhere) or git is missing, and ``package_dirty``
    None where git could not tell."""
    root = Path(root)
    if not (root / ".git").exists():  # a directory, or a file in a worktree or submodule
        return {"commit": None, "package_dirty": None}
    status = _git(root, "status", "--porcelain", "--", *CODE_PATHS)
    return {
        "commit": _git(root, "rev-parse", "HEAD"),
        "package_dirty": None if status is None else bool(status),
    }


def git_commit(root: str | Path = PACKAGE_ROOT) -> str | None:
    """The commit the code ran from, for a results record: ``HEAD``'s hash, with
    ``"+modified"`` when the code (:data:`CODE_PATHS`) has uncommitted changes and
    ``"+unknown"`` when git could not say; None outside a checkout."""
    state = git_state(root)
    if state["commit"] is None:
        return None
    dirty = state["package_dirty"]
    return state["commit"] + ("+unknown" if dirty is None else "+modified" if dirty else "")
