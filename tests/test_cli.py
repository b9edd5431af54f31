"""The ``pyro-betalstm`` console entry point and ``python -m pyro_betalstm.diagnostics``."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_betalstm import __version__
from pyro_betalstm import results as schema
from pyro_betalstm.cli import info, main
from pyro_betalstm.provenance import cpu_model, git_commit

STEPS = 70  # more than the default --max-steps (64)


def usage_error(argv, capsys) -> str:
    """What ``pyro-betalstm ARGV`` prints to stderr; it must exit with status 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    return err


def fake_run(folder, kind="music", dataset="jsb"):
    """A loadable run: a complete results record and the gate draws of a deterministic model
    (one draw, 2 sequences of STEPS steps, 1 layer of 3 units)."""
    record = {key: 0 for key in (*schema.COMMON_KEYS, *schema.KIND_KEYS[kind])}
    record.update(dataset=dataset, variant="lstm", paper_name="LSTM", protocol="default")
    record["settings"] = {"gate": "sigmoid"}
    for split in ("valid", "test"):
        record[split] = {key: 1.0 for key in schema.SPLIT_KEYS[kind]}
    folder.mkdir(parents=True)
    (folder / schema.RESULTS_FILE).write_text(json.dumps(record))
    g = torch.Generator().manual_seed(0)
    draws = {
        name: torch.rand(1, 2, STEPS, 1, 3, generator=g) for name in ("input_gate", "forget_gate")
    }
    draws["mask"] = torch.ones(2, STEPS)
    torch.save(draws, folder / schema.GATE_DRAWS_FILE)
    return folder


def test_info_reports_versions_and_families(capsys):
    facts = info()
    assert facts["pyro_betalstm"] == __version__ and facts["torch"] == torch.__version__
    assert "bivariate5" in facts["gate families"].split(", ")
    assert facts["processor"] == cpu_model()  # what a results record names, too
    assert facts["git commit"] == (git_commit() or "none (not a git checkout)")
    assert main(["info"]) == 0
    assert f"pyro_betalstm: {__version__}" in capsys.readouterr().out
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == facts


def test_unknown_command_or_argument_is_a_usage_error(capsys):
    assert "invalid choice" in usage_error(["bogus"], capsys)
    err = usage_error(["info", "--json", "--whatever"], capsys)
    assert "unrecognized arguments: --whatever" in err


def test_help_describes_the_command_and_lists_its_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pyro-betalstm [-h] COMMAND [ARGS ...]\n")
    # a description in plain text, not the module docstring with its reST backticks
    assert "``" not in out and "Console entry point" not in out
    assert "render a finished run's gate diagnostics" in out.replace("\n", " ")
    lines = out.splitlines()
    start = lines.index("commands:")
    listed = [line.split()[0] for line in lines[start + 1 : start + 4]]
    assert listed == ["info", "diagnostics", "table"]


def test_no_command_is_a_usage_error(capsys):
    # it printed the help and exited 0, as if nothing were missing
    err = usage_error([], capsys)
    assert err.startswith("usage: pyro-betalstm [-h] COMMAND [ARGS ...]\n")
    assert "error: a command is required, one of: info, diagnostics, table" in err


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["diagnostics", "--help"], "pyro-betalstm diagnostics"),
        (["info", "--help"], "pyro-betalstm info"),
        (["table", "--help"], "pyro-betalstm table"),
    ],
)
def test_help_names_the_command_as_called(argv, prog, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {prog} ")


def test_module_help_names_the_module(capsys):
    from pyro_betalstm.diagnostics.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m pyro_betalstm.diagnostics ")


def test_a_missing_folder_is_named_itself(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    err = usage_error(["diagnostics", str(missing)], capsys)
    assert f"error: {missing} not found: expected a run folder" in err
    assert "a finished run" not in err  # the old hint named the parent folder


def test_a_folder_without_results_is_not_a_finished_run(tmp_path, capsys):
    err = usage_error(["diagnostics", str(tmp_path)], capsys)
    assert f"{tmp_path} has no results.json: not a finished run" in err
    (tmp_path / schema.RESULTS_FILE).write_text("[1, 2]")
    err = usage_error(["diagnostics", str(tmp_path)], capsys)
    assert "expected a JSON object, got list" in err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--num-samples", "0", "argument --num-samples: must be at least 1, got 0"),
        ("--num-sequences", "0", "argument --num-sequences: must be at least 1, got 0"),
        ("--num-sequences", "-2", "argument --num-sequences: must be at least 1, got -2"),
        ("--max-steps", "-1", "argument --max-steps: must be at least 0, got -1"),
        ("--num-samples", "many", "argument --num-samples: expected a whole number, got 'many'"),
    ],
)
def test_bad_sizes_are_refused_before_reading_the_run(tmp_path, flag, value, message, capsys):
    run = fake_run(tmp_path / "run")
    err = usage_error(["diagnostics", str(run), flag, value], capsys)
    assert message in err
    assert not (run / "diagnostics").exists()


@pytest.mark.parametrize(
    "kind, dataset, what",
    [("mnist", "jsb", "task music) with"), ("music", "nottingham", "data set jsb) with")],
)
def test_compare_refuses_a_run_of_another_task_or_data_set(tmp_path, kind, dataset, what, capsys):
    run = fake_run(tmp_path / "run")
    other = fake_run(tmp_path / "other", kind, dataset)
    err = usage_error(["diagnostics", str(run), "--compare", str(other)], capsys)
    assert f"cannot compare {run} ({what} {other}" in err
    assert "must be of the same task and data set" in err
    assert not (run / "diagnostics").exists()


def test_out_must_not_be_a_file(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    (tmp_path / "file").write_text("")
    err = usage_error(["diagnostics", str(run), "--out", str(tmp_path / "file")], capsys)
    assert "is a file: expected a directory" in err


def test_max_steps_zero_renders_whole_sequences(tmp_path, capsys):
    from pyro_betalstm.diagnostics import from_netcdf

    run = fake_run(tmp_path / "run")
    main(["diagnostics", str(run), "--out", str(tmp_path / "cut")])
    main(["diagnostics", str(run), "--out", str(tmp_path / "all"), "--max-steps", "0"])
    assert "wrote" in capsys.readouterr().out
    cut = from_netcdf(tmp_path / "cut" / "inference_data.nc").posterior
    assert cut.sizes["time"] == 64
    assert from_netcdf(tmp_path / "all" / "inference_data.nc").posterior.sizes["time"] == STEPS


def test_table_prints_saved_rows_under_one_header(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.md").write_text(f"| h |\n|---|\n| {name} |\n")
    assert main(["table", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out == "| h |\n|---|\n| a |\n| b |\n"
    assert "no results.md (not a finished run)" in usage_error(["table", str(tmp_path)], capsys)
