"""``--import MODULE``: the example scripts train a gate family that a user's module registers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_betalstm.experiment.user_modules import import_user_modules

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: A user's module: the chained family of guides/custom_gate_family.md, registered on import.
MY_GATES = """
import torch
from pyro_betalstm.distributions import GateDistribution
from pyro_betalstm.distributions.gate_algebra import GammaRatioGates
from pyro_betalstm.gates import LatentGateFamily, register_gate_family


class ChainedBeta(GateDistribution):
    algebra = GammaRatioGates("ChainedBeta", 3, (0,), (1,), (1,), (2,))


register_gate_family(LatentGateFamily("chained", "chained BLSTM", 3, ChainedBeta))
"""


def run_music(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(EXAMPLES / "polyphonic_music.py"), "--smoke", "--no-progress"]
    cmd += ["--no-plots", "--cache-dir", str(cwd / "cache"), "--out-dir", str(cwd / "run")]
    return subprocess.run(cmd + list(flags), cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_script_trains_the_gate_family_of_an_imported_module(tmp_path):
    pytest.importorskip("music21", reason="the embedded jsb-music21 data needs music21")
    (tmp_path / "my_gates.py").write_text(MY_GATES)
    # without the module the family is unknown, and the message says how to bring it in
    refused = run_music(tmp_path, "--gate", "chained")
    assert refused.returncode == 2, refused.stderr
    assert "unknown gate family 'chained'" in refused.stderr
    assert "--import MODULE" in refused.stderr
    # with it (found in the current folder, as python -m finds modules) the run trains the
    # family: three gate pre-activations per unit, and the record names the module
    done = run_music(tmp_path, "--import", "my_gates", "--gate", "chained")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["settings"]["gate"] == "chained" and record["imports"] == ["my_gates"]
    assert record["test"]["nll_mean_gates"] > 0 and "nll_predictive" in record["test"]
    assert (tmp_path / "run" / "gate_draws.pt").stat().st_size > 0


def test_import_user_modules_refuses_a_path_and_names_a_missing_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for path in ("my_gates.py", "lib/my_gates"):
        with pytest.raises(SystemExit, match="takes a module name as python -m does"):
            import_user_modules([path])
    with pytest.raises(SystemExit, match="--import my_gatez: no module named 'my_gatez'"):
        import_user_modules(["my_gatez"])
    with pytest.raises(SystemExit, match="no module named 'nopkg'"):
        import_user_modules(["nopkg.gates"])


def test_import_user_modules_imports_from_the_current_folder(tmp_path, monkeypatch):
    # found in the current folder; an import error inside the user's module is not a typo of
    # its name: it keeps its own exception (and traceback), naming what is missing
    (tmp_path / "guide_mod_ok.py").write_text("VALUE = 42\n")
    (tmp_path / "guide_mod_broken.py").write_text("import not_installed_anywhere_123\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("guide_mod_ok", "guide_mod_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import_user_modules(["guide_mod_ok"])
    assert sys.modules["guide_mod_ok"].VALUE == 42
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere_123"):
        import_user_modules(["guide_mod_broken"])
    monkeypatch.delitem(sys.modules, "guide_mod_ok")


def test_a_file_named_like_a_module_python_already_has_is_refused(tmp_path, monkeypatch):
    # ``import calendar`` gives the standard library's module (already imported, or built in as
    # ``time`` is), never the user's calendar.py: the family it registers would silently be
    # missing, so the name is refused and the message says to rename the file
    import calendar  # noqa: F401  (imported before, as it is in a script)

    for name in ("calendar", "time"):
        (tmp_path / f"{name}.py").write_text("raise AssertionError('the user file ran')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("calendar", "time"):
        with pytest.raises(SystemExit, match=f"--import {name}: .*{name}.py was not imported"):
            import_user_modules([name])
    # a module of that name with no file in the current folder is what the user asked for
    (tmp_path / "calendar.py").unlink()
    import_user_modules(["calendar"])
