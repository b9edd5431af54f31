"""Smoke test of ``benchmarks/gate_gradients.py``: both models train, the page and figures appear."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from pyro_betalstm.testing.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_gradients.py"
MUSIC_DIR = SHARED_DATA / "music"


@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
def test_gradient_study_smoke(tmp_path):
    module = load_script(SCRIPT)
    args = module.parse_args(
        ["--smoke", "--data-dir", str(MUSIC_DIR), "--out", str(tmp_path), "--no-progress",
         "--static", str(tmp_path / "static"), "--run-dir", str(tmp_path / "runs")]
    )  # fmt: skip
    record = module.main(args)
    saved = json.loads((tmp_path / "gradients.json").read_text())
    for key in ("lstm", "bblstm5g"):
        epochs = saved["results"][key]["epochs"]
        assert [e["epoch"] for e in epochs] == [1, 2]
        for e in epochs:
            for layer in ("layer0", "layer1"):
                assert e[layer]["pre_mean_abs"] > 0 and math.isfinite(e[layer]["gate_mean_abs"])
    # the sigmoid's slope bounds the LSTM's ratio; nothing bounds the Beta gates'
    assert all(
        e["layer0"]["pre_per_gate_ratio"] <= 0.25 for e in saved["results"]["lstm"]["epochs"]
    )
    page = (tmp_path / "gradients.md").read_text()
    assert "| LSTM | 1 | 0 |" in page and "python benchmarks/gate_gradients.py --smoke" in page
    for name in ("gradients_history.png", "gradients_histogram.png"):
        assert (tmp_path / "static" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["settings"]["num_epochs"] == 2
