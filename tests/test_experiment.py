"""pyro_betalstm.experiment: the runner the examples share (settings order, config, files)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch

from pyro_betalstm import experiment as ex
from pyro_betalstm.data import MissingDependency
from pyro_betalstm.experiment.mnist import mnist_settings
from pyro_betalstm.experiment.music import music_settings
from pyro_betalstm.experiment.text import folds_to_run, mean_sd
from pyro_betalstm.infer.train import FitResult
from pyro_betalstm.results import COMMON_KEYS, KIND_KEYS
from pyro_betalstm.testing.scripts import load_script


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    ex.add_variant_arguments(p)
    ex.add_setting_flags(p, hidden=int, lr=(float, "learning rate"), num_epochs=int)
    ex.add_setting_flags(p, batch_size=int, early_stopping=int)
    ex.add_run_arguments(p, seed_default=0)
    return p


def test_setting_flags_default_to_none_and_parse_their_type():
    args = parser().parse_args(["--num-epochs", "3", "--lr", "0.5"])
    assert (args.num_epochs, args.lr, args.hidden, args.batch_size) == (3, 0.5, None, None)
    assert "learning rate" in parser().format_help()


def test_settings_order_is_defaults_then_smoke_then_explicit_flags():
    defaults = {"hidden": 64, "lr": 1e-2, "num_epochs": 10}
    smoke = {"hidden": 8, "num_epochs": 1}
    flags = ("hidden", "lr", "num_epochs")
    resolve = lambda *argv: ex.resolve_settings(  # noqa: E731
        defaults, parser().parse_args(list(argv)), flags, smoke
    )
    assert resolve() == defaults
    assert resolve("--smoke") == {"hidden": 8, "lr": 1e-2, "num_epochs": 1}
    assert resolve("--smoke", "--hidden", "16") == {"hidden": 16, "lr": 1e-2, "num_epochs": 1}
    assert resolve("--lr", "0.1")["lr"] == 0.1
    assert defaults == {"hidden": 64, "lr": 1e-2, "num_epochs": 10}  # not modified


def music_args(*argv):
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="jsb")
    p.add_argument("--protocol", default="default")
    ex.add_variant_arguments(p, ablations=True)
    for flag in ("hidden", "layers", "num_epochs", "batch_size", "eval_samples", "train_chunk"):
        ex.add_setting_flags(p, **{flag: int})
    for flag in ("plateau_start_epoch", "early_stopping"):
        ex.add_setting_flags(p, **{flag: int})
    ex.add_setting_flags(p, dropout=float, lr=float, clip_norm=float)
    for flag in ("lr_rule", "output_bias_init"):
        ex.add_setting_flags(p, **{flag: str})
    ex.add_run_arguments(p, seed_default=None)
    return p.parse_args(list(argv))


def test_music_smoke_keeps_the_protocol_but_shrinks_the_model():
    s = music_settings(music_args("--smoke", "--protocol", "authors"))
    assert (s["hidden"], s["num_epochs"], s["eval_samples"], s["batch_size"]) == (8, 1, 2, 8)
    assert s["lr_rule"] == "authors" and s["locked_dropout"] and s["seed"] == 1000
    # an explicit flag wins over --smoke (it used to lose in this example)
    assert music_settings(music_args("--smoke", "--hidden", "16"))["hidden"] == 16
    assert music_settings(music_args("--clip-norm", "0"))["clip_norm"] is None


def test_flags_a_run_would_ignore_are_refused():
    # the LSTM's sigmoid gates have no prior: these flags would change nothing while the
    # results record named them
    with pytest.raises(SystemExit, match="--prior applies only to latent gates.*'sigmoid'"):
        music_settings(music_args("--variant", "lstm", "--prior", "learnable"))
    with pytest.raises(SystemExit, match="--kl-weight applies.*'coupled'"):
        music_settings(music_args("--variant", "bblstm", "--gate", "coupled", "--kl-weight", "1"))
    # no gate draws either: what the record says the predictive drew is what it drew
    assert (
        music_settings(music_args("--variant", "lstm", "--eval-samples", "50"))["eval_samples"] == 0
    )
    assert music_settings(music_args("--variant", "lstm"))["eval_samples"] == 0
    # nor a KL: a variant with a prior term run with deterministic gates records kl_weight 0,
    # so the model it builds does not warn that a weight it was given is ignored
    s = music_settings(music_args("--variant", "bblstm5gp", "--gate", "sigmoid"))
    assert s["kl_weight"] == 0.0 and s["eval_samples"] == 0
    from pyro_betalstm.experiment import model_prior
    from pyro_betalstm.models import NextStepBernoulli
    from pyro_betalstm.nn import StochasticLSTM

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # built as the example builds it: no warning
        lstm = StochasticLSTM(88, 4, 1, gate=s["gate"], batch_first=True)
        NextStepBernoulli(lstm, 88, prior=model_prior(s, lstm), kl_weight=s["kl_weight"])
    # bBLSTM has latent gates but no prior term (kl_weight 0): a prior would not be trained
    with pytest.raises(SystemExit, match="no prior term.*add --kl-weight"):
        music_settings(music_args("--variant", "bblstm", "--prior", "learnable"))
    # misspelt names are told with the known ones, before anything runs
    with pytest.raises(SystemExit, match="unknown gate family 'bivarate'.*bivariate5"):
        music_settings(music_args("--gate", "bivarate"))
    with pytest.raises(SystemExit, match="unknown prior 'gama'.*hierarchical"):
        music_settings(music_args("--prior", "gama"))
    # with latent gates and a prior term, or a variant's own defaults, they are taken
    s = music_settings(
        music_args(
            "--variant", "lstm", "--gate", "beta", "--prior", "learnable", "--kl-weight", "0.1"
        )
    )
    assert (s["gate"], s["prior"], s["kl_weight"]) == ("beta", "learnable", 0.1)
    assert music_settings(music_args("--variant", "lstm"))["gate"] == "sigmoid"
    assert (
        music_settings(music_args("--variant", "bblstm", "--eval-samples", "3"))["eval_samples"]
        == 3
    )


def test_run_label_names_what_the_flags_changed_in_the_variant():
    assert ex.run_label("bblstm5gp", {"gate": "bivariate5", "kl_weight": 1.0}) == "bBLSTM(5G+p)"
    assert ex.run_label("lstm", {"gate": "bivariate5", "kl_weight": 0.0}) == (
        "LSTM with bivariate5 gates"
    )
    assert ex.run_label("bblstm5g", {"gate": "bivariate5", "kl_weight": 0.01}) == (
        "bBLSTM(5G) with prior term (kl_weight 0.01)"
    )
    assert ex.run_label("bblstm5gp", {"gate": "bivariate5", "kl_weight": 0}) == (
        "bBLSTM(5G+p) without prior term"
    )
    # a prior of another name is in the label, so that a table of runs tells them apart
    hierarchical = {"gate": "bivariate5", "kl_weight": 1.0, "prior": "hierarchical"}
    assert ex.run_label("bblstm5gp", hierarchical) == "bBLSTM(5G+p) with the hierarchical prior"
    assert ex.run_label("bblstm5g", {**hierarchical, "kl_weight": 0.01}) == (
        "bBLSTM(5G) with prior term (hierarchical prior, kl_weight 0.01)"
    )
    assert ex.run_label("bblstm5gp", {**hierarchical, "prior": "gamma"}) == "bBLSTM(5G+p)"


def test_music_records_the_seed_that_ran():
    # the authors' protocol has seed 1000; --seed 5 ran seed 5 and the settings say so
    assert music_settings(music_args("--protocol", "authors", "--seed", "5"))["seed"] == 5
    assert music_settings(music_args("--protocol", "authors"))["seed"] == 1000


def test_mnist_smoke_subsets_and_explicit_subsets():
    p = argparse.ArgumentParser()
    ex.add_variant_arguments(p)
    ex.add_setting_flags(p, train_subset=int, hidden=int)
    ex.add_run_arguments(p, seed_default=0)
    s = mnist_settings(p.parse_args(["--smoke"]))
    assert (s["train_subset"], s["valid_subset"], s["test_subset"]) == (256, 128, 128)
    assert mnist_settings(p.parse_args(["--smoke", "--train-subset", "100"]))["train_subset"] == 100
    assert mnist_settings(p.parse_args([]))["train_subset"] is None


def test_train_config_from_settings_and_flags():
    args = parser().parse_args(["--device", "cpu", "--no-progress", "--early-stopping", "3"])
    s = {"num_epochs": 4, "batch_size": 7, "lr": 0.01}
    config = ex.train_config(s, args, seed=11, clip_norm=None, lr_decay=1.0)
    assert (config.num_epochs, config.batch_size, config.lr, config.seed) == (4, 7, 0.01, 11)
    assert config.clip_norm is None and config.lr_decay == 1.0 and not config.progress
    assert config.early_stopping_patience == 3 and config.eval_samples == 0
    # the task's fixed fields win over the flags
    assert ex.train_config(s, args, 0, early_stopping_patience=None).early_stopping_patience is None


def test_run_directory_record_and_files(tmp_path):
    args = parser().parse_args(["--smoke", "--variant", "lstm", "--out-dir", str(tmp_path / "r")])
    watch = ex.begin(args)
    run = ex.start_run(args, "music", "name", watch)
    assert run.out == tmp_path / "r" and run.out.is_dir()
    header = ex.run_header(args, "default", {"a": 1}, 5)
    assert header == {
        "variant": "lstm",
        "paper_name": "LSTM",
        "protocol": "smoke",  # --smoke names the protocol
        "settings": {"a": 1},
        "seed": 5,
        "smoke_of_protocol": "default",  # and keeps the one it shrank
    }
    footer = ex.run_footer(run, args, cpu=True)
    assert list(footer) == [
        "wall_seconds", "cpu_seconds", "hardware", "torch", "git_commit", "recurrence",
        "world_size", "invocations",
    ]  # fmt: skip
    assert footer["recurrence"] == "auto"  # the default: CUDA graphs on a GPU, the loop here
    assert footer["world_size"] == 1  # no torchrun: one process
    assert footer["wall_seconds"] >= 0 and "device cpu" in footer["hardware"]
    # a resumed run: its wall time counts the training seconds of the processes before
    resumed = ex.run_footer(run, args, fit_result=FitResult(earlier_seconds=1000.0))
    assert resumed["resumed_after_s"] == 1000.0
    assert 1000.0 <= resumed["wall_seconds"] < 1000.0 + run.wall_seconds() + 1
    # and its CPU seconds theirs (they used to count this process's only)
    earlier = FitResult(earlier_seconds=1000.0, earlier_cpu_seconds=500.0)
    resumed_cpu = ex.run_footer(run, args, cpu=True, fit_result=earlier)["cpu_seconds"]
    assert 500.0 <= resumed_cpu < 500.0 + run.cpu_seconds() + 1
    assert "resumed_after_s" not in ex.run_footer(run, args, fit_result=FitResult())
    with pytest.raises(ValueError, match="without dataset"):  # checked against the schema
        ex.write_results(run, {**header, **footer, "view": "row"}, "| row |\n")
    assert not (run.out / "results.json").exists()
    record = {key: 0 for key in (*COMMON_KEYS, *KIND_KEYS["mnist"])}
    with pytest.raises(ValueError, match="a mnist results row has 12 cells"):
        ex.write_results(run, {**record, **header, **footer}, "| row |\n")
    assert not (run.out / "results.json").exists()
    row = "| row " + "| x " * 11 + "|\n"
    ex.write_results(run, {**record, **header, **footer}, row)
    assert json.loads((run.out / "results.json").read_text())["seed"] == 5
    assert (run.out / "results.md").read_text().splitlines()[2:] == [row.strip()]
    assert (run.out / "results.md").read_text().startswith("| task | variant | seed |")
    default = parser().parse_args([])
    monkey = ex.start_run(default, "music", "x", watch)
    assert monkey.out.as_posix().endswith("runs/music/x")
    (monkey.out / "invocations.json").unlink()  # what start_run writes there, and nothing else
    monkey.out.rmdir()


def test_a_run_records_the_commit_it_started_with(tmp_path, monkeypatch):
    # a run that a commit overtook records the code it ran, read when the script began (it
    # was read when the run ended, so hours of training could name a later commit)
    from pyro_betalstm.provenance import git_commit

    args = parser().parse_args(["--smoke", "--variant", "lstm", "--out-dir", str(tmp_path / "r")])
    watch = ex.begin(args)
    assert watch.commit == git_commit()
    run = ex.start_run(args, "music", "name", ex.Stopwatch(commit="0123abc"))
    monkeypatch.setattr(
        "pyro_betalstm.provenance.git_state",
        lambda root: {"commit": "later", "package_dirty": False},
    )
    assert ex.run_footer(run, args)["git_commit"] == "0123abc"


def test_a_resumed_run_lists_every_process_that_ran_it(tmp_path):
    # results.json's git_commit and hardware are the last process's; invocations names each
    # process that ran in the folder, so a run resumed on other code or hardware says so
    out = tmp_path / "r"
    args = parser().parse_args(["--smoke", "--variant", "lstm", "--out-dir", str(out)])
    first = ex.start_run(args, "music", "n", ex.Stopwatch(commit="aaa"))
    (out / "last.pt").write_bytes(b"a checkpoint")  # what a resume finds
    resumed = parser().parse_args([*map(str, ["--smoke", "--out-dir", out, "--resume"])])
    second = ex.start_run(resumed, "music", "n", ex.Stopwatch(commit="bbb"))
    listed = ex.run_footer(second, resumed)["invocations"]
    assert [p["git_commit"] for p in listed] == ["aaa", "bbb"]
    assert listed[0]["started_utc"] == first.watch.started_utc
    assert all("device cpu" in p["hardware"] and p["torch"] for p in listed)
    # a run started over is a new list
    again = parser().parse_args([*map(str, ["--smoke", "--out-dir", out, "--overwrite"])])
    third = ex.start_run(again, "music", "n", ex.Stopwatch(commit="ccc"))
    assert [p["git_commit"] for p in ex.run_footer(third, again)["invocations"]] == ["ccc"]
    # a damaged list does not stop a resume: it warns, and the list says what is not known
    (out / "last.pt").write_bytes(b"a checkpoint")
    (out / "invocations.json").write_text("[{")
    with pytest.warns(RuntimeWarning, match="invocations.json"):
        fourth = ex.start_run(resumed, "music", "n", ex.Stopwatch(commit="ddd"))
    listed = ex.run_footer(fourth, resumed)["invocations"]
    assert "unreadable" in listed[0]["unknown"] and listed[1]["git_commit"] == "ddd"


def test_run_name_names_a_protocol_only_where_it_is_not_the_default():
    assert ex.run_name("jsb", "lstm", "sigmoid", 7) == "jsb-lstm-sigmoid-seed7"
    assert ex.run_name("jsb", "lstm", "sigmoid", 7, "authors") == "jsb-lstm-sigmoid-authors-seed7"
    assert (
        ex.run_name("jsb", "lstm", "sigmoid", 7, "default", "default") == "jsb-lstm-sigmoid-seed7"
    )
    assert (
        ex.run_name("jsb", "lstm", "sigmoid", 7, "fast", "default") == "jsb-lstm-sigmoid-fast-seed7"
    )


def test_describe_scores():
    text = ex.describe_scores(
        "test", {"nll_mean_gates": 1.0, "nll_predictive": 0.5}, "nll", "NLL/frame", 3
    )
    assert text == "test NLL/frame 1.0000 (mean gates), 0.5000 (predictive, S=3)"
    assert "predictive" not in ex.describe_scores("v", {"nll_mean_gates": 1.0}, "nll", "x", 0)


def test_folds_to_run_and_mean_sd():
    args = argparse.Namespace(fold=None, folds=10, max_folds=None, smoke=True)
    assert folds_to_run(args) == [0, 1]
    args.smoke = False
    assert folds_to_run(args) == list(range(10))
    args.fold = 3
    assert folds_to_run(args) == [3]
    args.fold = 10
    with pytest.raises(SystemExit, match="--fold"):
        folds_to_run(args)
    assert mean_sd([0.5, None, 0.7]) == pytest.approx((0.6, 0.1414213562))
    assert all(v != v for v in mean_sd([None]))  # NaN, NaN


def test_start_run_under_torchrun_decides_by_rank_0s_look(tmp_path, monkeypatch):
    # rank 1 of a fresh run, slower than rank 0, which has already written folds.json there:
    # it used to find that file and refuse the folder as holding a run (torchrun then killed
    # rank 0). Every rank now takes what rank 0 found before anything was written
    from pyro_betalstm.experiment import runner
    from pyro_betalstm.infer.distributed import Workers

    out = tmp_path / "run"
    out.mkdir()
    (out / "folds.json").write_text("{}")
    monkeypatch.setattr(runner, "current_workers", lambda: Workers(world_size=2, rank=1))
    monkeypatch.setattr(runner, "is_main_process", lambda: False)
    args = argparse.Namespace(out_dir=str(out), resume=False, overwrite=False, smoke=False)
    monkeypatch.setattr(runner, "from_main", lambda found: [])  # rank 0 looked first
    assert ex.start_run(args, "text", "name", ex.Stopwatch()).out == out
    monkeypatch.setattr(runner, "from_main", lambda found: ["results.json"])
    with pytest.raises(SystemExit, match="already holds a run .results.json."):
        ex.start_run(args, "text", "name", ex.Stopwatch())


def test_start_run_keeps_smoke_runs_apart_and_refuses_a_folder_holding_a_run(tmp_path, monkeypatch):
    watch = ex.Stopwatch()
    monkeypatch.chdir(tmp_path)  # the default folder is relative: runs/<task>/<name>
    smoke = ex.start_run(parser().parse_args(["--smoke"]), "music", "x", watch)
    assert smoke.name == "x-smoke" and smoke.out.as_posix() == "runs/music/x-smoke"
    args = parser().parse_args(["--out-dir", str(tmp_path / "run")])
    run = ex.start_run(args, "music", "x", watch)
    (run.out / "results.json").write_text("{}")
    (run.out / "gate_draws.pt").write_bytes(b"old")
    with pytest.raises(SystemExit, match=r"already holds a run \(results\.json, gate_draws"):
        ex.start_run(args, "music", "x", watch)
    resumed = parser().parse_args(["--out-dir", str(run.out), "--resume"])
    assert ex.start_run(resumed, "music", "x", watch).out == run.out  # kept for the resume
    assert (run.out / "results.json").exists()
    (run.out / "diagnostics").mkdir()
    for name in ("gate_histograms.png", "inference_data.nc", "my_notes.txt"):
        (run.out / "diagnostics" / name).write_text("old")
    overwrite = parser().parse_args(["--out-dir", str(run.out), "--overwrite"])
    ex.start_run(overwrite, "music", "x", watch)
    assert not (run.out / "results.json").exists() and not (run.out / "gate_draws.pt").exists()
    # the replaced run's plots go too (a --no-plots run renders none); a user's file stays
    assert [p.name for p in (run.out / "diagnostics").iterdir()] == ["my_notes.txt"]


def test_run_settings_leave_out_how_long_a_run_trains():
    # and the predictive's draws, which are not used in training
    settings = {
        "hidden": 8,
        "num_epochs": 3,
        "early_stopping": 2,
        "dropout": 0.1,
        "eval_samples": 5,
    }
    assert ex.run_settings(settings, dataset="d") == {"hidden": 8, "dropout": 0.1, "dataset": "d"}


def test_train_with_resume_before_any_checkpoint_starts_the_run(tmp_path, capsys):
    """A run killed in its first epoch has no checkpoint yet: --resume starts it, with a note."""
    import torch

    from pyro_betalstm.data import SequenceDataset
    from pyro_betalstm.infer import TrainConfig
    from pyro_betalstm.models import SequenceClassifier
    from pyro_betalstm.nn import StochasticLSTM

    torch.manual_seed(0)
    model = SequenceClassifier(StochasticLSTM(3, 4, 1, gate="sigmoid", batch_first=True), 2)
    data = SequenceDataset([torch.randn(4, 3) for _ in range(4)], torch.tensor([0, 1, 0, 1]))
    config = TrainConfig(num_epochs=1, batch_size=2, progress=False)
    result = ex.train(model, data, data, config, tmp_path, resume=True, classifier=True)
    assert len(result.history) == 1 and (tmp_path / "last.pt").exists()
    assert "no checkpoint in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "cpu:3"], "there is one CPU device"),
        (["--device", "gpu0"], "must name a torch device"),
        (["--recurrence", "cuda_graph"], "needs --device cuda"),
    ],
)
def test_begin_refuses_a_device_this_machine_lacks(flags, message, monkeypatch):
    # a CUDA device was refused only after the data had loaded, cpu:3 after training
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match=message):
        ex.begin(parser().parse_args(flags))


def test_run_script_ends_a_user_error_with_its_message(capsys, monkeypatch):
    def main(args):
        raise FileNotFoundError("no data at /nowhere")

    monkeypatch.delenv(ex.runner.TRACEBACK_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        ex.run_script(main, argparse.Namespace())
    assert stop.value.code == 2
    assert "error: no data at /nowhere" in capsys.readouterr().err
    monkeypatch.setenv(ex.runner.TRACEBACK_ENV, "1")  # the traceback on request
    with pytest.raises(FileNotFoundError):
        ex.run_script(main, argparse.Namespace())

    def buggy(args):
        raise KeyError("a bug, not a user error")

    with pytest.raises(KeyError):  # other errors keep their traceback
        ex.run_script(buggy, argparse.Namespace())


def test_run_script_ends_ctrl_c_with_how_to_continue(capsys, monkeypatch):
    def main(args):
        raise KeyboardInterrupt

    monkeypatch.delenv(ex.runner.TRACEBACK_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        ex.run_script(main, argparse.Namespace())
    err = capsys.readouterr().err
    assert stop.value.code == 130 and "Traceback" not in err
    assert err.strip() == ex.runner.INTERRUPTED_MESSAGE and "--resume" in err
    monkeypatch.setenv("RANK", "1")  # another rank of a torchrun launch: the same exit, silent
    with pytest.raises(SystemExit) as stop:
        ex.run_script(main, argparse.Namespace())
    assert stop.value.code == 130 and capsys.readouterr().err == ""
    monkeypatch.delenv("RANK")
    monkeypatch.setenv(ex.runner.TRACEBACK_ENV, "1")  # the traceback on request
    with pytest.raises(KeyboardInterrupt):
        ex.run_script(main, argparse.Namespace())


def run_script_error(main, capsys) -> str:
    """What ``run_script(main)`` prints to stderr; it must exit with status 2, no traceback."""
    with pytest.raises(SystemExit) as stop:
        ex.run_script(main, argparse.Namespace())
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "Traceback" not in err
    return err


def test_run_script_ends_a_missing_optional_package_as_a_user_error(capsys, monkeypatch):
    def main(args):
        raise MissingDependency("the embedded JSB rebuild needs music21: pip install music21")

    monkeypatch.delenv(ex.runner.TRACEBACK_ENV, raising=False)
    err = run_script_error(main, capsys)
    assert err.startswith("error: the embedded JSB rebuild needs music21: pip install music21\n")
    monkeypatch.setenv(ex.runner.TRACEBACK_ENV, "1")
    with pytest.raises(MissingDependency):
        ex.run_script(main, argparse.Namespace())
    monkeypatch.delenv(ex.runner.TRACEBACK_ENV)

    def buggy(args):  # an ImportError of the library's own code is a bug: its traceback stays
        raise ImportError("cannot import name 'nothing' from 'pyro_betalstm'")

    with pytest.raises(ImportError, match="cannot import name"):
        ex.run_script(buggy, argparse.Namespace())


def test_run_script_ends_a_refusal_like_an_argparse_error(capsys, monkeypatch):
    # SystemExit("message") printed the message with exit status 1 and no "error:"
    def main(args):
        raise SystemExit("--dataset jsb needs --data-dir with JSB_Chorales.mat or .pickle")

    monkeypatch.delenv(ex.runner.TRACEBACK_ENV, raising=False)
    err = run_script_error(main, capsys)
    assert err.startswith("error: --dataset jsb needs --data-dir with JSB_Chorales.mat")
    monkeypatch.setenv(ex.runner.TRACEBACK_ENV, "1")  # where it was raised, on request
    with pytest.raises(SystemExit) as stop:
        ex.run_script(main, argparse.Namespace())
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" in err and "in main" in err
    assert "error: --dataset jsb needs --data-dir" in err

    for code in (0, 3, None):  # sys.exit(n), and argparse's own exits, keep their status

        def exits(args, code=code):
            raise SystemExit(code)

        with pytest.raises(SystemExit) as stop:
            ex.run_script(exits, argparse.Namespace())
        assert stop.value.code == code and capsys.readouterr().err == ""


@pytest.mark.parametrize("threads", ["-1", "-8"])
def test_begin_refuses_negative_threads(threads):
    # torch said "RuntimeError: set_num_threads expects a positive integer", naming no flag
    with pytest.raises(
        SystemExit, match=rf"^--threads must be a positive integer .*got {threads}$"
    ):
        ex.begin(parser().parse_args(["--threads", threads]))


def test_begin_with_zero_threads_keeps_torchs_choice():
    before = torch.get_num_threads()
    ex.begin(parser().parse_args(["--threads", "0"]))
    assert torch.get_num_threads() == before


def test_example_with_negative_threads_ends_with_one_line(tmp_path, capsys, monkeypatch):
    music = load_script(Path(__file__).resolve().parents[1] / "examples" / "polyphonic_music.py")
    monkeypatch.delenv(ex.runner.TRACEBACK_ENV, raising=False)
    args = music.parse_args(["--threads", "-1", "--smoke", "--out-dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as stop:
        ex.run_script(music.main, args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[0] == (
        "error: --threads must be a positive integer (torch CPU threads) or 0 (torch's own "
        "choice), got -1"
    )
    assert not (tmp_path / "run").exists()  # refused before any folder was made


def test_help_text_shows_no_sphinx_markup():
    doc = "Protocols in :mod:`pyro_betalstm.experiment.music`; ``--smoke`` and :func:`~a.b`."
    assert ex.plain_text(doc) == "Protocols in pyro_betalstm.experiment.music; --smoke and a.b."


def test_the_epochs_cell_of_a_cross_validated_run_says_what_the_folds_ran():
    from pyro_betalstm.experiment.text import earlier_seconds, epochs_cell

    settings = {"settings": {"num_epochs": 10}}
    assert epochs_cell({**settings, "fold_epochs_run": [4, 10, 7]}) == "4-10"
    assert epochs_cell({**settings, "fold_epochs_run": [6, 6]}) == "6"
    assert epochs_cell(settings) == "10"  # a record made before the folds' epochs were kept
    # the seconds of earlier processes: a fold they finished, and the part of one resumed now
    folds = [
        {"wall_seconds": 50.0, "finished_earlier": True},
        {"wall_seconds": 30.0, "resumed_after_s": 12.0},
        {"wall_seconds": 20.0, "resumed_after_s": 0.0},
    ]
    assert earlier_seconds(folds) == 62.0


def test_training_summary_says_what_ended_training():
    assert ex.training_summary(FitResult())["stopped_by"] is None
    assert ex.training_summary(FitResult(stopped_early=True))["stopped_by"] == "early_stopping"
    assert ex.training_summary(FitResult(stopped_on_target=True))["stopped_by"] == "target"
    assert ex.training_summary(FitResult(stopped_on_time=True))["stopped_by"] == "time_limit"
