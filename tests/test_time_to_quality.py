"""``benchmarks/time_to_quality.py`` and ``docs/results/jsb_authors_table.py`` on made-up runs:
seconds to the threshold, the tolerance on test NLL, the speedup and the tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyro_betalstm.testing.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


ttq = load_script(ROOT / "benchmarks" / "time_to_quality.py")
table = load_script(ROOT / "docs" / "results" / "jsb_authors_table.py")


def fake_run(
    folder: Path,
    valid: list[float],
    seconds_per_epoch: float,
    test: float | None,
    variant="bblstm5gp",
    seed=1000,
    kl=0.001,
):
    folder.mkdir(parents=True)
    history = [
        {"epoch": e, "valid_nll_mean_gates": v, "elapsed_s": seconds_per_epoch * e}
        for e, v in enumerate(valid, start=1)
    ]
    (folder / "metrics.json").write_text(json.dumps(history))
    if test is not None:
        record = {
            "variant": variant,
            "seed": seed,
            "protocol": "authors",
            "dataset": "jsb",
            "settings": {"num_epochs": len(valid)},
            "test": {"nll_mean_gates": test},
            "valid": {"nll_mean_gates": min(valid)},
            "best_epoch": 1 + valid.index(min(valid)),
            "epochs_run": len(valid),
            "wall_seconds": 10.0,  # this process only; the run's time is train_elapsed_s
            "train_elapsed_s": seconds_per_epoch * len(valid),
            "hardware": "cpu",
            "git_commit": "abc123",
            "gate_kl_valid": {"kl_per_gate": kl, "alpha_p01": 0.49, "alpha_p99": 0.51},
            "target_epoch": None,
        }
        (folder / "results.json").write_text(json.dumps(record))


def summarise(tmp_path, reference_dir=None):
    args = ttq.parse_args(
        [
            "summarise",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out-dir",
            str(tmp_path / "out"),
            "--static-dir",
            str(tmp_path / "out"),
        ]
        + (["--reference-dir", str(reference_dir)] if reference_dir else [])
    )
    return ttq.summarise(args)


def test_speedup_is_reference_seconds_over_the_fastest_recipe_within_tolerance(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "authors-seed1000", [9, 8.6, 8.4, 8.3, 8.27], 100.0, 8.28)
    fake_run(runs / "fast-seed1000", [8.5, 8.34, 8.3], 20.0, 8.30)  # 40 s, within 0.03
    fake_run(runs / "faster-seed1000", [8.33], 10.0, 8.40)  # 10 s but 0.12 worse on test
    fake_run(runs / "never-seed1000", [9.0, 8.9], 5.0, 8.9)
    summary = summarise(tmp_path)
    assert summary["reference"] == {"recipe": "authors", "seconds": 400.0, "test_nll": 8.28}
    assert summary["best"] == {"recipe": "fast", "seconds": 40.0, "test_nll": 8.30}
    assert summary["speedup"] == pytest.approx(10.0)
    saved = json.loads((tmp_path / "out" / "time_to_quality.json").read_text())
    assert saved["speedup"] == pytest.approx(10.0) and saved["threshold"] == 8.35
    page = (tmp_path / "out" / "time_to_quality.md").read_text()
    assert "| never |" in page and "Speedup: 10.00x" in page
    assert "- Runs made by: abc123 on cpu." in page  # which code, which processor
    assert f"- Read from: `{runs.as_posix()}`" in page
    assert (tmp_path / "out" / "time_to_quality.png").stat().st_size > 0


def test_archived_records_summarise_to_the_same_result(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "authors-seed1000", [9, 8.6, 8.4, 8.3, 8.27], 100.0, 8.28)
    fake_run(runs / "fast-seed1000", [8.5, 8.34, 8.3], 20.0, 8.30)
    (runs / "authors-seed1000" / "last.pt").write_bytes(b"checkpoint")  # not archived
    summary = summarise(tmp_path)
    kept = tmp_path / "kept"
    ttq.archive(ttq.parse_args(["archive", "--runs-dir", str(runs), "--archive-dir", str(kept)]))
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*.*")) == [
        f"{run}/{name}"
        for run in ("authors-seed1000", "fast-seed1000")
        for name in ("metrics.json", "results.json")
    ]
    again = ttq.summarise(
        ttq.parse_args(
            [
                "summarise",
                "--runs-dir",
                str(kept),
                "--out-dir",
                str(tmp_path / "o2"),
                "--static-dir",
                str(tmp_path / "o2"),
            ]
        )  # fmt: skip
    )
    assert (again["reference"], again["best"]) == (summary["reference"], summary["best"])


def test_reference_from_another_folder_and_one_that_has_not_reached_the_threshold(tmp_path):
    (tmp_path / "runs").mkdir()
    grid = tmp_path / "grid" / "jsb-bblstm5gp-seed1000"
    fake_run(grid, [9.0, 8.5], 30.0, None)  # still running, above the threshold
    with pytest.raises(SystemExit, match="has not reached 8.35"):
        summarise(tmp_path, grid)


def test_authors_table_summarises_variants_over_seeds(tmp_path):
    for seed, test in ((1000, 8.30), (1001, 8.26)):
        fake_run(tmp_path / f"5gp-{seed}", [8.4, 8.3], 10.0, test, seed=seed)
    fake_run(tmp_path / "lstm", [8.8], 1.0, 8.7, variant="lstm", kl=None)
    rows = table.collect([tmp_path])
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("lstm", 1000),
        ("bblstm5gp", 1000),
        ("bblstm5gp", 1001),
    ]
    # a run resumed over several processes counts all of them, not the last one's 10 s
    assert [r["wall_s"] for r in rows] == [10.0, 20.0, 20.0]
    text = table.tables(rows)
    assert "| `bblstm5gp` | 1000, 1001 | 8.280 ± 0.028 |" in text
    assert "| `lstm` | 1000 | 8.700 ± - |" in text


def test_authors_table_never_writes_an_empty_table(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(table, "atomic_write_json", lambda *a: written.append(a))
    monkeypatch.setattr(table, "atomic_write_text", lambda *a: written.append(a))
    with pytest.raises(SystemExit, match="no runs folder at .*absent"):
        table.main([tmp_path / "absent"])
    with pytest.raises(SystemExit, match="no authors-protocol JSB results.json"):
        table.main([tmp_path])
    assert written == []


def test_authors_table_keeps_committed_runs_that_a_rerun_does_not_replace(tmp_path):
    committed = table.collect([_two_fake_runs(tmp_path / "before", lstm_test=8.9)])
    fake_run(tmp_path / "rerun" / "lstm", [8.6], 1.0, 8.65, variant="lstm", kl=None)
    rows = table.collect([tmp_path / "rerun"], committed)
    assert [(r["variant"], r["seed"], r["test_nll"]) for r in rows] == [
        ("lstm", 1000, 8.65),  # the rerun replaced the committed run of its variant and seed
        ("bblstm5gp", 1000, 8.30),
    ]
    assert table.collect([tmp_path / "rerun"]) == rows[:1]  # without them, the rerun alone


def _two_fake_runs(folder: Path, lstm_test: float) -> Path:
    fake_run(folder / "5gp", [8.4, 8.3], 10.0, 8.30)
    fake_run(folder / "lstm", [8.8], 1.0, lstm_test, variant="lstm", kl=None)
    return folder


def test_a_stop_at_the_target_is_read_from_the_record():
    # an early-stopped run also ran fewer epochs than its settings: the record's stopped_by
    # tells the two apart; a record made before that key falls back to the epoch count
    settings = {"settings": {"num_epochs": 60}}
    assert ttq._stopped_at_target({**settings, "stopped_by": "target"}, 23)
    assert not ttq._stopped_at_target({**settings, "stopped_by": "early_stopping"}, 23)
    assert not ttq._stopped_at_target({**settings, "stopped_by": None}, 60)
    assert ttq._stopped_at_target(settings, 23) and not ttq._stopped_at_target(settings, 60)
    assert not ttq._stopped_at_target(None, 5)
