"""Training engine: SVI with torch or Pyro optimisers, checkpoints, resume and progress."""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyro
import pyro.optim
import torch
from pyro.infer import Trace_ELBO

from ..data import SequenceDataset
from ..io import atomic_torch_save, atomic_write_json, atomic_write_text
from ..models.base import GateModel
from .elbo import GateMeanFieldELBO
from .lr_rules import check_lr_rule, lr_rule_fires
from .predict import evaluate_nll

ELBOS = {"meanfield": GateMeanFieldELBO, "trace": Trace_ELBO}


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Settings of :func:`fit`. Defaults follow the paper's music protocol where it has one.

    ``elbo``: ``"meanfield"`` (analytic KL where the prior is Gamma, Monte Carlo otherwise) or
    ``"trace"`` (Monte Carlo). ``optimizer``: a ``torch.optim`` class name (``"adam"``), a
    ``torch.optim.Optimizer`` subclass, or a :class:`pyro.optim.PyroOptim` such as
    ``pyro.optim.Adam({"lr": 1e-3})`` (its constructor and arguments are used). ``clip_norm``:
    gradient norm clipping, applied after ``backward`` to the gradient of the per-sequence loss
    (the negative ELBO divided by the number of training sequences; None: off). After each epoch
    the learning-rate rule ``lr_rule`` (see :mod:`~pyro_betalstm.infer.lr_rules`: ``"no_new_best"``,
    the authors' ``"authors"``, or ``"none"``) may divide the learning rate by ``lr_decay``; it
    never fires before epoch ``plateau_start_epoch``. ``target_metric``: stop after the first
    epoch whose validation metric is at or below it (None: never; for time-to-quality runs).
    ``kl_anneal_epochs``: the KL weight rises linearly from 0 to the model's ``kl_weight`` over
    that many epochs. ``early_stopping_patience``: stop after that many epochs without
    improvement (None: never). ``time_limit_s``: stop after the first epoch that ends more than
    that many seconds after :func:`fit` was called (None: never; for fixed-budget protocols,
    the epochs run are in the history). ``bucket_by_length``: minibatches of similar lengths (less
    padding, faster). ``eval_samples``: posterior predictive draws for validation
    (0: mean gates only).
    """

    num_epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: str | type | pyro.optim.PyroOptim = "adam"
    weight_decay: float = 0.0
    elbo: str = "meanfield"
    num_particles: int = 1
    clip_norm: float | None = 5.0
    lr_decay: float = 1.2
    lr_rule: str = "no_new_best"
    plateau_start_epoch: int = 10
    target_metric: float | None = None
    early_stopping_patience: int | None = None
    time_limit_s: float | None = None
    kl_anneal_epochs: int = 0
    eval_samples: int = 0
    eval_batch_size: int = 64
    bucket_by_length: bool = True
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(self.optimizer, str):
            d["optimizer"] = repr(self.optimizer)
        return d


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch history, the best epoch and where files went."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float = math.inf
    stopped_early: bool = False
    stopped_on_time: bool = False
    stopped_on_target: bool = False
    out_dir: Path | None = None

    @property
    def best_checkpoint(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "best.pt"


def _make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    opt = config.optimizer
    if isinstance(opt, pyro.optim.PyroOptim):
        args = opt.pt_optim_args if isinstance(opt.pt_optim_args, dict) else {}
        return opt.pt_optim_constructor(params, **args)
    if isinstance(opt, str):
        names = {name.lower(): name for name in dir(torch.optim)}
        if opt.lower() not in names:
            raise ValueError(
                f"unknown optimizer {opt!r}; expected a torch.optim name such as 'adam'"
            )
        opt = getattr(torch.optim, names[opt.lower()])
    if not (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer must be a name, an Optimizer class or a PyroOptim, got {opt!r}"
        )
    kwargs = {"lr": config.lr}
    if config.weight_decay:
        kwargs["weight_decay"] = config.weight_decay
    return opt(params, **kwargs)


def _rng_state(generator: torch.Generator) -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "shuffle": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
) -> FitResult:
    """Train ``model`` by SVI on ``train_data``; validate on ``valid_data`` after every epoch.

    Every epoch writes ``last.pt`` (everything needed to resume), ``metrics.csv`` and
    ``metrics.json`` to ``out_dir``; the model with the best validation ``monitor`` (lower is
    better) goes to ``best.pt``. With ``resume=True`` training continues from ``last.pt`` and,
    with the same settings, reproduces the losses of an uninterrupted run (all random states are
    checkpointed). An interruption loses at most the current epoch. A NaN or infinite loss raises
    :class:`NonFiniteLossError` naming the epoch and step, leaving the last checkpoint intact.
    """
    fit_started = time.perf_counter()
    config = config or TrainConfig()
    if config.num_epochs < 1:
        raise ValueError(f"num_epochs must be positive, got {config.num_epochs}")
    if config.time_limit_s is not None and not config.time_limit_s > 0:
        raise ValueError(f"time_limit_s must be positive or None, got {config.time_limit_s}")
    check_lr_rule(config.lr_rule)
    if config.elbo not in ELBOS:
        raise ValueError(f"unknown elbo {config.elbo!r}; expected one of {sorted(ELBOS)}")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    optimizer = _make_optimizer(config, model.parameters())
    elbo = ELBOS[config.elbo](num_particles=config.num_particles)
    target_kl_weight = model.kl_weight
    result = FitResult(out_dir=out)
    bad_epochs, start_epoch = 0, 1

    if resume:
        if out is None or not (out / "last.pt").exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint {out}/last.pt")
        ckpt = torch.load(out / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        result.history = ckpt["history"]
        result.best_epoch, result.best_metric = ckpt["best_epoch"], ckpt["best_metric"]
        bad_epochs, start_epoch = ckpt["bad_epochs"], ckpt["epoch"] + 1
        target_kl_weight = ckpt["target_kl_weight"]
        _set_rng_state(ckpt["rng"], generator)

    # wall-clock seconds of training and validation, summed over resumed runs
    elapsed_before = result.history[-1].get("elapsed_s", 0.0) if result.history else 0.0
    run_started = time.perf_counter()
    monitor_key = f"valid_{monitor}" if valid_data is not None else "train_loss"
    num_batches = train_data.num_batches(config.batch_size)
    for epoch in range(start_epoch, config.num_epochs + 1):
        if config.kl_anneal_epochs:
            model.kl_weight = target_kl_weight * min(1.0, epoch / config.kl_anneal_epochs)
        model.train()
        started, total_loss, total_norm = time.perf_counter(), 0.0, 0.0
        batches = train_data.batches(
            config.batch_size, shuffle=True, generator=generator, bucket=config.bucket_by_length
        )
        bar = _progress(batches, num_batches, f"epoch {epoch}/{config.num_epochs}", config.progress)
        for step, batch in enumerate(bar, start=1):
            batch = batch.to(device)
            loss = elbo.differentiable_loss(model.model, model.guide, batch)
            if not torch.isfinite(loss):
                where = f"{out / 'last.pt'}" if out is not None else "no checkpoint directory"
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch}, step {step}; training stopped, "
                    f"last good checkpoint: {where}"
                )
            optimizer.zero_grad(set_to_none=True)
            # gradients of the per-sequence loss, so that clip_norm does not depend on data size
            (loss / batch.dataset_size).backward()
            if config.clip_norm is not None:
                norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm))
                if not math.isfinite(norm):  # a NaN gradient must not reach the checkpoint
                    raise NonFiniteLossError(
                        f"gradient norm is {norm} at epoch {epoch}, step {step}; training stopped,"
                        f" last good checkpoint: {out / 'last.pt' if out else 'none'}"
                    )
                total_norm += norm
            optimizer.step()
            per_sequence = loss.item() / batch.dataset_size
            total_loss += per_sequence
            if config.progress:
                bar.set_postfix(loss=f"{per_sequence:.4g}")
        record = {
            "epoch": epoch,
            "train_loss": total_loss / num_batches,
            "grad_norm": total_norm / num_batches if config.clip_norm is not None else None,
            "lr": optimizer.param_groups[0]["lr"],
            "kl_weight": model.kl_weight,
            "seconds": time.perf_counter() - started,
        }
        improved = False
        if valid_data is not None:
            metrics = evaluate(model, valid_data, config)
            record.update({f"valid_{k}": v for k, v in metrics.items()})
            value = metrics[monitor]
            improved = value < result.best_metric
        else:
            value = record["train_loss"]
            improved = value < result.best_metric
        if improved:
            result.best_metric, result.best_epoch, bad_epochs = value, epoch, 0
            if out is not None:
                atomic_torch_save(
                    {"model": model.state_dict(), "epoch": epoch, monitor: value}, out / "best.pt"
                )
        else:
            bad_epochs += 1
        record["elapsed_s"] = elapsed_before + time.perf_counter() - run_started
        result.history.append(record)
        values = [r[monitor_key] for r in result.history]
        if config.lr_decay > 1 and lr_rule_fires(
            config.lr_rule, values, config.plateau_start_epoch
        ):
            for group in optimizer.param_groups:
                group["lr"] /= config.lr_decay
        if config.progress:
            tqdm_write(
                f"epoch {epoch}: train loss/seq {record['train_loss']:.4f}"
                + (f", valid {monitor} {value:.4f}" if valid_data is not None else "")
            )
        if out is not None:
            _write_metrics(out, result.history)
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_metric": result.best_metric,
                    "bad_epochs": bad_epochs,
                    "target_kl_weight": target_kl_weight,
                    "rng": _rng_state(generator),
                    "config": config.to_dict(),
                },
                out / "last.pt",
            )
        if config.target_metric is not None and value <= config.target_metric:
            result.stopped_on_target = True
            break
        if (
            config.early_stopping_patience is not None
            and bad_epochs >= config.early_stopping_patience
        ):
            result.stopped_early = True
            break
        if (
            config.time_limit_s is not None
            and time.perf_counter() - fit_started > config.time_limit_s
            and epoch < config.num_epochs
        ):
            result.stopped_on_time = True
            break
    model.kl_weight = target_kl_weight
    return result


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def tqdm_write(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)


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
    model.load_state_dict(torch.load(path, map_location=device, weights_only=False)["model"])
    return model
