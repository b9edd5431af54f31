"""Every example runs end to end with --smoke (in-process, so imports are paid once)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from pyro_betalstm.testing.scripts import load_script

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MUSIC_DIR = SHARED_DATA / "music"


def load_example(name: str):
    return load_script(EXAMPLES / f"{name}.py")


def check_record(record: dict, out: Path) -> None:
    for split in ("valid", "test"):
        assert math.isfinite(record[split]["nll_mean_gates"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["test"]["nll_mean_gates"] == record["test"]["nll_mean_gates"]
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert (out / "gate_draws.pt").exists()
    assert len((out / "results.md").read_text().splitlines()) == 3  # header, rule, row


def test_music_smoke_embedded_default(tmp_path):
    pytest.importorskip("music21", reason="the embedded jsb-music21 data needs music21")
    music = load_example("polyphonic_music")
    out = tmp_path / "run"
    args = [
        "--smoke",
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out-dir",
        str(out),
    ]
    record = music.main(music.parse_args(args))
    assert record["dataset"] == "jsb-music21" and record["protocol"] == "smoke"
    assert "nll_predictive" in record["test"]  # the default variant has latent gates
    check_record(record, out)
    # --resume with the same flags continues (here: nothing left to train); another seed is
    # refused with the differing setting named
    again = music.main(music.parse_args([*args, "--resume"]))
    assert again["test"]["nll_mean_gates"] == record["test"]["nll_mean_gates"]
    with pytest.raises(ValueError, match="seed: saved"):
        music.main(music.parse_args([*args, "--resume", "--seed", "12345"]))
    # so is a resume with another model or data setting (kept in last.pt beside the config)
    with pytest.raises(ValueError, match="dropout: saved 0.2, requested 0.4"):
        music.main(music.parse_args([*args, "--resume", "--dropout", "0.4"]))
    # a new run in the folder is refused, not written over the finished one...
    with pytest.raises(SystemExit, match="already holds a run"):
        music.main(music.parse_args(args))
    assert json.loads((out / "results.json").read_text())["settings"]["dropout"] == 0.2
    # ...unless asked for
    other = music.main(music.parse_args([*args, "--overwrite", "--dropout", "0.4"]))
    assert json.loads((out / "results.json").read_text())["settings"]["dropout"] == 0.4
    assert other["epochs_run"] == record["epochs_run"]  # a whole new run, not a resumed one


@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
@pytest.mark.parametrize(
    "dataset, variant",
    [("jsb", "lstm"), ("nottingham", "bblstm"), ("musedata", "blstm"), ("piano", "g2lstm")],
)
def test_music_smoke_benchmarks(tmp_path, dataset, variant):
    music = load_example("polyphonic_music")
    out = tmp_path / "run"
    args = [
        "--smoke",
        "--no-progress",
        "--dataset",
        dataset,
        "--data-dir",
        str(MUSIC_DIR),
        "--variant",
        variant,
        "--out-dir",
        str(out),
    ]
    record = music.main(music.parse_args(args))
    assert record["dataset"] == dataset
    check_record(record, out)
    predictive_cell = (out / "results.md").read_text().splitlines()[-1].split("|")[7].strip()
    if variant in ("lstm", "g2lstm"):  # deterministic gates: no predictive NLL, not "nan"
        assert predictive_cell == "-"
    else:
        assert float(predictive_cell) == pytest.approx(record["test"]["nll_predictive"], abs=5e-4)


def epochs_in(out: Path) -> list[dict]:
    """The per-epoch records of the run in ``out`` (none before its first epoch ends)."""
    try:
        return json.loads((out / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet
        return []


@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
def test_ctrl_c_keeps_the_finished_epochs_and_resume_goes_on_from_them(tmp_path):
    # a real SIGINT in a training run (wherever it lands: a step, validation, a checkpoint write)
    out = tmp_path / "run"
    cmd = [sys.executable, str(EXAMPLES / "polyphonic_music.py"), "--smoke", "--no-plots"]
    cmd += ["--dataset", "jsb", "--data-dir", str(MUSIC_DIR), "--out-dir", str(out)]
    root = str(EXAMPLES.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / "stderr.txt", "w") as err:
        run = subprocess.Popen(
            [*cmd, "--num-epochs", "1000"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + 240
        while len(epochs_in(out)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=120) == 130
    message = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in message and "--resume" in message.splitlines()[-1]
    kept = epochs_in(out)
    assert len(kept) >= 2 and not list(out.glob(".*.tmp"))  # no half-written file left
    done = len(kept) + 1
    again = subprocess.run(
        [*cmd, "--num-epochs", str(done), "--resume"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["epochs_run"] == done
    history = epochs_in(out)
    assert [h["epoch"] for h in history] == list(range(1, done + 1))
    keys = ("train_loss", "valid_nll_mean_gates")  # the kept epochs are the same epochs
    assert [[h[k] for k in keys] for h in history[: len(kept)]] == [
        [h[k] for k in keys] for h in kept
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
def test_music_smoke_under_torchrun_with_two_processes(tmp_path):
    # the done-when command: one results.json, written by rank 0, with world_size 2
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(EXAMPLES / "polyphonic_music.py"), "--smoke", "--no-progress", "--no-plots"]
    cmd += ["--dataset", "jsb", "--data-dir", str(MUSIC_DIR), "--out-dir", str(out)]
    root = str(EXAMPLES.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["world_size"] == 2 and record["dataset"] == "jsb"
    assert done.stdout.count("test NLL/frame") == 1  # rank 0 alone prints
    check_record(record, out)
