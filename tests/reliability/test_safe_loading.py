"""Files from someone else never run code: malicious piano-roll pickles and checkpoints.

Each payload, if unpickled without restriction, creates a marker file; every test asserts the
loader refuses it with an error naming the file and that the marker never appears.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_betalstm.data.music import load_benchmark, load_piano_rolls
from pyro_betalstm.diagnostics.render import load_gate_draws
from pyro_betalstm.infer import fit, load_best
from pyro_betalstm.io import safe_torch_load

from ._tiny import make_config, make_data, make_model

SEQS = [[[60, 64], [62]], [[65], [], [67, 71]]]


class _Reduce:
    """Pickles as ``func(*args)``: what an attacker's file does on an unrestricted load."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, bytes]:
    m = str(marker)
    code = f"open({m!r}, 'w').close()"
    as_bytes = lambda obj, protocol=2: pickle.dumps(obj, protocol=protocol)  # noqa: E731
    return {
        "os.system": as_bytes(_Reduce(os.system, f"touch {m}")),
        "builtins.exec": as_bytes(_Reduce(builtins.exec, code)),
        "builtins.eval": as_bytes(_Reduce(builtins.eval, code), protocol=4),
        "pathlib.touch": as_bytes(_Reduce(Path.touch, Path(m)), protocol=4),
        "nested-in-data": as_bytes(
            {"train": SEQS, "valid": [_Reduce(builtins.exec, code)], "test": SEQS}
        ),
        # hand-written protocol 0, with the Python 2 module name of builtins
        "py2-eval": f"c__builtin__\neval\n(S{code!r}\ntR.".encode(),
        "getattr-chain": (
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
            + f"(S'touch {m}'\ntR.".encode()
        ),
    }


PAYLOADS = list(_payloads(Path("x")))


def test_payloads_would_run_code_unrestricted(tmp_path):
    """Control: the payloads are real (an unrestricted pickle.loads creates the marker)."""
    for name, data in _payloads(tmp_path / "marker").items():
        marker = tmp_path / "marker"
        pickle.loads(data)
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_malicious_piano_roll_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "JSB_Chorales.pickle"
    path.write_bytes(_payloads(marker)[payload])
    with pytest.raises(ValueError, match="not a readable piano-roll pickle") as info:
        load_piano_rolls(path)
    assert str(path) in str(info.value)
    # picked up automatically from a data folder: refused the same way
    with pytest.raises(ValueError, match=str(path)):
        load_benchmark("jsb", tmp_path)
    assert not marker.exists()


def test_plain_piano_roll_pickles_still_load(tmp_path):
    """Python 2 style (protocol 0, sets of pitches) and Python 3 pickles of plain data."""
    content = {"train": SEQS, "valid": [[{60, 61}, frozenset({62})]], "test": [[(60,), [61]]]}
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(content, protocol=protocol))
        rolls = load_piano_rolls(path)
        assert rolls.valid[0][0].sum() == 2 and rolls.train[1].shape == (3, 88)


def _malicious_checkpoint(path: Path, marker: Path, legacy: bool) -> None:
    evil = _Reduce(os.system, f"touch {marker}")
    if legacy:  # torch.load also reads the old non-zip format: a bare pickle stream
        path.write_bytes(pickle.dumps({"model": evil}, protocol=2))
    else:
        torch.save({"model": {"w": torch.ones(1)}, "epoch": 1, "x": evil}, path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_checkpoint_is_refused_on_resume(tmp_path, legacy):
    marker = tmp_path / "marker"
    _malicious_checkpoint(tmp_path / "last.pt", marker, legacy)
    with pytest.raises(ValueError, match="cannot resume") as info:
        fit(make_model(), make_data(), None, make_config(), out_dir=tmp_path, resume=True)
    assert str(tmp_path / "last.pt") in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_best_checkpoint_is_refused(tmp_path, legacy):
    marker = tmp_path / "marker"
    _malicious_checkpoint(tmp_path / "best.pt", marker, legacy)
    with pytest.raises(ValueError, match="refused to load") as info:
        load_best(make_model(), tmp_path)
    assert str(tmp_path / "best.pt") in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_malicious_gate_draws_are_refused(tmp_path, legacy):
    # pyro-betalstm diagnostics reads a run's gate_draws.pt: refused there too
    marker = tmp_path / "marker"
    _malicious_checkpoint(tmp_path / "gate_draws.pt", marker, legacy)
    with pytest.raises(ValueError, match="refused to load") as info:
        load_gate_draws(tmp_path)
    assert str(tmp_path / "gate_draws.pt") in str(info.value)
    assert not marker.exists()


def test_checkpoint_of_the_previous_format_resumes(tmp_path):
    """Checkpoints written before this version hold numpy's random state as a numpy array
    (and Python's as a tuple): they still load with weights_only=True and resume exactly."""
    reference = fit(make_model(), make_data(), None, make_config(num_epochs=3))
    fit(make_model(), make_data(), None, make_config(num_epochs=2), out_dir=tmp_path)
    ckpt = safe_torch_load(tmp_path / "last.pt")
    numpy_state = ckpt["rng"]["numpy"]
    ckpt["rng"]["numpy"] = (
        "MT19937",
        numpy_state["key"].numpy().astype(np.uint32),
        numpy_state["pos"],
        numpy_state["has_gauss"],
        numpy_state["gauss"],
    )
    ckpt["config"] = {k: v for k, v in ckpt["config"].items() if k != "divergence_threshold"}
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    (tmp_path / "last.pt").write_bytes(buffer.getvalue())
    resumed = fit(
        make_model(), make_data(), None, make_config(num_epochs=3), out_dir=tmp_path, resume=True
    )
    assert [r["train_loss"] for r in resumed.history] == [
        r["train_loss"] for r in reference.history
    ]
