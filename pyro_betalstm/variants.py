"""The paper's seven model variants, by the short names the example scripts take (``--variant``).

Each is a gate family and whether the Gamma(0.5, 1) prior term is in the loss. bBLSTM(5G) and
bBLSTM(5G+p) share the Arnold–Ng family; the first trains without the prior term
(``kl_weight = 0``), the second with it. ``music_hidden`` and ``music_dropout`` are the authors'
music settings: hidden sizes chosen so that every variant has about the same number of parameters.
:func:`add_variant_arguments` and :func:`add_run_arguments` register the command-line flags that
every example script shares.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# moved to pyro_betalstm.provenance (2026-12-03); importable from here as before
from .provenance import run_hardware  # noqa: F401

#: ``pyro_betalstm.nn.RECURRENCES`` (this module sits beside the model stack and may not
#: import it; a test checks the two agree)
RECURRENCE_CHOICES = ("eager", "auto", "cuda_graph")


@dataclass(frozen=True)
class PaperVariant:
    key: str
    paper_name: str
    gate: str
    prior_term: bool
    music_hidden: int
    music_dropout: float
    #: the prior term's weight when it differs from the data set's ``kl_lambda`` (None: that)
    kl_weight: float | None = None


#: The paper's seven variants by their short names (``--variant``).
VARIANTS: dict[str, PaperVariant] = {
    v.key: v
    for v in (
        PaperVariant("lstm", "LSTM", "sigmoid", False, 200, 0.1),
        PaperVariant("cifg", "CIFG", "coupled", False, 232, 0.1),
        PaperVariant("g2lstm", "G2-LSTM", "gumbel", False, 200, 0.1),
        PaperVariant("blstm", "BLSTM", "beta", False, 161, 0.1),
        PaperVariant("bblstm", "bBLSTM", "bivariate", False, 177, 0.1),
        PaperVariant("bblstm5g", "bBLSTM(5G)", "bivariate5", False, 148, 0.2),
        PaperVariant("bblstm5gp", "bBLSTM(5G+p)", "bivariate5", True, 148, 0.2),
    )
}


#: Ablations of bBLSTM(5G+p) on music (docs/results/music.md explains them): the test-time
#: gates of a posterior collapsed onto the prior, i = f = 1/2 (``constant``); the prior's
#: Gamma(0.5, 1) draws as training gates without a guide or KL, 1/2 at evaluation
#: (``prior_noise``); and bBLSTM(5G+p) with ``kl_lambda`` 0.001 instead of JSB's 1.0.
ABLATIONS: dict[str, PaperVariant] = {
    v.key: v
    for v in (
        PaperVariant(
            "ablation_constant_gates", "5G+p ablation: i = f = 1/2", "constant", False, 148, 0.2
        ),
        PaperVariant(
            "ablation_prior_noise",
            "5G+p ablation: prior-noise gates",
            "prior_noise",
            False,
            148,
            0.2,
        ),
        PaperVariant(
            "ablation_kl0.001", "5G+p ablation: kl_lambda 0.001", "bivariate5", True, 148, 0.2, 1e-3
        ),
    )
}


def get_variant(key: str) -> PaperVariant:
    """Look a variant (or an ablation) up by its short name; ``ValueError`` lists the known ones."""
    found = VARIANTS.get(key) or ABLATIONS.get(key)
    if found is None:
        raise ValueError(f"unknown variant {key!r}; expected one of {list(VARIANTS)}")
    return found


def add_variant_arguments(
    parser: argparse.ArgumentParser, default: str = "bblstm5gp", ablations: bool = False
) -> None:
    """Add ``--variant`` (a key of :data:`~pyro_betalstm.variants.VARIANTS`, or of
    :data:`~pyro_betalstm.variants.ABLATIONS` too with ``ablations=True``) and its overrides to
    ``parser``.

    ``--gate`` (dest ``gate``), ``--prior`` (``prior``) and ``--kl-weight`` (``kl_weight``)
    default to None, meaning "take the variant's value"; the script resolves them.
    """
    names = sorted(VARIANTS) + (sorted(ABLATIONS) if ablations else [])
    parser.add_argument("--variant", default=default, choices=names)
    parser.add_argument("--gate", default=None, help="override the variant's gate family")
    parser.add_argument(
        "--prior", default=None, help="gamma | learnable | conditional | hierarchical"
    )
    parser.add_argument("--kl-weight", dest="kl_weight", type=float, default=None)


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    seed_default: int | None,
    seed_help: str | None = None,
    threads_default: int | None = 1,
    resume_help: str = "continue from <out-dir>/last.pt",
) -> None:
    """Add the flags of how a script runs: ``--seed --threads --device --recurrence --out-dir
    --resume --overwrite --no-progress --smoke --import`` (dests ``seed``, ``threads``,
    ``device``, ``recurrence``, ``out_dir``, ``resume``, ``overwrite``, ``no_progress``,
    ``smoke``, ``imports``: a list of module names, or None).

    ``seed_default`` and ``threads_default`` are the script's own (None lets it choose, e.g.
    per protocol); ``seed_help`` and ``resume_help`` say what the flag means for that script.
    """
    parser.add_argument("--seed", type=int, default=seed_default, help=seed_help)
    parser.add_argument(
        "--threads",
        type=int,
        default=threads_default,
        help="torch CPU threads (0: torch's own choice"
        + (", the default)" if threads_default is None else f"; default {threads_default})"),
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--recurrence",
        choices=RECURRENCE_CHOICES,
        default="auto",
        help="how the LSTM layers run their time loop: auto (CUDA graphs on a GPU, the Python "
        "loop elsewhere; the default), eager (the loop always) or cuda_graph (graphs, GPU only)",
    )
    parser.add_argument("--out-dir", default=None)
    # one or the other: continuing a run and deleting it are opposite requests
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help=resume_help)
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an output folder that already holds a run (its results and "
        "checkpoints are deleted); without it such a folder is refused",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="print no progress bars and no line per epoch, only the final scores (bars are "
        "drawn only on a terminal anyway: a log file gets the lines alone)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI (under a minute)")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=None,
        metavar="MODULE",
        help="import MODULE first (a module name as python -m takes it, the current folder "
        "on the path; repeatable): your own module that registers a gate family or prior "
        "for --gate or --prior (guides/custom_gate_family.md)",
    )
