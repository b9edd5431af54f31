"""The ``pyro-betalstm`` console entry point."""

from __future__ import annotations

import pytest
import torch

from pyro_betalstm import __version__
from pyro_betalstm.cli import info, main


def test_info_reports_versions_and_families(capsys):
    facts = info()
    assert facts["pyro_betalstm"] == __version__ and facts["torch"] == torch.__version__
    assert "bivariate5" in facts["gate families"].split(", ")
    assert main(["info"]) == 0
    assert f"pyro_betalstm: {__version__}" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_diagnostics_of_a_missing_run_names_the_folder(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="nowhere"):
        main(["diagnostics", str(tmp_path / "nowhere")])
