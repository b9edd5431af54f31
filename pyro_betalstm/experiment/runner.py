"""The plumbing every example shares: settings, the training configuration, the run's files.

An example script describes its task (data, model, the scores it reports); this module does
the rest the same way for all of them:

1. :func:`~pyro_betalstm.experiment.resolve_settings` merges, in this order and no other, the
   protocol's defaults, the ``--smoke`` sizes (with ``--smoke``) and every flag given
   explicitly on the command line. So an explicit flag always wins, also over ``--smoke``; a
   smoke run without such flags has the smoke sizes whatever the protocol.
2. :func:`~pyro_betalstm.experiment.begin` sets the CPU threads and starts the clock;
   :func:`~pyro_betalstm.experiment.start_run` opens the run directory
   (``runs/<task>/<name>`` unless ``--out-dir``); :func:`~pyro_betalstm.experiment.train_config`
   builds the :class:`~pyro_betalstm.infer.TrainConfig` from the settings and the run flags.
3. :func:`~pyro_betalstm.experiment.train` fits the model and restores its best checkpoint;
   :func:`~pyro_betalstm.experiment.save_gate_draws` writes the gate draws diagnostics render;
   :func:`~pyro_betalstm.experiment.run_header` and :func:`~pyro_betalstm.experiment.run_footer`
   are the keys every results record starts and ends with (:mod:`pyro_betalstm.results`), and
   :func:`~pyro_betalstm.experiment.write_results` writes ``results.json`` and ``results.md``
   atomically.

Under ``torchrun`` (more than one process) :func:`~pyro_betalstm.experiment.begin` joins the
process group, every rank trains (:func:`~pyro_betalstm.infer.fit` is data-parallel), and only
rank 0 prints and writes files: the other ranks print nothing, and after
:func:`~pyro_betalstm.experiment.train` an example's ranks other than 0 stop
(:func:`~pyro_betalstm.experiment.is_main_process`), so the final evaluation on the validation
and test sets, the gate draws and ``results.json`` come from rank 0 alone, on the whole splits,
exactly as in one process. ``results.json`` records ``world_size``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..data import MissingDependency, SequenceDataset
from ..gates import get_gate_family
from ..infer import TrainConfig, evaluate_classifier, fit, load_best, sample_gates
from ..infer.checkpoint import RUN_FILES, has_resume_point
from ..infer.config import checked_device
from ..infer.distributed import current_workers, from_main, start_workers, stop_workers
from ..infer.train import FitResult
from ..io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    read_json,
    remove_temporaries,
)
from ..models.base import GateModel, SequenceBatch
from ..priors import get_prior
from ..provenance import git_commit, run_hardware
from ..results import (
    DIAGNOSTICS_DIR,
    FOLDS_FILE,
    GATE_DRAWS_FILE,
    INVOCATIONS_FILE,
    RESULTS_FILE,
    RESULTS_ROW_FILE,
    remove_render_files,
    results_table,
    validate_results,
)
from ..variants import get_variant
from .user_modules import import_user_modules


def plain_text(docstring: str) -> str:
    """A docstring as a script's ``--help`` shows it: Sphinx roles (``:mod:`x```) and double
    backticks reduced to their text."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring)
    return text.replace("``", "")


def add_setting_flags(parser: argparse.ArgumentParser, **flags: type | tuple[type, str]) -> None:
    """Add one ``--some-setting`` flag (dest ``some_setting``, default None: "the protocol's
    value") per keyword: its type, or ``(type, help)``."""
    for dest, spec in flags.items():
        kind, text = spec if isinstance(spec, tuple) else (spec, None)
        flag = "--" + dest.replace("_", "-")
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)


def resolve_settings(
    defaults: Mapping[str, Any],
    args: argparse.Namespace,
    flags: Iterable[str],
    smoke: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's settings: ``defaults`` (the protocol's), then ``smoke`` when ``args.smoke``,
    then each key of ``flags`` whose command-line value (``args.<key>``) is not None."""
    settings = dict(defaults)
    if getattr(args, "smoke", False) and smoke:
        settings.update(smoke)
    for key in flags:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    _check_gate_settings(settings, args)
    return settings


def _check_gate_settings(settings: dict[str, Any], args: argparse.Namespace) -> None:
    """Check the gate family and prior names, and refuse a flag the run would ignore while
    its results record named it: ``--prior`` and ``--kl-weight`` act on latent gates only,
    and ``--prior`` only where the prior term is in the loss (``kl_weight > 0``). A
    deterministic family draws no gates and has no KL, so its ``eval_samples`` (the
    predictive's gate draws) and ``kl_weight`` are recorded as 0, whatever the protocol or
    variant said (``--variant bblstm5gp --gate sigmoid`` trains a sigmoid LSTM)."""
    try:
        family = get_gate_family(settings["gate"]) if "gate" in settings else None
        if "prior" in settings:
            get_prior(settings["prior"])
    except ValueError as err:
        raise SystemExit(str(err)) from None
    given = [key for key in ("prior", "kl_weight") if getattr(args, key, None) is not None]
    if family is not None and not family.is_latent:
        if "eval_samples" in settings:
            settings["eval_samples"] = 0
        if "kl_weight" in settings:
            settings["kl_weight"] = 0.0
        if given:
            flags = " and ".join("--" + key.replace("_", "-") for key in given)
            raise SystemExit(
                f"{flags} {'applies' if len(given) == 1 else 'apply'} only to latent gates, "
                f"but gate family {settings['gate']!r} is deterministic (no gate prior, no KL "
                "term); choose a latent family (--gate beta, bivariate or bivariate5, or such "
                "a --variant) or leave them out"
            )
    if "prior" in given and settings.get("kl_weight") == 0:
        raise SystemExit(
            f"--prior {settings['prior']} would not be trained or used: variant "
            f"{getattr(args, 'variant', '?')} has no prior term in its loss (kl_weight 0); "
            "add --kl-weight W (W > 0) to train with it"
        )


@dataclass
class Stopwatch:
    """Wall-clock and CPU seconds since it was made, and the code's commit then
    (:func:`~pyro_betalstm.provenance.git_commit`): a run records the code it started with,
    not what the checkout holds when it ends hours later."""

    wall_started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    commit: str | None = field(default_factory=git_commit)
    started_utc: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.wall_started

    def cpu_seconds(self) -> float:
        """CPU seconds of this process: on a shared machine they measure the work, wall
        seconds the wait."""
        return time.process_time() - self.cpu_started


@dataclass
class Run:
    """A run in progress: its name, directory and stopwatch (started with the script), and the
    processes that ran it so far, this one last (``record_invocation``; empty on ranks
    other than 0, which write no record)."""

    name: str
    out: Path
    watch: Stopwatch = field(default_factory=Stopwatch)
    invocations: list[dict[str, Any]] = field(default_factory=list)

    def wall_seconds(self) -> float:
        return self.watch.wall_seconds()

    def cpu_seconds(self) -> float:
        return self.watch.cpu_seconds()


def begin(args: argparse.Namespace) -> Stopwatch:
    """Start a script: import the user's modules (``--import``,
    :mod:`~pyro_betalstm.experiment.user_modules`), set torch's CPU threads (``--threads``;
    unset or 0 keeps torch's choice), join the process group of a ``torchrun`` launch (gloo
    on the CPU, NCCL for ``--device cuda``; ranks other than 0 print nothing from here on)
    and start its stopwatch. A negative ``--threads``, a ``--device`` this machine lacks, or
    ``--recurrence cuda_graph`` off CUDA, is refused here (``SystemExit``), before any data is
    read or folder made."""
    _check_threads(args)
    _check_device_flags(args)
    import_user_modules(getattr(args, "imports", None) or ())  # before --gate, --prior are read
    if args.threads:
        torch.set_num_threads(args.threads)
    workers, _ = start_workers(args.device)
    if workers.active:
        atexit.register(stop_workers)
        if not workers.is_main:  # one rank reports; errors still reach stderr
            sys.stdout = open(os.devnull, "w")
    return Stopwatch()


def _check_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:  # torch's own message names no flag
        raise SystemExit(
            f"--threads must be a positive integer (torch CPU threads) or 0 (torch's own "
            f"choice), got {threads}"
        )


def _check_device_flags(args: argparse.Namespace) -> None:
    try:
        device = checked_device(args.device)  # fit's own check, told here before any data
    except ValueError as err:
        raise SystemExit(f"--device: {err}") from None
    if getattr(args, "recurrence", "eager") == "cuda_graph" and device.type != "cuda":
        raise SystemExit(
            "--recurrence cuda_graph needs --device cuda; --recurrence auto uses the graphs "
            "where there is a GPU and the Python loop elsewhere"
        )


#: set to 1 to see the traceback of a user error in an example script
TRACEBACK_ENV = "PYRO_BETALSTM_TRACEBACK"


#: what a script interrupted by Ctrl-C prints
INTERRUPTED_MESSAGE = (
    "interrupted: the run's checkpoints keep every epoch that finished; the same command with "
    "--resume (in place of --overwrite, if it had one) continues from the last of them"
)


def run_script(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> None:
    """Run an example's ``main``. A user error ends the script with its message on one line
    (``error: ...``) and exit status 2, as argparse ends a bad command line, not with a
    traceback: a bad value, a missing file, a folder that holds a run (``ValueError``,
    ``FileNotFoundError``, ``FileExistsError``), an optional package that is not installed
    (:class:`~pyro_betalstm.data.MissingDependency`; any other ``ImportError`` is a
    bug and keeps its traceback), or a flag refused with ``SystemExit("message")``.
    ``PYRO_BETALSTM_TRACEBACK=1`` shows the traceback too.

    Ctrl-C (``KeyboardInterrupt``) ends it with exit status 130 and a line saying how to
    continue: the checkpoints hold every finished epoch (written atomically, so an interrupted
    write leaves the previous one), and the same command with ``--resume`` goes on from there.
    Under ``torchrun`` only rank 0 prints that line.
    """
    user_errors = (ValueError, FileNotFoundError, FileExistsError, MissingDependency, SystemExit)
    try:
        main(args)
    except KeyboardInterrupt:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        if os.environ.get("RANK", "0") == "0":  # once per torchrun launch, group joined or not
            print(f"\n{INTERRUPTED_MESSAGE}", file=sys.stderr)
        raise SystemExit(130) from None  # 128 + SIGINT, as a shell reports Ctrl-C
    except user_errors as err:
        refusal = isinstance(err, SystemExit)
        if refusal and not isinstance(err.code, str):  # sys.exit(n); argparse printed its own
            raise
        hint = f"\n(set {TRACEBACK_ENV}=1 to see where it was raised)"
        if os.environ.get(TRACEBACK_ENV) == "1":
            if not refusal:
                raise
            traceback.print_exc()  # a SystemExit prints no traceback of its own
            hint = ""
        print(f"error: {err.code if refusal else err}{hint}", file=sys.stderr)
        raise SystemExit(2) from None


def is_main_process() -> bool:
    """Whether this process is rank 0 (always, without ``torchrun``): the one that evaluates
    the trained model and writes the run's files."""
    return current_workers().is_main


#: the files whose presence means a run directory already holds a run
RUN_MARKERS = (RESULTS_FILE, RESULTS_ROW_FILE, GATE_DRAWS_FILE, *RUN_FILES, FOLDS_FILE)
#: the files of a run that ``--overwrite`` deletes here (fit deletes its own checkpoints)
RUN_OUTPUTS = (RESULTS_FILE, RESULTS_ROW_FILE, GATE_DRAWS_FILE, FOLDS_FILE, INVOCATIONS_FILE)


def run_name(
    data: str,
    variant: str,
    gate: str,
    seed: int,
    protocol: str | None = None,
    default_protocol: str | None = None,
) -> str:
    """The name of a run's default folder under ``runs/<task>/``:
    ``<data>-<variant>-<gate>-seed<N>``, with ``-<protocol>`` before ``-seed`` for a run of
    another protocol than the script's ``default_protocol`` (None or the default: not named),
    so that runs of two protocols never meet in one folder."""
    named = [protocol] if protocol and protocol != default_protocol else []
    return "-".join([data, variant, gate, *named, f"seed{seed}"])


def start_run(args: argparse.Namespace, task: str, name: str, watch: Stopwatch) -> Run:
    """Open the run directory (``--out-dir``, else ``runs/<task>/<name>``, with ``-smoke``
    after the name of a ``--smoke`` run, so that a smoke run never lands on a real one).

    A directory that already holds a run (results, gate draws or checkpoints; under
    ``torchrun`` as rank 0 finds it, so that all ranks agree) is refused with a ``SystemExit``
    saying so, unless ``--resume`` (continue it) or ``--overwrite`` (start
    over: its results, gate draws and diagnostics files are deleted here, its checkpoints
    by :func:`~pyro_betalstm.infer.fit`)."""
    if getattr(args, "smoke", False):
        name = f"{name}-smoke"
    out = Path(args.out_dir or Path("runs") / task / name)
    found = [marker for marker in RUN_MARKERS if (out / marker).exists()]
    if current_workers().active:
        # rank 0's look, before any rank writes (a script's rank 0 writes files right after):
        # a slower rank would otherwise find them and refuse a fresh folder as holding a run
        found = from_main(found)
    resume, overwrite = bool(args.resume), bool(getattr(args, "overwrite", False))
    if found and not (resume or overwrite):
        raise SystemExit(
            f"{out} already holds a run ({', '.join(found)}): pass --resume to continue it, "
            "--overwrite to replace it, or --out-dir for another folder"
        )
    if found and overwrite and not resume and is_main_process():
        for marker in RUN_OUTPUTS:
            (out / marker).unlink(missing_ok=True)
        remove_render_files(out / DIAGNOSTICS_DIR)  # a --no-plots run would leave them
    out.mkdir(parents=True, exist_ok=True)
    run = Run(name, out, watch)
    if is_main_process():
        remove_temporaries(out, RUN_OUTPUTS)  # left by a run killed while writing them
        record_invocation(run, args, keep_earlier=bool(found) and resume)
    return run


def record_invocation(run: Run, args: argparse.Namespace, keep_earlier: bool) -> None:
    """Add this process to the run's ``invocations.json`` (a new list for a new run) and to
    ``run.invocations``: when it started, its commit, hardware and torch. A resumed run's
    ``results.json`` lists them all (``invocations``), where its ``git_commit`` and
    ``hardware`` are the last process's."""
    path = run.out / INVOCATIONS_FILE
    earlier: list = []
    if keep_earlier and path.exists():
        try:
            earlier = list(read_json(path, "list of the run's processes"))
        except (ValueError, TypeError) as err:
            warnings.warn(
                f"{err}; the earlier processes are not known", RuntimeWarning, stacklevel=2
            )
            earlier = [{"unknown": f"{path.name} was unreadable when this process started"}]
    this = {
        "started_utc": run.watch.started_utc,
        "git_commit": run.watch.commit,
        "hardware": run_hardware(args.device),
        "torch": torch.__version__,
    }
    run.invocations = [*earlier, this]
    atomic_write_json(path, run.invocations)


def train_config(
    settings: Mapping[str, Any], args: argparse.Namespace, seed: int, **fixed: Any
) -> TrainConfig:
    """The :class:`~pyro_betalstm.infer.TrainConfig` of a run: epochs, minibatch size and
    learning rate from the settings; device, seed, progress bar and ``--early-stopping`` from
    the flags; validation by mean gates (``eval_samples=0``, the monitored score); ``fixed``:
    the task's own fields, which win over all of these."""
    fields: dict[str, Any] = {
        "num_epochs": settings["num_epochs"],
        "batch_size": settings["batch_size"],
        "lr": settings["lr"],
        "eval_samples": 0,
        "device": args.device,
        "recurrence": getattr(args, "recurrence", None),
        "seed": seed,
        "seed_globals": True,  # an example's run is reproducible from its seed alone
        "progress": not args.no_progress,
        "early_stopping_patience": getattr(args, "early_stopping", None),
    }
    fields.update(fixed)
    return TrainConfig(**fields)


#: settings a resume may change: how long it trains, and the evaluation after it
RESUMABLE_SETTINGS = frozenset({"num_epochs", "early_stopping", "eval_samples"})


def run_settings(settings: Mapping[str, Any], **data: Any) -> dict[str, Any]:
    """What defines an example's run besides its :class:`~pyro_betalstm.infer.TrainConfig`, for
    :func:`train`'s ``run_settings``: the resolved settings (but how long it trains) and
    ``data``, the identity of its data (data set, split sizes, permutation...). A resume with
    other values is refused, so a results record never names settings that trained only part
    of it."""
    kept = {key: value for key, value in settings.items() if key not in RESUMABLE_SETTINGS}
    return {**kept, **data}


def evaluate_accuracy(model: GateModel, data: SequenceDataset, config: TrainConfig) -> dict:
    """Mean-gate accuracy and NLL: the validation of a classifier during training."""
    return evaluate_classifier(model, data, config.eval_batch_size, 0, config.device)


def train(
    model: GateModel,
    train_data: SequenceDataset,
    valid_data: SequenceDataset,
    config: TrainConfig,
    out: Path,
    resume: bool,
    classifier: bool = False,
    run_settings: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> FitResult:
    """Fit ``model`` (checkpoints in ``out``) and load its best validation checkpoint.

    A ``classifier`` is validated and selected by its mean-gate error, other models by their
    mean-gate NLL. ``resume`` where ``out`` has no checkpoint yet (a run stopped in its first
    epoch) starts the run, with a note. ``run_settings`` (the script's settings and data) are
    kept in the checkpoint and a resume with other ones is refused; ``overwrite``: see
    :func:`~pyro_betalstm.infer.fit`.
    """
    extra: dict[str, Any] = {"run_settings": run_settings, "overwrite": overwrite}
    if classifier:
        extra.update(evaluate=evaluate_accuracy, monitor="error_mean_gates")
    if resume and not has_resume_point(out):
        print(f"--resume: no checkpoint in {out} yet, so the run starts from its first epoch")
        resume = False
    result = fit(model, train_data, valid_data, config, out_dir=out, resume=resume, **extra)
    load_best(model, out, config.device)
    return result


def predictive_draws(model: GateModel, settings: Mapping[str, Any]) -> int:
    """Gate draws S of the posterior predictive: ``eval_samples`` for latent gates, else 0."""
    return settings["eval_samples"] if model.family.is_latent else 0


def announce_scoring(samples: int) -> None:
    """One line before a script scores its best checkpoint, which on long sequences takes as
    long as several epochs (a log shows no progress bar)."""
    draws = f" and the posterior predictive over {samples} gate draws" if samples else ""
    print(f"scoring the best checkpoint on valid and test: mean gates{draws}", flush=True)


def model_prior(settings: Mapping[str, Any], lstm) -> Any:
    """The gate prior to build a model with: the settings' ``prior`` for latent gates, None for
    a deterministic family (which has no latent gates; the model warns about a prior)."""
    return settings["prior"] if lstm.family.is_latent else None


def count_parameters(module: torch.nn.Module) -> int:
    """The number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def save_gate_draws(
    model: GateModel, batch: SequenceBatch, num_draws: int, run: Run, **extra: Any
) -> dict[str, Any]:
    """Write the gate draws diagnostics render to the run's ``gate_draws.pt``: ``num_draws``
    posterior draws on ``batch`` (:func:`~pyro_betalstm.infer.sample_gates` layout), as many
    prior draws under ``prior`` for latent gate families, and ``extra`` entries (e.g.
    ``tokens``)."""
    draws: dict[str, Any] = sample_gates(model, batch, num_draws)
    if model.family.is_latent:
        from ..diagnostics.draws import prior_gate_draws  # ArviZ is loaded only here

        draws["prior"] = prior_gate_draws(model, batch, num_draws)
    draws.update(extra)
    if is_main_process():
        atomic_torch_save(draws, run.out / GATE_DRAWS_FILE)
    return draws


def training_summary(result: FitResult) -> dict[str, Any]:
    """``best_epoch``, ``epochs_run`` and ``stopped_by`` of a fit: what ended training before
    its last epoch (``early_stopping``, ``target``, ``time_limit``), or None."""
    stops = {
        "early_stopping": result.stopped_early,
        "target": result.stopped_on_target,
        "time_limit": result.stopped_on_time,
    }
    stopped_by = next((name for name, stopped in stops.items() if stopped), None)
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_by": stopped_by,
    }


def run_label(variant_key: str, settings: Mapping[str, Any]) -> str:
    """The paper's name of the variant, with what the flags changed in it: another gate
    family (``--gate``), the prior term added or removed (``--kl-weight``), or a prior other
    than the paper's Gamma(0.5, 1) in it (``--prior``)."""
    variant = get_variant(variant_key)
    label, gate = variant.paper_name, settings.get("gate", variant.gate)
    if gate != variant.gate:
        label += f" with {gate} gates"
    kl_weight, prior = settings.get("kl_weight"), settings.get("prior", "gamma")
    if kl_weight is not None and get_gate_family(gate).is_latent:
        named_prior = "" if prior == "gamma" else f"{prior} prior, "
        if variant.prior_term and kl_weight == 0:
            label += " without prior term"
        elif not variant.prior_term and kl_weight > 0:
            label += f" with prior term ({named_prior}kl_weight {kl_weight:g})"
        elif named_prior:
            label += f" with the {prior} prior"
    return label


def run_header(args: argparse.Namespace, protocol: str, settings: dict, seed: int) -> dict:
    """The keys of what was run: variant, its paper name (:func:`run_label`: with what the
    flags changed), protocol (``smoke`` with ``--smoke``, the protocol it shrank then in
    ``smoke_of_protocol``), settings and seed; ``imports``, the ``--import`` modules, where
    any were given."""
    header = {
        "variant": args.variant,
        "paper_name": run_label(args.variant, settings),
        "protocol": "smoke" if args.smoke else protocol,
        "settings": settings,
        "seed": seed,
    }
    if args.smoke:
        header["smoke_of_protocol"] = protocol
    if getattr(args, "imports", None):
        header["imports"] = list(args.imports)  # the modules that registered the gate or prior
    return header


def run_footer(
    run: Run,
    args: argparse.Namespace,
    cpu: bool = False,
    fit_result: FitResult | None = None,
    earlier_seconds: float = 0.0,
) -> dict:
    """The keys of how it ran: wall seconds (and CPU seconds of this process with ``cpu``),
    hardware, how the recurrence ran (``--recurrence``), torch version, the package's git
    commit when this process started (``git_commit``, see
    :func:`~pyro_betalstm.provenance.git_commit`; a resumed run's is that of the process that
    finished it), ``world_size`` (the processes that trained it, 1 without ``torchrun``) and
    ``invocations``, every process that ran in the run's folder (its ``invocations.json``).

    With ``fit_result``, ``wall_seconds`` and ``cpu_seconds`` count the whole run: a resumed run
    adds the training seconds of the processes before this one, also kept as ``resumed_after_s``
    (``earlier_seconds`` gives them where several fits made the run: cross-validation folds).
    """
    earlier = fit_result.earlier_seconds if fit_result is not None else earlier_seconds
    footer: dict[str, Any] = {"wall_seconds": earlier + run.wall_seconds()}
    if earlier:
        footer["resumed_after_s"] = earlier
    if cpu:
        earlier_cpu = fit_result.earlier_cpu_seconds if fit_result is not None else 0.0
        footer["cpu_seconds"] = earlier_cpu + run.cpu_seconds()
    footer.update(hardware=run_hardware(args.device), torch=torch.__version__)
    footer["git_commit"] = run.watch.commit
    footer["recurrence"] = getattr(args, "recurrence", "eager")
    footer["world_size"] = current_workers().world_size
    if run.invocations:  # as start_run recorded them (a Run made by hand has none)
        footer["invocations"] = run.invocations
    return footer


def write_results(run: Run, record: dict, row: str) -> None:
    """Write ``results.json`` (the record) and ``results.md`` (``row`` under its kind's header)
    atomically; a record without a key :mod:`pyro_betalstm.results` requires, or a row that
    does not fit its columns, is refused (``ValueError``). Only rank 0 writes."""
    validate_results(record, f"the results record of {run.name}")
    table = results_table(record, row)
    if not is_main_process():
        return
    atomic_write_json(run.out / RESULTS_FILE, record)
    atomic_write_text(run.out / RESULTS_ROW_FILE, table)


def describe_scores(split: str, scores: dict, metric: str, unit: str, samples: int) -> str:
    """E.g. ``"test NLL/frame 8.5760 (mean gates), 8.4000 (predictive, S=10)"``."""
    text = f"{split} {unit} {scores[f'{metric}_mean_gates']:.4f} (mean gates)"
    if f"{metric}_predictive" in scores:
        text += f", {scores[f'{metric}_predictive']:.4f} (predictive, S={samples})"
    return text


def print_files(run: Run, checkpoints: str = "best.pt") -> None:
    """Print where the run's results, checkpoints and gate draws are, under ``run.out``.

    :param checkpoints: the checkpoints' path in the run folder, a glob pattern allowed (for
        instance ``"fold*/best.pt"``); printed, not checked.
    """
    out = run.out
    print(
        f"results: {out / RESULTS_FILE}, checkpoints: {out / checkpoints}, gate draws: "
        f"{out / GATE_DRAWS_FILE}"
    )
