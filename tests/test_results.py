"""pyro_betalstm.results: the results.json schema every example writes, and its loader."""

from __future__ import annotations

import json

import pytest

from pyro_betalstm import results as schema


def complete(kind: str) -> dict:
    """A record with every key its kind requires (values are placeholders)."""
    record = {key: 0 for key in (*schema.COMMON_KEYS, *schema.KIND_KEYS[kind])}
    record["settings"] = {"gate": "bivariate5"}
    for split in ("valid", "test"):
        if split in record:
            record[split] = {key: 1.0 for key in schema.SPLIT_KEYS[kind]}
    if kind == "sentence":
        record["folds_run"] = [3, 4]
    return record


@pytest.mark.parametrize("kind", sorted(schema.KIND_KEYS))
def test_each_kind_is_recognised_and_complete_records_pass(kind):
    record = complete(kind)
    assert schema.record_kind(record) == kind
    assert schema.missing_keys(record) == []
    assert schema.validate_results(record) is record


def test_missing_keys_are_named_with_their_split():
    record = complete("music")
    del record["seed"], record["gate_kl_valid"], record["test"]["nll_mean_gates"]
    assert schema.missing_keys(record) == ["seed", "gate_kl_valid", "test.nll_mean_gates"]
    with pytest.raises(ValueError, match="a music results record without seed, gate_kl_valid"):
        schema.validate_results(record, "run/results.json")
    mnist = complete("mnist")
    del mnist["valid"]["accuracy_mean_gates"]
    assert schema.missing_keys(mnist) == ["valid.accuracy_mean_gates"]


def test_records_of_no_known_example_and_non_records_are_refused():
    with pytest.raises(ValueError, match="not a results record of a known example"):
        schema.validate_results({"dataset": "x", "settings": {}}, "somewhere")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        schema.validate_results([1, 2])
    record = complete("captioning")
    record["settings"] = "hidden 8"
    assert schema.missing_keys(record) == ["settings (a dict)"]


def test_load_results_from_a_run_directory_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="finished run"):
        schema.load_results(tmp_path)
    (tmp_path / schema.RESULTS_FILE).write_text(json.dumps(complete("mnist")))
    assert schema.load_results(tmp_path)["view"] == 0
    assert schema.load_results(tmp_path / schema.RESULTS_FILE) == schema.load_results(tmp_path)
    (tmp_path / schema.RESULTS_FILE).write_text(json.dumps({"captions": {}}))
    with pytest.raises(ValueError, match="captioning results record without dataset"):
        schema.load_results(tmp_path)


def test_history_of_the_gate_draws():
    assert schema.history_path("run", complete("music")).as_posix() == "run/metrics.json"
    assert schema.history_path("run", complete("sentence")).as_posix() == "run/fold3/metrics.json"


def _row(cells: int, first: str = "a") -> str:
    return "| " + " | ".join([first] + ["x"] * (cells - 1)) + " |\n"


@pytest.mark.parametrize("kind", sorted(schema.KIND_KEYS))
def test_results_md_is_a_table_with_its_kinds_header(kind):
    columns = schema.ROW_COLUMNS[kind]
    table = schema.results_table(complete(kind), _row(len(columns)))
    header, rule, row = table.splitlines()
    assert header == "| " + " | ".join(columns) + " |"
    assert rule.count("---") == len(columns) and row == _row(len(columns)).strip()
    # a row with a cell too many or too few does not fit the header: refused, with the columns
    for cells in (len(columns) - 1, len(columns) + 1):
        with pytest.raises(ValueError, match=rf"has {len(columns)} cells \({columns[0]}, .*got"):
            schema.results_table(complete(kind), _row(cells))


def test_join_tables_puts_rows_under_one_header(tmp_path, capsys):
    cells = len(schema.ROW_COLUMNS["music"])
    for name, first in (("a", "one"), ("b", "two")):
        (tmp_path / name).mkdir()
        table = schema.results_table(complete("music"), _row(cells, first))
        (tmp_path / name / "results.md").write_text(table)
    (tmp_path / "old.md").write_text(_row(cells, "three"))  # a row-only file from before headers
    joined = schema.join_tables([tmp_path / "a/results.md", tmp_path / "b/results.md",
                                 tmp_path / "old.md"])  # fmt: skip
    lines = joined.splitlines()
    assert len(lines) == 5 and lines[0].startswith("| dataset | variant |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["one", "two", "three"]
    # the command line takes run folders or files
    assert schema.main([str(tmp_path / "a"), str(tmp_path / "b/results.md")]) == 0
    assert capsys.readouterr().out == "\n".join(lines[:4]) + "\n"
    with pytest.raises(SystemExit):
        schema.main([str(tmp_path / "missing")])
    assert "no results.md (not a finished run)" in capsys.readouterr().err
    (tmp_path / "empty.md").write_text("\n")
    with pytest.raises(ValueError, match="empty.md is empty"):
        schema.join_tables([tmp_path / "empty.md"])


def _results_md(path, kind: str, first: str):
    """Write ``path/results.md`` as ``write_results`` does: ``kind``'s header above one row."""
    path.mkdir(parents=True)
    row = _row(len(schema.ROW_COLUMNS[kind]), first)
    (path / "results.md").write_text(schema.results_table(complete(kind), row))
    return path / "results.md"


def test_join_tables_puts_each_tasks_rows_under_its_own_header(tmp_path, capsys):
    # music and MNIST runs interleaved: one table per header, in the order the headers appear
    files = [_results_md(tmp_path / name, kind, name)
             for name, kind in (("m1", "music"), ("n1", "mnist"), ("m2", "music"))]  # fmt: skip
    (tmp_path / "old.md").write_text(_row(len(schema.ROW_COLUMNS["mnist"]), "n0"))  # row only
    joined = schema.join_tables([*files, tmp_path / "old.md"])
    music, mnist = joined.split("\n\n")
    for table, kind, firsts in ((music, "music", ["m1", "m2"]), (mnist, "mnist", ["n1", "n0"])):
        header, rule, *rows = table.splitlines()
        columns = schema.ROW_COLUMNS[kind]
        assert header == "| " + " | ".join(columns) + " |" and rule.count("---") == len(columns)
        assert [row.split("|")[1].strip() for row in rows] == firsts
        assert all(row.count("|") - 1 == len(columns) for row in rows)  # each row fits its header
    assert schema.main([str(tmp_path / "m1"), str(tmp_path / "n1"), str(tmp_path / "m2")]) == 0
    mnist_runs = "\n".join(mnist.splitlines()[:3]) + "\n"  # n1 (old.md not passed)
    assert capsys.readouterr().out == music + "\n\n" + mnist_runs
    # a row-only file that fits no header, or two, is refused, not guessed
    (tmp_path / "odd.md").write_text(_row(3, "odd"))
    with pytest.raises(ValueError, match=r"odd.md has a row without a header \(3 cells\).*none"):
        schema.join_tables([*files, tmp_path / "odd.md"])
    for name in ("abc", "def"):
        (tmp_path / f"{name}.md").write_text(f"| {' | '.join(name)} |\n|---|---|---|\n{_row(3)}")
    with pytest.raises(ValueError, match=r"odd.md has .* \(3, 9 cells\): more than one"):
        schema.join_tables([files[0], *(tmp_path / f"{n}.md" for n in ("abc", "def", "odd"))])
    with pytest.raises(SystemExit):
        schema.main([str(tmp_path / "m1"), str(tmp_path / "n1"), str(tmp_path / "odd.md")])
    assert "odd.md has a row without a header" in capsys.readouterr().err
    # a row-only file before the first header keeps its place among its task's rows
    joined = schema.join_tables([tmp_path / "old.md", files[1]])
    assert [line.split("|")[1].strip() for line in joined.splitlines()[2:]] == ["n0", "n1"]


def test_a_row_names_the_processes_of_a_data_parallel_run():
    # results.json recorded world_size, but the row did not: a 2-process run of the authors'
    # protocol (batch 1 per rank, 2 in all) looked like the authors' own
    from pyro_betalstm.experiment.music import music_row

    assert schema.processes_note({"world_size": 2}) == ", 2 processes"
    assert schema.processes_note({}) == "" == schema.processes_note({"world_size": 1})
    record = {"dataset": "jsb", "paper_name": "LSTM", "seed": 0, "protocol": "authors"}
    record |= {"valid": {"nll_mean_gates": 8.0}, "test": {"nll_mean_gates": 8.5}}
    record |= {"best_epoch": 3, "wall_seconds": 60.0, "world_size": 2}
    assert "| authors, 2 processes | 8.000 |" in music_row(record)
    assert "| authors | 8.000 |" in music_row({**record, "world_size": 1})
