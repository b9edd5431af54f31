"""kill -9 during checkpoint writes and at random points, then resume.

A child process (``_fit_child.py``) trains a tiny model for 6 epochs and is killed with SIGKILL
either at a chosen point of a write (mid-way through ``last.pt`` or ``best.pt``, before a
rename) or at a random point of a random epoch (fixed seed). Every case asserts that a resume point is
readable without a warning, that no epoch reported as saved is lost (so at most the epoch in
progress is lost), and that resuming to the end gives the same losses as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from pyro_betalstm.infer import fit
from pyro_betalstm.infer.checkpoint import has_resume_point, load_resume_point

from ._tiny import NUM_EPOCHS, make_config, make_data, make_model

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="kill -9 and /proc/self/fd are Linux-specific"
)
CHILD = Path(__file__).with_name("_fit_child.py")
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start(out: Path, resume: bool, kill: str = "none", n: int = 6) -> subprocess.Popen:
    args = [sys.executable, str(CHILD), str(out), str(NUM_EPOCHS), str(int(resume)), kill, str(n)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())


def _saved(stdout: bytes) -> list[int]:
    return [int(line.split()[1]) for line in stdout.decode().splitlines() if line[:6] == "saved "]


def _reference(n: int) -> list[float]:
    """Training losses of an uninterrupted run (in this process)."""
    result = fit(make_model(), make_data(n), make_data(n), make_config())
    return [r["train_loss"] for r in result.history]


@pytest.fixture(scope="module")
def reference() -> list[float]:
    return _reference(6)


def _check_resume(out: Path, saved: list[int], reference: list[float], n: int = 6) -> int:
    """The resume point is readable without a fallback and loses no saved epoch; resuming
    to the end reproduces the uninterrupted run. Returns the epoch resumed from."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to last.prev.pt would warn
        state, path = load_resume_point(out)
    assert path.name == "last.pt"
    assert state["epoch"] >= max(saved, default=0)
    result = fit(make_model(), make_data(n), make_data(n), make_config(), out_dir=out, resume=True)
    # tolerance: none expected (same code, seeds and single thread); 1e-6 relative allows
    # only for a different float summation order between this process and the child
    assert [r["train_loss"] for r in result.history] == pytest.approx(reference, rel=1e-6)
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".link"))]
    return state["epoch"]


KILL_POINTS = ["last_write:3", "last_replace:3", "prev_replace:3", "best_write:3"]


@pytest.mark.parametrize("kill", KILL_POINTS)
def test_kill_during_a_checkpoint_write_loses_at_most_one_epoch(tmp_path, kill, reference):
    child = _start(tmp_path, resume=False, kill=kill)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    saved = _saved(stdout)
    epoch = _check_resume(tmp_path, saved, reference)
    killed_in = int(kill.split(":")[1])  # every epoch improves here, so best.pt:N is epoch N
    assert epoch >= killed_in - 1  # the epoch being written is the only one lost


def test_kill_at_random_points_then_resume(tmp_path):
    """Kills at random times (seed 14) within the epoch after a randomly chosen epoch's
    checkpoint, each followed by a resume in a new process, until three kills landed during
    training (at most five tries: a kill can come after the end, as the killer is another
    process); then a last resume runs to the end. 30 sequences, so that an epoch lasts longer
    than the scheduling delays of a loaded machine."""
    n, rng = 30, random.Random(int(os.environ.get("KILL_SEED", "14")))
    all_saved: list[int] = []
    killed_early = 0
    for _ in range(5):
        start = 1 + (load_resume_point(tmp_path)[0]["epoch"] if has_resume_point(tmp_path) else 0)
        if start >= NUM_EPOCHS or killed_early == 3:
            break
        # kill during the epoch after this one (one of the next two, so that three fit)
        after = rng.randint(start, min(start + 1, NUM_EPOCHS - 1))
        child = _start(tmp_path, resume=start > 1, n=n)
        lines, times = [], []
        for line in child.stdout:
            lines.append(line)
            times.append(time.perf_counter())
            if line.strip() == f"saved {after}".encode():
                break
        # a random point of the next epoch, its length taken from the previous one
        epoch_s = times[-1] - times[-2] if len(lines) >= 3 else 0.1
        time.sleep(rng.uniform(0.0, epoch_s))
        child.send_signal(signal.SIGKILL)
        stdout, _ = child.communicate(timeout=60)
        output = b"".join(lines) + stdout
        killed_early += b"done" not in output
        all_saved += _saved(output)
        state, _ = load_resume_point(tmp_path)
        assert state["epoch"] >= max(all_saved)  # nothing reported as saved was lost
    assert killed_early >= 2  # the kills landed during training, not after it
    _check_resume(tmp_path, all_saved, _reference(n), n)
