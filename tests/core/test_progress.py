"""Progress bars only where somebody watches them (pyro_betalstm.progress); epoch lines always."""

from __future__ import annotations

import io
import sys

import pytest

from pyro_betalstm import progress
from pyro_betalstm.infer import TrainConfig, fit

from .helpers import make_dataset, make_model


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_kernel(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)


def test_bars_only_on_a_terminal_or_in_a_notebook(monkeypatch, no_kernel):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file
    assert not progress.bars_wanted()
    items = [1, 2, 3]
    assert progress.progress_bar(items, 3, "x") is items
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress.bars_wanted()
    assert list(progress.progress_bar(items, 3, "x")) == items
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())  # a Jupyter kernel
    assert progress.bars_wanted()


@pytest.mark.parametrize("terminal", [False, True], ids=["log file", "terminal"])
def test_fit_prints_a_line_per_epoch_and_bars_only_on_a_terminal(
    monkeypatch, capsys, no_kernel, terminal
):
    # a log of `nohup ... > run.log 2>&1` filled with the bar's carriage-return frames
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    config = TrainConfig(num_epochs=2, batch_size=2, progress=True)
    fit(make_model("classifier", "sigmoid", num_layers=1), make_dataset(4), None, config)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert ("epoch 1/2" in stderr.getvalue()) == terminal  # the bar's description


def test_a_resumed_fit_says_where_it_continues(tmp_path, capsys):
    model, data = make_model("classifier", "sigmoid", num_layers=1), make_dataset(4)
    fit(model, data, None, TrainConfig(num_epochs=1, batch_size=2), tmp_path)
    capsys.readouterr()
    fit(model, data, None, TrainConfig(num_epochs=3, batch_size=2), tmp_path, resume=True)
    out = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'last.pt'} after epoch 1: 2 epoch(s) to train" in out
    fit(model, data, None, TrainConfig(num_epochs=3, batch_size=2), tmp_path, resume=True)
    assert "after epoch 3: nothing left to train" in capsys.readouterr().out
    fit(model, data, None, TrainConfig(num_epochs=3, batch_size=2, progress=False), tmp_path,
        resume=True)  # fmt: skip
    assert capsys.readouterr().out == ""  # progress=False prints nothing
