"""The paper's variant table."""

from __future__ import annotations

import argparse

import pytest

from pyro_betalstm.gates import GATE_FAMILIES
from pyro_betalstm.nn import RECURRENCES
from pyro_betalstm.variants import (
    RECURRENCE_CHOICES,
    VARIANTS,
    add_run_arguments,
    add_variant_arguments,
    get_variant,
)


def test_every_variant_names_a_gate_family_and_only_5g_plus_p_has_the_prior():
    assert len(VARIANTS) == 7
    assert all(v.gate in GATE_FAMILIES for v in VARIANTS.values())
    assert [k for k, v in VARIANTS.items() if v.prior_term] == ["bblstm5gp"]
    assert get_variant("bblstm5g").gate == get_variant("bblstm5gp").gate == "bivariate5"


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(ValueError, match="expected one of .*'lstm'"):
        get_variant("gru")


def test_variant_arguments_defaults_dests_and_choices():
    parser = argparse.ArgumentParser()
    add_variant_arguments(parser)
    args = parser.parse_args([])
    assert vars(args) == {"variant": "bblstm5gp", "gate": None, "prior": None, "kl_weight": None}
    args = parser.parse_args(
        ["--variant", "cifg", "--gate", "beta", "--prior", "learnable", "--kl-weight", "0.5"]
    )
    assert (args.variant, args.gate, args.prior, args.kl_weight) == (
        "cifg",
        "beta",
        "learnable",
        0.5,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--variant", "gru"])  # argparse rejects a name not in VARIANTS
    other = argparse.ArgumentParser()
    add_variant_arguments(other, default="lstm")
    assert other.parse_args([]).variant == "lstm"
    choices = next(a.choices for a in other._actions if a.dest == "variant")
    assert choices == sorted(VARIANTS)


def test_run_arguments_defaults_and_help():
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, seed_default=7)
    assert vars(parser.parse_args([])) == {
        "seed": 7,
        "threads": 1,
        "device": "cpu",
        "recurrence": "auto",
        "out_dir": None,
        "resume": False,
        "overwrite": False,
        "no_progress": False,
        "smoke": False,
        "imports": None,
    }
    assert parser.parse_args(["--import", "a", "--import", "b.c"]).imports == ["a", "b.c"]
    args = parser.parse_args(
        ["--seed", "3", "--threads", "2", "--device", "cuda", "--out-dir", "x", "--resume"]
        + ["--no-progress", "--smoke"]
    )
    assert (args.seed, args.threads, args.device, args.out_dir) == (3, 2, "cuda", "x")
    assert args.resume and args.no_progress and args.smoke and not args.overwrite
    assert parser.parse_args(["--overwrite"]).overwrite
    # continuing a run and deleting it are opposite requests: the pair is refused
    with pytest.raises(SystemExit):
        parser.parse_args(["--resume", "--overwrite"])
    custom = argparse.ArgumentParser()
    add_run_arguments(
        custom, seed_default=None, seed_help="seed of fold k", threads_default=None, resume_help="r"
    )
    assert custom.parse_args([]).seed is None and custom.parse_args([]).threads is None
    helps = {a.dest: a.help for a in custom._actions}
    assert helps["seed"] == "seed of fold k" and helps["resume"] == "r"
    assert helps["threads"] == "torch CPU threads (0: torch's own choice, the default)"
    default_help = {a.dest: a.help for a in parser._actions}["threads"]
    assert default_help == "torch CPU threads (0: torch's own choice; default 1)"


def test_recurrence_flag_offers_the_library_recurrences():
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, seed_default=0)
    assert RECURRENCE_CHOICES == RECURRENCES  # the flag's copy of the model stack's names
    assert parser.parse_args(["--recurrence", "auto"]).recurrence == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--recurrence", "graphs"])
