"""Training engine: SVI with torch or Pyro optimisers, checkpoints, resume and progress."""

from __future__ import annotations

import csv
import io
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyro.infer import Trace_ELBO

from ..checks import is_real_number
from ..data import DatasetShard, SequenceDataset
from ..io import atomic_torch_save, atomic_write_json, atomic_write_text, safe_torch_load
from ..models.base import GateModel
from ..nn import set_recurrence
from ..progress import progress_bar, write_line
from . import distributed as parallel
from .checkpoint import (
    FIT_FILES,
    LAST,
    RUN_FILES,
    check_resume_settings,
    load_resume_point,
    remove_stale_temporaries,
    rng_state,
    save_resume_point,
    set_aside_unreadable,
    set_rng_state,
)
from .config import ELBOS, TrainConfig, checked_device, make_optimizer
from .distributed import Workers, rank_seed, start_workers
from .elbo import GateMeanFieldELBO
from .lr_rules import lr_rule_fires
from .predict import evaluate_nll


class NonFiniteLossError(RuntimeError):
    """The loss, a gradient, a parameter or a validation metric became NaN or infinite; the
    last good checkpoint is kept."""


class DivergenceError(RuntimeError):
    """The monitored metric passed ``TrainConfig.divergence_threshold``; the last checkpoint
    before it is kept."""


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history, the best epoch and where files went."""

    #: one record per epoch run (resumed runs included): ``epoch``, ``train_loss`` (per
    #: training sequence), ``grad_norm`` (mean over the steps; None without ``clip_norm``),
    #: ``lr``, ``kl_weight``, ``seconds`` (the epoch's training), ``elapsed_s`` and
    #: ``cpu_elapsed_s`` (wall-clock and CPU seconds of the run so far, validation and resumed
    #: processes included), and each validation metric as ``valid_<name>``; as in
    #: ``metrics.json``
    history: list[dict] = field(default_factory=list)
    #: the epoch with the lowest monitored value (None before the first epoch)
    best_epoch: int | None = None
    #: that value: validation ``monitor``, or the training loss without validation data
    best_metric: float = math.inf
    #: stopped by ``early_stopping_patience``
    stopped_early: bool = False
    #: stopped by ``time_limit_s``
    stopped_on_time: bool = False
    #: stopped by ``target_metric``
    stopped_on_target: bool = False
    #: the checkpoint folder (None: nothing was written)
    out_dir: Path | None = None
    #: the number of data-parallel processes (1: not distributed)
    world_size: int = 1
    #: the seed of each rank's global generators, when fit seeded them (``seed_globals`` or
    #: data-parallel; empty otherwise)
    rank_seeds: list[int] = field(default_factory=list)
    #: the checkpoint this process resumed from (None: it started the run)
    resumed_from: Path | None = None
    #: training seconds of the processes before this one (a resumed run; 0 for a fresh one)
    earlier_seconds: float = 0.0
    #: CPU seconds those processes spent in their epochs (this process's on rank 0 of torchrun)
    earlier_cpu_seconds: float = 0.0

    @property
    def best_checkpoint(self) -> Path | None:
        """``out_dir / "best.pt"`` (None without ``out_dir``; the file exists once an epoch
        has been run)."""
        return None if self.out_dir is None else self.out_dir / "best.pt"


def default_evaluate(model: GateModel, data: SequenceDataset, config: TrainConfig) -> dict:
    """Validation metrics: NLL with mean gates (and predictive NLL if ``eval_samples``)."""
    return evaluate_nll(model, data, config.eval_batch_size, config.eval_samples, config.device)


def fit(
    model: GateModel,
    train_data: SequenceDataset,
    valid_data: SequenceDataset | None = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    evaluate: Callable[[GateModel, SequenceDataset, TrainConfig], dict] = default_evaluate,
    monitor: str = "nll_mean_gates",
    resume_override: bool | Iterable[str] = False,
    overwrite: bool = False,
    run_settings: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` by SVI on ``train_data``; validate on ``valid_data`` after every epoch.

    Every epoch writes ``last.pt`` (everything needed to resume), ``metrics.csv`` and
    ``metrics.json`` to ``out_dir``; the model with the best validation ``monitor`` (lower is
    better) goes to ``best.pt``. Every file is written atomically, and the previous ``last.pt``
    is kept as ``last.prev.pt``.

    The minibatch order comes from a private generator seeded with ``config.seed``; the global
    generators (gate draws, dropout) are seeded only with ``config.seed_globals``. Validation's
    random draws (``eval_samples``, or an ``evaluate`` that samples) come from torch's CPU
    generator (and the CUDA device's, on a GPU) seeded afresh from ``config.seed``, the epoch
    and the rank; their states are restored after validation, so how validation runs cannot
    change training's draws (numpy's and Python's generators are not forked, and on another
    accelerator its own generator is not either).

    Loss units: ``train_loss`` is the negative ELBO **per training sequence**, the Pyro loss of
    a minibatch (``svi.step``'s unit: the whole data set, as the sequence plate scales the
    minibatch to it) divided by the data set size; see
    :func:`~pyro_betalstm.infer.loss_per_sequence`.

    With ``resume=True`` training continues from ``last.pt`` (from ``last.prev.pt``, with a
    warning, when ``last.pt`` is unreadable) and, with the same settings, reproduces the losses
    of an uninterrupted run: every random state, the global ones included, is restored from the
    checkpoint. An interruption loses at most the current epoch. The settings must equal the
    checkpoint's except ``num_epochs``, ``time_limit_s``, ``target_metric``,
    ``early_stopping_patience``, ``progress``, ``device``, ``eval_batch_size``, ``seed_globals``
    and how the run is launched (``recurrence``, ``distributed``); otherwise a ValueError lists every
    differing key. ``resume_override``: True accepts any difference, a collection of keys
    accepts those (with a warning); the optimizer's state, its learning rate and weight decay
    included, still comes from the checkpoint.

    A run that had stopped (early stopping, target reached, time limit spent) and is resumed
    checks its stop rule first, with the resumed settings: it trains on only if that rule now
    lets it (a larger ``num_epochs``, patience or ``time_limit_s``). The time limit counts the
    training time of every process of the run, not only the resumed one.

    A folder that already holds a run (``last.pt``, ``last.prev.pt`` or ``best.pt``) is not
    started over silently: without ``resume`` a :class:`FileExistsError` says so, unless
    ``overwrite=True``, which deletes those files first. ``run_settings``: what else defines
    the run (an example's data and model settings); stored in ``last.pt`` and, on resume,
    checked like the config.

    A NaN or infinite loss, gradient (whether or not ``clip_norm`` is set) or parameter raises
    :class:`NonFiniteLossError` naming the epoch and step (also when Pyro's validation finds the
    NaN first), and a non-finite validation metric raises it naming the epoch; the last good
    checkpoint stays intact. ``config.divergence_threshold`` stops a diverging run with
    :class:`DivergenceError`.

    **Data-parallel** (launched by ``torchrun`` with more than one process, or
    ``config.distributed=True``): every rank joins the process group (gloo on the CPU, NCCL with
    ``cuda:LOCAL_RANK`` on CUDA) and starts from rank 0's weights. Each step takes
    ``world_size`` consecutive minibatches of the epoch's order (the same shuffle and length
    bucketing on every rank), one per rank, so ``batch_size`` is per rank and the global batch
    is ``batch_size * world_size``; the per-rank gradients, weighted by each rank's share of
    the global batch, are summed with one all-reduce, which gives the gradient of the global
    batch with the ELBO scaled by ``N / global batch``. Validation runs on disjoint shards of
    ``valid_data`` and the means are combined weighted by their ``num_predictions``. The global
    generators of rank ``r`` are always seeded, with :func:`~.distributed.rank_seed`
    (``config.seed`` on rank 0), and the seeds are recorded in the result and the checkpoint,
    with every rank's random states. Only rank 0 writes files and prints. Resume needs the
    same world size (a ValueError names both otherwise).

    :param model: the model to train, in place; moved to the training device (``config.device``,
        or the rank's GPU when data-parallel). Its ``kl_weight`` is the target of
        ``kl_anneal_epochs`` and is set back to it when fit returns.
    :param train_data: the training sequences (a TypeError for an object without
        ``batches``).
    :param valid_data: the validation sequences, or None: the training loss per sequence is
        then monitored instead (``best.pt``, patience, ``target_metric``, ``lr_rule``,
        ``divergence_threshold``) and ``evaluate`` is never called.
    :param config: the settings (None: ``TrainConfig()``), checked with
        :meth:`TrainConfig.check` (a TypeError for another type).
    :param out_dir: the checkpoint folder, made if need be; None writes nothing (and
        ``resume=True`` then raises :class:`FileNotFoundError`).
    :param resume: continue the run saved in ``out_dir`` (see above).
    :param evaluate: the validation, called as ``evaluate(model, valid_data, config)`` after
        every epoch when ``valid_data`` is given. The model is on the training device and
        still in training mode (:func:`~pyro_betalstm.infer.train.default_evaluate`, the
        default, switches to evaluation mode itself, with mean gates), and ``valid_data`` is
        not moved. It returns a dict of metric name to number (lower is better for the
        monitored one) that must contain ``monitor``: a ValueError after its first call
        otherwise (for :func:`~pyro_betalstm.infer.train.default_evaluate`, before
        training). A NaN or infinite number raises :class:`NonFiniteLossError`; every entry
        joins the epoch's record as ``valid_<name>``. Data-parallel: each rank calls it on its
        shard of ``valid_data`` (a :class:`~pyro_betalstm.data.DatasetShard`); the float
        values are averaged weighted by each shard's ``num_predictions`` entry (else its
        number of sequences), ``num_predictions`` is summed and any other value is taken from
        the first rank with a non-empty shard.
    :param monitor: the metric of ``evaluate`` that selects ``best.pt`` and drives the stop
        rules and ``lr_rule`` (default ``"nll_mean_gates"``; without ``valid_data`` the
        training loss takes its place, recorded under this name in ``best.pt``).
    :param resume_override: settings that may differ from the checkpoint's on resume: True
        (any), or a collection of keys.
    :param overwrite: without ``resume``, delete the files of a run already in ``out_dir``
        and start over.
    :param run_settings: what else defines the run, stored in ``last.pt`` and compared on
        resume.
    :returns: the history, best epoch and stop reason (:class:`FitResult`).
    :raises NonFiniteLossError: a NaN or infinite loss, gradient, parameter or validation
        metric.
    :raises DivergenceError: the monitored metric passed ``config.divergence_threshold``.
    :raises FileExistsError: ``out_dir`` holds a run and neither ``resume`` nor
        ``overwrite`` is set.
    :raises ValueError: a setting out of range, a ``monitor`` that validation does not
        report, or a checkpoint whose settings, model or world size differ on resume.
    """
    config = _checked_config(config, train_data, valid_data)
    _check_monitor(monitor, evaluate, valid_data, model, config)
    device = checked_device(config.device)
    workers, device = start_workers(device, config.distributed, config.distributed_timeout_s)
    out = _prepare_out_dir(out_dir, workers.is_main, resume, overwrite)
    if config.seed_globals or workers.active:
        _seed_global_generators(rank_seed(config.seed, workers.rank))
    run = _Run.start(model, config, device, out, workers, run_settings, monitor)
    if workers.active:
        _check_ranks_agree(run, train_data, valid_data)
    resumed_from = run.result.resumed_from = _resume(run, resume_override) if resume else None
    if workers.active:
        parallel.broadcast_module(model)

    # wall-clock and CPU seconds of training and validation, summed over resumed runs
    history = run.result.history
    elapsed_before = history[-1].get("elapsed_s", 0.0) if history else 0.0
    cpu_before = history[-1].get("cpu_elapsed_s", 0.0) if history else 0.0
    run.result.earlier_seconds = elapsed_before
    run.result.earlier_cpu_seconds = cpu_before
    run_started, cpu_started = time.perf_counter(), time.process_time()
    monitor_key = f"valid_{monitor}" if valid_data is not None else "train_loss"
    if history and _should_stop(run, history[-1][monitor_key], len(history), elapsed_before):
        run.start_epoch = config.num_epochs + 1  # a resumed run that had already stopped
    if resumed_from is not None and config.progress and workers.is_main:
        left = max(0, config.num_epochs - run.start_epoch + 1)
        write_line(
            f"resuming from {resumed_from} after epoch {len(history)}: "
            + (f"{left} epoch(s) to train" if left else "nothing left to train")
        )
    try:
        for epoch in range(run.start_epoch, config.num_epochs + 1):
            record = _train_epoch(run, train_data, epoch)
            _check_parameters(run, epoch)
            value = _monitored_value(run, record, evaluate, valid_data, monitor)
            _check_divergence(run, value, monitor_key, epoch)
            _keep_if_best(run, value, epoch, monitor)
            record["elapsed_s"] = elapsed_before + time.perf_counter() - run_started
            record["cpu_elapsed_s"] = cpu_before + time.process_time() - cpu_started
            history.append(record)
            _apply_lr_rule(run, [r[monitor_key] for r in history])
            if config.progress and workers.is_main:
                _print_epoch(record, monitor if valid_data is not None else None, value)
            stop = _should_stop(run, value, epoch, record["elapsed_s"])
            if out is not None:
                _save_epoch(run, epoch)
            if stop:
                break
    finally:
        # the loop sets the annealed weight; the model leaves with its own, also when an
        # epoch raises (a later fit would otherwise take the annealed value as its target)
        model.kl_weight = run.target_kl_weight
    if workers.active:
        parallel.barrier()  # rank 0's files are complete before any rank reads them
    return run.result


def _seed_global_generators(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random generators with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class _Run:
    """What one :func:`fit` call trains with and updates from epoch to epoch (and checkpoints)."""

    model: GateModel
    config: TrainConfig
    device: torch.device
    out: Path | None
    optimizer: torch.optim.Optimizer
    elbo: Trace_ELBO
    generator: torch.Generator  # the minibatch order, seeded with config.seed
    result: FitResult
    target_kl_weight: float
    workers: Workers = field(default_factory=Workers)
    bad_epochs: int = 0
    start_epoch: int = 1
    #: the epoch's best.pt record while it is to be written (after last.pt: see _save_epoch)
    best_record: dict | None = None
    #: fit's ``monitor``: the name of the metric best.pt records
    monitor: str = "nll_mean_gates"
    #: what else defines the run (fit's ``run_settings``), kept in the checkpoint
    settings: dict | None = None

    @classmethod
    def start(
        cls,
        model: GateModel,
        config: TrainConfig,
        device: torch.device,
        out: Path | None,
        workers: Workers | None = None,
        settings: Mapping[str, Any] | None = None,
        monitor: str = "nll_mean_gates",
    ) -> _Run:
        # the same seed on every rank: the ranks agree on the epoch's minibatches
        generator = torch.Generator().manual_seed(config.seed)
        workers = workers or Workers()
        model.to(device)
        if config.recurrence is not None:
            # the config names the recurrence only: each layer keeps its compile_cell and
            # max_graphs
            set_recurrence(model, config.recurrence)
        result = FitResult(out_dir=out, world_size=workers.world_size)
        if workers.active or config.seed_globals:
            result.rank_seeds = [rank_seed(config.seed, r) for r in range(workers.world_size)]
        return cls(
            model=model,
            config=config,
            device=device,
            out=out,
            optimizer=make_optimizer(config, model.parameters()),
            elbo=ELBOS[config.elbo](num_particles=config.num_particles),
            generator=generator,
            result=result,
            target_kl_weight=model.kl_weight,
            workers=workers,
            settings=None if settings is None else dict(settings),
            monitor=monitor,
        )


def _checked_config(config, train_data, valid_data) -> TrainConfig:
    """The config (default: ``TrainConfig()``), refused with a clear error if anything is off."""
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.check()
    for name, data in (("train_data", train_data), ("valid_data", valid_data)):
        if data is not None and not hasattr(data, "batches"):
            raise TypeError(f"{name} must be a SequenceDataset, got {type(data).__name__}")
    return config


def _prepare_out_dir(
    out_dir: str | Path | None, is_main: bool = True, resume: bool = False, overwrite: bool = False
) -> Path | None:
    """The checkpoint folder, made if need be; a run already in it is refused unless it is
    resumed or ``overwrite`` (which deletes fit's files there, on rank 0)."""
    if out_dir is None:
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_main:  # only rank 0 writes, so only it cleans up
        remove_stale_temporaries(out)  # left by a run killed mid-write
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not resume:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(found)}); starting over would replace "
                "it: resume it (resume=True, --resume), choose another folder, or pass "
                "overwrite=True (--overwrite) to start a new run there"
            )
        if is_main:
            for name in (*RUN_FILES, *FIT_FILES):
                (out / name).unlink(missing_ok=True)
    return out


def _check_monitor(monitor, evaluate, valid_data, model: GateModel, config: TrainConfig) -> None:
    """A ``monitor`` the default validation never reports is refused before training, not
    after the first epoch (a custom ``evaluate`` is checked after its first call)."""
    if valid_data is None or evaluate is not default_evaluate:
        return
    reported = {"nll_mean_gates", "num_predictions"}
    if config.eval_samples and model.family.is_latent:
        reported.add("nll_predictive")
    if monitor not in reported:
        raise ValueError(
            f"monitor {monitor!r} is not a metric of the default validation, which reports "
            f"{sorted(reported)}; pass one of those, or an evaluate that reports it"
        )


def _resume(run: _Run, resume_override: bool | Iterable[str]) -> Path:
    """Load the weights, optimizer, history and random states of the last checkpoint; returns
    the checkpoint read (``last.pt``, or ``last.prev.pt`` where that was unreadable)."""
    if run.out is None:
        raise FileNotFoundError("cannot resume: no checkpoint folder (out_dir is None)")
    ckpt, path = load_resume_point(run.out, map_location=run.device)
    if path.name != LAST and run.workers.is_main:
        set_aside_unreadable(run.out)  # so that the next save keeps the good one as last.prev
    saved_world = ckpt.get("world_size", 1)
    if saved_world != run.workers.world_size:
        same = (
            "without torchrun"
            if saved_world == 1
            else f"under torchrun with {saved_world} processes in all (--nproc_per_node)"
        )
        raise ValueError(
            f"cannot resume from {path}: it was written by a run of {saved_world} process(es) "
            f"and this run has {run.workers.world_size}; the minibatch order, the per-rank "
            "random states and the steps per epoch depend on the world size, so resume "
            f"{same}, or start a new run from its weights (load_best)"
        )
    if run.config.num_epochs < ckpt["epoch"]:
        raise ValueError(
            f"cannot resume from {path} with num_epochs {run.config.num_epochs}: it has "
            f"trained {ckpt['epoch']} epochs already, and a record of this run would name "
            f"fewer epochs than were run; resume with num_epochs of at least {ckpt['epoch']}"
        )
    overridden = check_resume_settings(
        ckpt.get("config"),
        run.config.to_dict(),
        path,
        resume_override,
        defaults=TrainConfig().to_dict(),
    )
    if run.settings is not None:
        overridden += check_resume_settings(
            ckpt.get("run_settings"), run.settings, path, resume_override
        )
    if overridden:
        warnings.warn(
            f"resuming from {path} with settings that differ from the checkpoint's ("
            + "; ".join(overridden)
            + "); the optimizer's state, learning rate and weight decay included, comes "
            "from the checkpoint",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(
            f"{path}: the checkpoint does not fit this model or optimizer ({err})"
        ) from err
    run.result.history = ckpt["history"]
    run.result.best_epoch, run.result.best_metric = ckpt["best_epoch"], ckpt["best_metric"]
    run.bad_epochs, run.start_epoch = ckpt["bad_epochs"], ckpt["epoch"] + 1
    run.target_kl_weight = ckpt["target_kl_weight"]
    _repair_best(run, ckpt)
    per_rank = ckpt.get("rng_per_rank")
    set_rng_state(per_rank[run.workers.rank] if per_rank else ckpt["rng"], run.generator)
    return path


def _train_epoch(run: _Run, train_data: SequenceDataset, epoch: int) -> dict:
    """One pass of SVI steps over ``train_data``; the epoch's record (loss, norm, lr...)."""
    config, model = run.config, run.model
    if config.kl_anneal_epochs:
        model.kl_weight = run.target_kl_weight * min(1.0, epoch / config.kl_anneal_epochs)
    model.train()
    started, total_loss, total_norm = time.perf_counter(), 0.0, 0.0
    if run.workers.active:
        steps = _rank_steps(run, train_data)
        # one step per global minibatch of batch_size x world_size (see _rank_steps)
        num_batches = train_data.num_batches(config.batch_size * run.workers.world_size)
    else:
        num_batches = train_data.num_batches(config.batch_size)
        steps = train_data.batches(
            config.batch_size,
            shuffle=True,
            generator=run.generator,
            bucket=config.bucket_by_length,
        )
    desc = f"epoch {epoch}/{config.num_epochs}"
    show = config.progress and run.workers.is_main
    bar = progress_bar(steps, num_batches, desc, leave=False) if show else steps
    with model.untraced():  # the ELBO reads no deterministic site
        for step, batch in enumerate(bar, start=1):
            if run.workers.active:
                per_sequence, norm = _distributed_svi_step(run, *batch, epoch, step)
            else:
                per_sequence, norm = _svi_step(run, batch.to(run.device), epoch, step)
            total_loss += per_sequence
            if config.clip_norm is not None:
                total_norm += norm
            if bar is not steps:  # a bar is drawn
                bar.set_postfix(loss=f"{per_sequence:.4g}")
    return {
        "epoch": epoch,
        "train_loss": total_loss / num_batches,
        "grad_norm": total_norm / num_batches if config.clip_norm is not None else None,
        "lr": run.optimizer.param_groups[0]["lr"],
        "kl_weight": model.kl_weight,
        "seconds": time.perf_counter() - started,
    }


def _svi_step(run: _Run, batch, epoch: int, step: int) -> tuple[float, float]:
    """One gradient step on ``batch``: its loss per sequence and the gradient norm."""
    loss = _elbo_loss(run, batch, epoch, step)
    run.optimizer.zero_grad(set_to_none=True)
    # gradients of the per-sequence loss, so that clip_norm does not depend on data size
    (loss / batch.dataset_size).backward()
    norm = _gradient_norm(run)
    # the step's one read of the device (each read makes a GPU step wait): the loss and the
    # norm together, both tested before the optimiser changes any parameter
    pair = torch.stack([loss.detach().double(), norm.to(loss.device).double()])
    value, norm_value = pair.tolist()
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"loss is {value} at epoch {epoch}, step {step}; training stopped, "
            f"{_last_good(run.out)}"
        )
    return value / batch.dataset_size, _checked_optimizer_step(run, norm_value, epoch, step)


def _elbo_loss(run: _Run, batch, epoch: int, step: int, where: str = "") -> torch.Tensor:
    """The ELBO loss of ``batch``; Pyro's validation error for a NaN or infinite parameter
    becomes a :class:`NonFiniteLossError` (``where``: e.g. " on rank 1")."""
    model = run.model
    try:
        if isinstance(run.elbo, GateMeanFieldELBO):  # fit tests the loss itself
            return run.elbo.unchecked_loss(model.model, model.guide, batch)
        return run.elbo.differentiable_loss(model.model, model.guide, batch)
    except ValueError as err:
        if not _is_invalid_value_error(err):
            raise
        # Pyro's validation met an invalid parameter before a loss existed: as a NaN loss
        first = (epoch, step) == (1, 1)
        hint = "; at the first step, a prior or network may give it from the start" if first else ""
        raise NonFiniteLossError(
            f"a distribution parameter is invalid (NaN, infinite, or outside its constraint "
            f"such as a Gamma concentration <= 0) at epoch {epoch}, step {step}{where}; "
            f"training stopped, {_last_good(run.out)}{hint} ({str(err).splitlines()[0]})"
        ) from err


def _gradient_norm(run: _Run) -> torch.Tensor:
    """The gradient norm, clipped to ``clip_norm`` (or only measured, so that a NaN gradient
    is caught without clipping too), as a tensor: not read from the device here."""
    params = list(run.model.parameters())
    if run.config.clip_norm is not None:
        return torch.nn.utils.clip_grad_norm_(params, run.config.clip_norm)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def _checked_optimizer_step(run: _Run, norm: float, epoch: int, step: int) -> float:
    """Refuse a non-finite gradient norm (a NaN gradient must not reach the checkpoint), else
    take the optimiser step; returns the norm."""
    if not math.isfinite(norm):
        raise NonFiniteLossError(
            f"gradient norm is {norm} at epoch {epoch}, step {step}; training stopped, "
            f"{_last_good(run.out)}"
        )
    run.optimizer.step()
    return norm


#: TrainConfig keys that may differ between the ranks of one run: what each prints, and where
#: it runs (``cuda`` on every rank means each rank's own device)
RANKS_MAY_DIFFER = frozenset({"progress", "device"})


def _check_ranks_agree(run: _Run, train_data, valid_data) -> None:
    """A ValueError on every rank, naming what differs, unless all ranks train with the same
    settings and data sizes. Ranks given different commands (another batch size or number of
    epochs on one node) would otherwise wait for each other until the timeout, or (another
    seed) silently train on other epoch orders than the one recorded."""
    mine = {
        f"config.{key}": value
        for key, value in run.config.to_dict().items()
        if key not in RANKS_MAY_DIFFER
    }
    mine["training sequences"] = len(train_data)
    mine["validation sequences"] = None if valid_data is None else len(valid_data)
    mine.update({f"run_settings.{key}": value for key, value in (run.settings or {}).items()})
    everyone = parallel.all_gather(mine)
    differences = [
        f"{key}: rank 0 {everyone[0].get(key)!r}, rank {rank} {theirs.get(key)!r}"
        for rank, theirs in enumerate(everyone[1:], start=1)
        for key in sorted(set(everyone[0]) | set(theirs))
        if theirs.get(key) != everyone[0].get(key)
    ]
    if differences:
        raise ValueError(
            f"the {len(everyone)} processes of this run were not given the same settings or "
            f"data; every rank must run the same command: {'; '.join(differences)}"
        )


def _rank_steps(run: _Run, train_data: SequenceDataset):
    """This rank's part of each data-parallel step: ``(batch or None, share)``.

    Every rank draws the same epoch order from the shared ``run.generator``: the global
    minibatches of ``B * W`` sequences (shuffle, length bucketing) that one process with batch
    ``B * W`` draws from the same seed; rank ``r`` takes the ``r``-th slice of ``B`` of each.
    So the steps see the same sequences together as in that one process (before, each rank's
    minibatch was bucketed on its own: another grouping and epoch order). ``share`` is its
    fraction of the step's sequences (the weight of its gradient). A rank left without
    sequences in the epoch's last step gets None.
    """
    config, world, rank = run.config, run.workers.world_size, run.workers.rank
    size = config.batch_size
    steps = train_data.batch_indices(
        size * world, shuffle=True, generator=run.generator, bucket=config.bucket_by_length
    )
    for step in steps:
        mine = step[rank * size : (rank + 1) * size]
        if len(mine):
            yield train_data.batch(mine).to(run.device), len(mine) / len(step)
        else:
            yield None, 0.0


def _distributed_svi_step(
    run: _Run, batch, share: float, epoch: int, step: int
) -> tuple[float, float]:
    """One data-parallel gradient step: this rank's loss weighted by its ``share`` of the
    global batch, gradients summed over the ranks (so every rank takes the same step); the
    global batch's loss per sequence and the gradient norm."""
    model = run.model
    run.optimizer.zero_grad(set_to_none=True)
    local: torch.Tensor | float = 0.0
    if batch is not None:
        loss = _elbo_loss(run, batch, epoch, step, where=f" on rank {run.workers.rank}")
        # N / B_r scales this rank's sequences; times B_r / B it is N / B, the global batch's
        weighted = loss * (share / batch.dataset_size)
        weighted.backward()
        local = weighted.detach()  # read after the all-reduce, not before it
    # a NaN on one rank reaches every rank through the sum, so all of them stop together
    per_sequence = parallel.sum_gradients(list(model.parameters()), local)
    if not math.isfinite(per_sequence):
        raise NonFiniteLossError(
            f"loss per sequence is {per_sequence} at epoch {epoch}, step {step}; training "
            f"stopped, {_last_good(run.out)}"
        )
    return per_sequence, _checked_optimizer_step(run, float(_gradient_norm(run)), epoch, step)


def _check_parameters(run: _Run, epoch: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise NonFiniteLossError(
            f"a parameter is NaN or infinite after epoch {epoch}; training stopped, "
            f"{_last_good(run.out)}"
        )


def _monitored_value(
    run: _Run, record: dict, evaluate, valid_data: SequenceDataset | None, monitor: str
) -> float:
    """The epoch's value of the monitored metric: validation ``monitor`` (the validation
    metrics, checked finite, join ``record`` as ``valid_*``), or the training loss."""
    if valid_data is None:
        return record["train_loss"]
    with _validation_random_stream(run, record["epoch"]):
        if run.workers.active:
            metrics = _evaluate_shards(run, evaluate, valid_data)
        else:
            metrics = evaluate(run.model, valid_data, run.config)
    if monitor not in metrics:
        raise ValueError(
            f"monitor {monitor!r} is not among the validation metrics {sorted(metrics)} that "
            "evaluate returned"
        )
    bad = {k: v for k, v in metrics.items() if is_real_number(v) and not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"validation metrics {bad} after epoch {record['epoch']} are not finite; training "
            f"stopped, {_last_good(run.out)}"
        )
    record.update({f"valid_{k}": v for k, v in metrics.items()})
    return metrics[monitor]


#: tells the validation streams' seeds apart from any other seed derived from (seed, rank)
_VALIDATION_STREAM = 0x56414C49


def _validation_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of the validation draws after ``epoch`` on rank ``rank`` of a run seeded with
    ``seed``: a 63-bit number mixed from all three and a tag, unrelated to the training streams'
    seeds (:func:`~.distributed.rank_seed`)."""
    return int(
        np.random.SeedSequence([seed, rank, epoch, _VALIDATION_STREAM]).generate_state(
            1, np.uint64
        )[0]
        >> 1
    )


@contextmanager
def _validation_random_stream(run: _Run, epoch: int) -> Iterator[None]:
    """Validation draws (``eval_samples > 0``, or an ``evaluate`` that samples) from torch's CPU
    generator and, on a GPU, the CUDA device's, seeded with ``_validation_seed`` and restored
    after: how validation is run (``eval_samples``, ``eval_batch_size``, ``evaluate``) cannot
    change the training updates that follow, and a run's validation draws depend on its seed
    and epoch. (Another accelerator's generator is neither forked nor reseeded.)"""
    cuda = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        seed = _validation_seed(run.config.seed, epoch, run.workers.rank)
        torch.random.default_generator.manual_seed(seed)
        for device in cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _evaluate_shards(run: _Run, evaluate, valid_data: SequenceDataset) -> dict:
    """``evaluate`` on this rank's shard of ``valid_data``, combined over the ranks: means
    weighted by each shard's ``num_predictions`` (else its number of sequences)."""
    shard = DatasetShard.of_rank(valid_data, run.workers.rank, run.workers.world_size)
    metrics, weight = None, 0.0
    if len(shard):
        metrics = evaluate(run.model, shard, run.config)
        weight = float(metrics.get("num_predictions", len(shard)))
    return parallel.combine_metrics(parallel.all_gather((metrics, weight)))


def _check_divergence(run: _Run, value: float, monitor_key: str, epoch: int) -> None:
    threshold = run.config.divergence_threshold
    if threshold is not None and value > threshold:
        raise DivergenceError(
            f"{monitor_key} is {value:.6g} after epoch {epoch}, above "
            f"divergence_threshold {threshold:.6g}: the run diverged; "
            f"training stopped, {_last_good(run.out)}"
        )


def _keep_if_best(run: _Run, value: float, epoch: int, monitor: str) -> None:
    """Record a new best epoch (and write ``best.pt``), or count one more epoch without one."""
    result = run.result
    if value < result.best_metric:
        result.best_metric, result.best_epoch, run.bad_epochs = value, epoch, 0
        run.best_record = {"epoch": epoch, monitor: value}  # best.pt, after last.pt
    else:
        run.bad_epochs += 1


def _apply_lr_rule(run: _Run, values: list[float]) -> None:
    """Divide the learning rate by ``lr_decay`` when the rule fires on the monitored values."""
    config = run.config
    if config.lr_decay > 1 and lr_rule_fires(config.lr_rule, values, config.plateau_start_epoch):
        for group in run.optimizer.param_groups:
            group["lr"] /= config.lr_decay


def _print_epoch(record: dict, monitor: str | None, value: float) -> None:
    write_line(
        f"epoch {record['epoch']}: train loss/seq {record['train_loss']:.4f}"
        + (f", valid {monitor} {value:.4f}" if monitor is not None else "")
    )


def _save_epoch(run: _Run, epoch: int) -> None:
    """Write the metrics files and the resume point ``last.pt`` after ``epoch`` (rank 0,
    with every rank's random states)."""
    extra: dict = {"world_size": run.workers.world_size, "rank_seeds": run.result.rank_seeds}
    if run.workers.active:
        extra["rng_per_rank"] = parallel.all_gather(rng_state(run.generator))
        if not run.workers.is_main:
            return
    _write_metrics(run.out, run.result.history)
    save_resume_point(
        run.out,
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "epoch": epoch,
            "history": run.result.history,
            "best_epoch": run.result.best_epoch,
            "best_metric": run.result.best_metric,
            "bad_epochs": run.bad_epochs,
            "target_kl_weight": run.target_kl_weight,
            "rng": rng_state(run.generator),
            "config": run.config.to_dict(),
            "run_settings": run.settings,
            **extra,
        },
    )
    if run.best_record is not None:
        _write_best(run, run.best_record)
        run.best_record = None


def _write_best(run: _Run, record: dict) -> None:
    """``best.pt``: the model's weights now, with ``record`` (its epoch and metric). Written
    after the epoch's ``last.pt``, so a kill between the two leaves a best.pt of an epoch the
    history has; a resume then writes the missing one (:func:`_repair_best`)."""
    atomic_torch_save({"model": run.model.state_dict(), **record}, run.out / "best.pt")


def _repair_best(run: _Run, ckpt: dict) -> None:
    """After loading ``ckpt``: when its last epoch was the best and best.pt is not of that
    epoch (the run was killed between the two writes), write it from the loaded weights."""
    best = run.out / "best.pt"
    if ckpt["best_epoch"] != ckpt["epoch"] or not run.workers.is_main:
        return
    try:
        saved_epoch = safe_torch_load(best, what="best checkpoint").get("epoch")
    except (OSError, ValueError, AttributeError):
        saved_epoch = None
    if saved_epoch != ckpt["epoch"]:
        record = {"epoch": ckpt["epoch"], run.monitor: ckpt["best_metric"]}
        _write_best(run, record)


def _should_stop(run: _Run, value: float, epoch: int, elapsed_s: float) -> bool:
    """Whether training ends after ``epoch`` (target reached, patience or time spent: the
    run's ``elapsed_s`` seconds of training so far, resumed processes included); the reason is
    recorded on the result (data-parallel: rank 0's decision, as the clocks of the ranks
    differ)."""
    stop = _stop_reason(run, value, epoch, elapsed_s)
    if run.workers.active:
        stop = parallel.from_main(stop)
    if stop is not None:
        setattr(run.result, stop, True)
    return stop is not None


def _stop_reason(run: _Run, value: float, epoch: int, elapsed_s: float) -> str | None:
    config = run.config
    if config.target_metric is not None and value <= config.target_metric:
        return "stopped_on_target"
    if (
        config.early_stopping_patience is not None
        and run.bad_epochs >= config.early_stopping_patience
    ):
        return "stopped_early"
    if (
        config.time_limit_s is not None
        and elapsed_s > config.time_limit_s
        and epoch < config.num_epochs
    ):
        return "stopped_on_time"
    return None


def _last_good(out: Path | None) -> str:
    if out is None:
        return "no checkpoint folder"
    if (out / "last.pt").exists():
        return f"last good checkpoint: {out / 'last.pt'}"
    return f"no checkpoint written yet in {out}"


def _is_invalid_value_error(err: ValueError) -> bool:
    # torch.distributions' argument validation (which Pyro's validation switches on)
    message = str(err)
    return "Expected parameter" in message and "invalid values" in message


def _write_metrics(out: Path, history: list[dict]) -> None:
    atomic_write_json(out / "metrics.json", history)
    keys = list(dict.fromkeys(k for record in history for k in record))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "metrics.csv", table.getvalue())


def load_best(model: GateModel, out_dir: str | Path, device: str = "cpu") -> GateModel:
    """Load the best-validation weights written by :func:`fit` into ``model``."""
    path = Path(out_dir) / "best.pt"
    if not path.exists():
        raise FileNotFoundError(f"no best checkpoint at {path}")
    state = safe_torch_load(path, map_location=device, what="best checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: expected a dict with the model's weights under 'model'")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the checkpoint does not fit this model ({err})") from err
    return model
