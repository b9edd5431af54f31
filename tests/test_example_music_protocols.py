"""The music example's protocols: ``authors`` is Song et al.'s training as their code runs it
(github.com/gtshs2/BetaLSTM), ``batch16`` the earlier one, and the bBLSTM(5G+p) ablations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_examples import EXAMPLES, MUSIC_DIR, load_example

from pyro_betalstm.experiment.music import music_settings
from pyro_betalstm.testing.scripts import load_script

music = load_example("polyphonic_music")


def settings(*argv):
    return music_settings(music.parse_args(["--dataset", "jsb", *argv]))


@pytest.mark.parametrize(
    "variant, hidden, dropout",
    [("lstm", 200, 0.1), ("bblstm5g", 148, 0.2), ("bblstm5gp", 148, 0.2)],
)
def test_authors_protocol_is_the_authors_training(variant, hidden, dropout):
    s = settings("--protocol", "authors", "--variant", variant)
    assert s["hidden"] == hidden and s["layers"] == 2 and s["dropout"] == dropout
    assert s["batch_size"] == 1 and s["train_chunk"] is None  # one whole sequence per update
    assert (s["lr"], s["num_epochs"], s["early_stopping"]) == (2e-3, 100, None)
    assert (s["lr_rule"], s["plateau_start_epoch"]) == ("authors", 11)
    assert s["locked_dropout"] and s["output_dropout"]
    assert s["output_bias_init"] == "uniform" and s["basis_offset"] == 1e-3
    assert s["clip_norm"] is None and s["seed"] == 1000
    assert s["kl_weight"] == (1.0 if variant == "bblstm5gp" else 0.0)


def test_batch16_protocol_keeps_the_earlier_settings_under_both_names():
    for name in ("batch16", "paper"):
        s = settings("--protocol", name, "--variant", "bblstm5gp")
        assert (s["batch_size"], s["lr_rule"], s["plateau_start_epoch"]) == (16, "no_new_best", 10)
        assert (s["clip_norm"], s["locked_dropout"], s["output_dropout"]) == (5.0, False, False)
        assert s["output_bias_init"] == "frequency" and s["basis_offset"] == 0.0


def test_flags_override_the_protocol():
    s = settings(
        "--protocol", "authors", "--batch-size", "8", "--lr-rule", "none", "--clip-norm", "0"
    )
    assert (s["batch_size"], s["lr_rule"], s["clip_norm"]) == (8, "none", None)
    assert settings("--protocol", "authors", "--clip-norm", "5")["clip_norm"] == 5.0


def test_ablations_are_variants_of_the_music_example():
    assert settings("--variant", "ablation_constant_gates")["gate"] == "constant"
    noise = settings("--variant", "ablation_prior_noise", "--protocol", "authors")
    assert (noise["gate"], noise["kl_weight"], noise["hidden"]) == ("prior_noise", 0.0, 148)
    weak = settings("--variant", "ablation_kl0.001", "--protocol", "authors")
    assert (weak["gate"], weak["kl_weight"]) == ("bivariate5", 1e-3)


def test_a_run_of_another_protocol_has_a_folder_of_its_own(monkeypatch):
    names = []

    def opened(args, task, name, watch):  # the folder's name; the run stops there
        names.append(f"{task}/{name}")
        raise SystemExit("stop")

    monkeypatch.setattr(music, "load_data", lambda args: SimpleNamespace(name="jsb"))
    monkeypatch.setattr(music.ex, "start_run", opened)
    for protocol in ([], ["--protocol", "default"], ["--protocol", "authors"]):
        with pytest.raises(SystemExit, match="stop"):
            music.main(music.parse_args(["--dataset", "jsb", "--seed", "3", *protocol]))
    assert names == [
        "music/jsb-bblstm5gp-bivariate5-seed3",
        "music/jsb-bblstm5gp-bivariate5-seed3",
        "music/jsb-bblstm5gp-bivariate5-authors-seed3",
    ]


def test_stop_at_target_needs_a_target(tmp_path):
    with pytest.raises(SystemExit, match="needs --target-nll"):
        music.main(music.parse_args(["--smoke", "--stop-at-target", "--out-dir", str(tmp_path)]))


@pytest.mark.skipif(
    not MUSIC_DIR.exists(), reason=f"benchmark piano rolls not found at {MUSIC_DIR}"
)
@pytest.mark.parametrize("variant", ["bblstm5gp", "ablation_prior_noise"])
def test_authors_protocol_smoke_run_records_time_to_target_and_gate_kl(tmp_path, variant):
    out = tmp_path / "run"
    args = [
        "--smoke",
        "--no-progress",
        "--no-plots",
        "--dataset",
        "jsb",
        "--data-dir",
        str(MUSIC_DIR),
        "--protocol",
        "authors",
        "--variant",
        variant,
        "--target-nll",
        "100",
        "--out-dir",
        str(out),
    ]
    record = music.main(music.parse_args(args))
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"] == "smoke" and saved["settings"]["lr_rule"] == "authors"
    assert saved["target_epoch"]["epoch"] == 1 and saved["target_epoch"]["elapsed_s"] > 0
    assert saved["train_elapsed_s"] == pytest.approx(saved["target_epoch"]["elapsed_s"])
    # scoring is timed on its own, inside the run's wall time and after its training
    assert 0 < saved["scoring_seconds"] < saved["wall_seconds"] - saved["train_elapsed_s"]
    if variant == "bblstm5gp":
        assert record["gate_kl_valid"]["kl_per_gate"] >= 0
    else:
        assert record["gate_kl_valid"] is None  # no latent gates, no KL


def test_fast_protocol_is_the_fastest_time_to_quality_recipe_over_60_epochs():
    ttq = load_script(EXAMPLES.parent / "benchmarks" / "time_to_quality.py")
    recipe = ttq.RECIPES["freq-bias+b8-lr1e-2-win30"]
    assert settings("--protocol", "fast") == settings(
        "--protocol", "authors", *recipe, "--num-epochs", "60"
    )


def test_default_protocol_trains_on_windows_in_minibatches_of_eight():
    s = music_settings(music.parse_args([]))  # the README's main job
    assert (s["batch_size"], s["lr"], s["train_chunk"]) == (8, 1e-2, 30)
    assert (s["lr_rule"], s["plateau_start_epoch"], s["clip_norm"]) == ("authors", 11, 5.0)
    assert (s["hidden"], s["num_epochs"], s["kl_weight"]) == (64, 10, 1e-3)


def test_a_folder_flag_of_the_other_kind_of_data_is_refused(capsys):
    # --data-dir without a benchmark --dataset trained on the jsb-music21 rebuild, silently
    with pytest.raises(SystemExit):
        music.parse_args(["--data-dir", "../shared/data/music"])
    assert "--data-dir is read for a benchmark --dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        music.parse_args(["--dataset", "jsb", "--data-dir", "d", "--cache-dir", "c"])
    assert "--cache-dir is the cache of the jsb-music21 rebuild" in capsys.readouterr().err
    assert music.parse_args(["--dataset", "jsb", "--data-dir", "d"]).data_dir == "d"
