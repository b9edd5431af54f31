"""Resume falls back to the previous checkpoint, refuses changed settings; a full disk
(simulated by a write that raises) leaves the old file intact and names the file."""

from __future__ import annotations

import errno
import time
import warnings

import pytest
import torch

import pyro_betalstm.io as pio
from pyro_betalstm.infer import TrainConfig, fit
from pyro_betalstm.infer.checkpoint import load_resume_point
from pyro_betalstm.io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_path,
    atomic_write_text,
    read_json,
    safe_torch_load,
)

from ._tiny import NUM_EPOCHS, make_config, make_data, make_model


def _losses(result) -> list[float]:
    return [r["train_loss"] for r in result.history]


@pytest.fixture(scope="module")
def reference() -> list[float]:
    return _losses(fit(make_model(), make_data(), None, make_config()))


def _partial_run(out, epochs: int = 3):
    fit(make_model(), make_data(), None, make_config(num_epochs=epochs), out_dir=out)


def _resume(out, **kw):
    return fit(make_model(), make_data(), None, make_config(**kw), out_dir=out, resume=True)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "deleted"])
def test_unreadable_last_checkpoint_falls_back_to_the_previous(tmp_path, reference, damage):
    _partial_run(tmp_path)
    last = tmp_path / "last.pt"
    data = last.read_bytes()
    if damage == "deleted":
        last.unlink()
    else:
        last.write_bytes(
            {"truncated": data[: len(data) // 2], "empty": b""}.get(damage, b"\x00" * 99)
        )
    with pytest.warns(
        RuntimeWarning, match=r"resuming from the previous checkpoint .*last\.prev\.pt \(epoch 2\)"
    ):
        result = _resume(tmp_path)
    assert _losses(result) == reference  # one epoch (the 3rd) was run again, none lost


def test_both_checkpoints_unreadable_names_both(tmp_path):
    _partial_run(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 broken")
    (tmp_path / "last.prev.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable checkpoint") as info:
        _resume(tmp_path)
    assert str(tmp_path / "last.pt") in str(info.value)
    assert str(tmp_path / "last.prev.pt") in str(info.value)


def test_previous_checkpoint_is_one_epoch_behind(tmp_path):
    _partial_run(tmp_path)
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 3
    assert safe_torch_load(tmp_path / "last.prev.pt")["epoch"] == 2


def test_resume_refuses_changed_settings_and_lists_every_key(tmp_path, reference):
    _partial_run(tmp_path, epochs=2)
    with pytest.raises(ValueError, match="settings differ") as info:
        _resume(tmp_path, lr=0.5, seed=3, batch_size=4)
    message = str(info.value)
    for line in (
        "batch_size: saved 2, requested 4",
        "lr: saved 0.01, requested 0.5",
        "seed: saved 0, requested 3",
    ):
        assert line in message
    assert "num_epochs" not in message
    # keys that may change: how long, where and how verbosely
    assert (
        _losses(
            _resume(
                tmp_path, num_epochs=NUM_EPOCHS, progress=False, eval_batch_size=7, time_limit_s=1e6
            )
        )
        == reference
    )


def test_resume_refuses_fewer_epochs_than_were_run(tmp_path, reference):
    # it used to finish at once with the settings saying 1 epoch and the history holding 2
    _partial_run(tmp_path, epochs=2)
    with pytest.raises(ValueError, match="num_epochs 1: it has trained 2 epochs already"):
        _resume(tmp_path, num_epochs=1)
    assert _losses(_resume(tmp_path, num_epochs=2)) == reference[:2]  # as many: nothing to do


@pytest.mark.parametrize("override", [True, ["batch_size", "lr"]])
def test_resume_override(tmp_path, override):
    """An override continues with a warning; the optimizer state (lr) is the checkpoint's,
    other settings (here the batch size) take effect, and the records say what was used."""
    _partial_run(tmp_path, epochs=2)
    config = make_config(lr=0.02, batch_size=3)
    with pytest.warns(RuntimeWarning, match=r"batch_size: saved 2, requested 3; lr: saved"):
        result = fit(
            make_model(),
            make_data(),
            None,
            config,
            out_dir=tmp_path,
            resume=True,
            resume_override=override,
        )
    assert [r["lr"] for r in result.history] == [0.01] * NUM_EPOCHS
    assert safe_torch_load(tmp_path / "last.pt")["config"]["batch_size"] == 3


def test_resume_override_of_some_keys_still_refuses_others(tmp_path):
    _partial_run(tmp_path, epochs=2)
    with pytest.raises(ValueError, match="seed: saved 0, requested 1") as info:
        fit(
            make_model(),
            make_data(),
            None,
            make_config(seed=1, lr=0.5),
            out_dir=tmp_path,
            resume=True,
            resume_override=["lr"],
        )
    assert "lr:" not in str(info.value)


def test_resume_with_a_checkpoint_of_another_model_names_the_file(tmp_path):
    _partial_run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"last\.pt: the checkpoint does not fit this model"):
        fit(make_model("beta"), make_data(), None, make_config(), out_dir=tmp_path, resume=True)


def test_a_folder_holding_a_run_is_not_started_over_silently(tmp_path):
    _partial_run(tmp_path, epochs=3)
    with pytest.raises(FileExistsError, match=r"already holds a run \(last\.pt, last\.prev"):
        _partial_run(tmp_path, epochs=1)
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 3  # untouched
    result = fit(
        make_model(), make_data(), None, make_config(num_epochs=1), out_dir=tmp_path, overwrite=True
    )
    assert len(result.history) == 1
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 1
    assert not (tmp_path / "last.prev.pt").exists()  # the old run's files went first


def test_unreadable_last_checkpoint_is_set_aside_not_rotated_into_the_backup(tmp_path):
    _partial_run(tmp_path, epochs=3)
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="previous checkpoint"):
        _resume(tmp_path, num_epochs=4)
    # resumed from epoch 2, trained 3 and 4: the backup is epoch 3, a readable one
    assert safe_torch_load(tmp_path / "last.pt")["epoch"] == 4
    assert safe_torch_load(tmp_path / "last.prev.pt")["epoch"] == 3
    assert (tmp_path / "last.unreadable.pt").read_bytes() == b"garbage"


def _constant_metric(model, data, config):
    return {"nll_mean_gates": 1.0}


def test_a_run_that_stopped_early_resumes_to_its_stop_not_past_it(tmp_path):
    def run(patience, resume=False):
        config = make_config(num_epochs=10, early_stopping_patience=patience)
        return fit(make_model(), make_data(), make_data(), config, out_dir=tmp_path,
                   resume=resume, evaluate=_constant_metric)  # fmt: skip

    first = run(2)
    assert first.stopped_early and len(first.history) == 3  # best at 1, then 2 bad epochs
    again = run(2, resume=True)  # e.g. killed during the final evaluation, then resumed
    assert again.stopped_early and len(again.history) == 3
    assert run(4, resume=True).stopped_early  # a larger patience trains on to its own stop
    assert len(safe_torch_load(tmp_path / "last.pt")["history"]) == 5


def test_the_time_limit_counts_the_time_before_a_resume(tmp_path):
    def slow_metric(model, data, config):
        time.sleep(0.3)
        return {"nll_mean_gates": 1.0}

    def run(num_epochs, time_limit_s, resume=False):
        config = make_config(num_epochs=num_epochs, time_limit_s=time_limit_s)
        return fit(make_model(), make_data(), make_data(), config, out_dir=tmp_path,
                   resume=resume, evaluate=slow_metric)  # fmt: skip

    first = run(1, 1e6).history[0]["elapsed_s"]  # 0.3 s or more, however loaded the machine
    # the limit is 0.1 s past the first process's time: epoch 2 (0.3 s or more) ends past it
    # and stops the run there, whereas a clock restarted by the resume would allow a further
    # epoch (limits were fixed numbers before, which a loaded machine's first epoch overran)
    resumed = run(10, first + 0.1, resume=True)
    assert resumed.stopped_on_time and [r["epoch"] for r in resumed.history] == [1, 2]
    # what the first process trained is reported, for a results record's whole-run wall time
    assert resumed.earlier_seconds == resumed.history[0]["elapsed_s"] >= 0.3
    # and its CPU seconds (sleeping costs none, so no lower bound), carried on the same way
    first_cpu = resumed.history[0]["cpu_elapsed_s"]
    assert resumed.earlier_cpu_seconds == first_cpu > 0
    assert resumed.history[1]["cpu_elapsed_s"] > first_cpu


def test_run_settings_are_kept_and_checked_on_resume(tmp_path):
    def run(settings, resume=False, override=False, epochs=2):
        return fit(make_model(), make_data(), None, make_config(num_epochs=epochs),
                   out_dir=tmp_path, resume=resume, run_settings=settings,
                   resume_override=override)  # fmt: skip

    run({"dropout": 0.1, "train_subset": 6})
    assert safe_torch_load(tmp_path / "last.pt")["run_settings"] == {
        "dropout": 0.1,
        "train_subset": 6,
    }
    with pytest.raises(ValueError, match="dropout: saved 0.1, requested 0.4"):
        run({"dropout": 0.4, "train_subset": 6}, resume=True, epochs=3)
    assert len(run({"dropout": 0.1, "train_subset": 6}, resume=True, epochs=3).history) == 3


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_a_checkpoint_write_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, reference
):
    """torch.save reports a failed write as RuntimeError('unexpected pos ...'); fit's error is
    an OSError naming last.pt, and the checkpoint of the epoch before is intact."""
    _partial_run(tmp_path, epochs=2)
    real_save = torch.save

    class FullDisk:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            if self.written > 100:
                _disk_full()
            self.written += len(data)
            return self.fh.write(data)

        def flush(self):
            self.fh.flush()

    def save(obj, fh, *a, **k):
        return real_save(obj, FullDisk(fh), *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(
        OSError,
        match=r"could not write .*\.pt \(No space left on device\); the previous version is kept",
    ) as info:
        _resume(tmp_path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_resume_point(tmp_path)[0]["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "last.prev.pt",
        "last.pt",
        "metrics.csv",
        "metrics.json",
    ]
    assert _losses(_resume(tmp_path)) == reference


@pytest.mark.parametrize("writer", ["text", "json", "torch", "path"])
def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "file.out"
    write = {
        "text": lambda v: atomic_write_text(path, str(v)),
        "json": lambda v: atomic_write_json(path, {"v": v}),
        "torch": lambda v: atomic_torch_save({"v": v}, path),
        "path": lambda v: atomic_write_path(path, lambda tmp: tmp.write_text(str(v))),
    }[writer]
    write(1)
    before = path.read_bytes()
    monkeypatch.setattr(pio.os, "fsync", _disk_full)
    with pytest.raises(OSError, match=rf"could not write {path}") as info:
        write(2)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["file.out"]  # no temporary file left


def test_truncated_json_names_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, [{"epoch": 1, "loss": 1.0}])
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(ValueError, match=rf"{path}: not a readable metrics file"):
        read_json(path, "metrics file")


def test_config_checks_name_the_setting():
    with pytest.raises(ValueError, match="batch_size must be positive"):
        fit(make_model(), make_data(), None, make_config(batch_size=0))
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        fit(make_model(), make_data(), None, make_config(lr=float("nan")))
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fit(make_model(), make_data(), None, {"num_epochs": 1})
    assert TrainConfig().divergence_threshold is None  # the guard is off by default
    for bad, message in [
        ({"lr_decay": 0.5}, "lr_decay divides the learning rate"),
        ({"lr_decay": float("inf")}, "lr_decay must be a positive finite number"),
        ({"lr": True}, "lr must be a positive finite number"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"target_metric": float("nan")}, "target_metric must be a finite number"),
        ({"early_stopping_patience": 1.5}, "early_stopping_patience must be a positive"),
        ({"early_stopping_patience": True}, "early_stopping_patience must be a positive"),
        ({"bucket_by_length": "no"}, "bucket_by_length must be True or False"),
        ({"device": "gpu"}, "device must name a torch device"),
    ]:
        with pytest.raises(ValueError, match=message):
            fit(make_model(), make_data(), None, make_config(**bad))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(batch_size=3).check()


def test_best_is_written_after_last_and_a_kill_between_them_is_repaired(tmp_path):
    """best.pt follows last.pt; a run killed between the two writes (last.pt of epoch 2, its
    best, with best.pt still of epoch 1) gets best.pt of epoch 2 from the resume."""
    metrics = iter([3.0, 2.0])

    def improving(model, data, config):
        return {"nll_mean_gates": next(metrics)}

    config = make_config(num_epochs=2)
    fit(make_model(), make_data(), make_data(), config, out_dir=tmp_path, evaluate=improving)
    last = safe_torch_load(tmp_path / "last.pt")
    stale = safe_torch_load(tmp_path / "best.pt")
    assert stale["epoch"] == 2 and last["best_epoch"] == 2
    atomic_torch_save({**stale, "epoch": 1}, tmp_path / "best.pt")  # as the kill leaves it
    fit(make_model(), make_data(), make_data(), config, out_dir=tmp_path, resume=True,
        evaluate=improving)  # fmt: skip
    best = safe_torch_load(tmp_path / "best.pt")
    assert best["epoch"] == 2 and best["nll_mean_gates"] == 2.0
    for name, tensor in last["model"].items():
        assert torch.equal(best["model"][name], tensor)
