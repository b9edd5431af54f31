"""docs/results/mr_paired_table.py: per-fold MR accuracies and the paired difference from the
LSTM, over the folds every variant has finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyro_betalstm.testing.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "mr_paired_table.py"


def write_folds(run_dir: Path, accuracies: dict[int, float], predictive: bool) -> None:
    for fold, accuracy in accuracies.items():
        folder = run_dir / f"fold{fold}"
        folder.mkdir(parents=True)
        record = {
            "fold": fold,
            "seed": 1000 + fold,
            "best_epoch": fold + 1,
            "test_accuracy": accuracy,
            "test_accuracy_predictive": accuracy - 0.01 if predictive else None,
            "split_identity": {"dataset": "mr", "num_folds": 10, "split_seed": 0},
        }
        (folder / "fold_result.json").write_text(json.dumps(record))


def test_paired_table_over_the_folds_both_finished(tmp_path, capsys):
    write_folds(tmp_path / "lstm", {0: 0.75, 1: 0.80, 2: 0.70}, predictive=False)
    write_folds(tmp_path / "bblstm5gp", {0: 0.76, 1: 0.79}, predictive=True)  # fold 2 unfinished
    load_script(SCRIPT).main([str(tmp_path), "lstm", "bblstm5gp"])
    out = capsys.readouterr().out
    assert "Folds finished by every variant: 2 (0, 1) of 10" in out
    assert "| lstm | 75.00 | 80.00 | 77.50 ± 3.54 | n/a | 1, 2 |" in out
    assert "| bblstm5gp | 76.00 | 79.00 | 77.50 ± 2.12 | 76.50 ± 2.12 | 1, 2 |" in out
    # differences +1 and -1 point: mean 0, sd sqrt(2), one fold ahead
    assert "- bblstm5gp: +0.00 ± 1.41 (standard error 1.00, +0.0 SE); ahead on 1 of 2" in out


def test_no_common_fold_is_an_error(tmp_path):
    write_folds(tmp_path / "lstm", {0: 0.75}, predictive=False)
    write_folds(tmp_path / "bblstm5gp", {1: 0.76}, predictive=True)
    with pytest.raises(SystemExit, match="no fold finished by every variant"):
        load_script(SCRIPT).main([str(tmp_path), "lstm", "bblstm5gp"])
