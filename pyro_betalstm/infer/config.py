"""How :func:`~pyro_betalstm.infer.fit` trains: :class:`TrainConfig`, checked where it is made,
the optimizer it names, the ELBO and the device."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import pyro
import pyro.optim
import torch
from pyro.infer import Trace_ELBO

from ..checks import is_integer, is_real_number
from ..nn.cuda_graphs import check_recurrence
from .elbo import GateMeanFieldELBO
from .lr_rules import check_lr_rule
from .predict import EVAL_BATCH_SIZE

#: The ELBOs ``TrainConfig.elbo`` names.
ELBOS = {"meanfield": GateMeanFieldELBO, "trace": Trace_ELBO}


@dataclass
class TrainConfig:
    """Settings of :func:`fit`. Defaults follow the paper's music protocol where it has one.

    ``num_epochs``: the most epochs to train (10; a resumed run counts the epochs already
    run). ``batch_size``: sequences per minibatch (32; per rank when data-parallel). ``lr``:
    the optimizer's learning rate (2e-3). ``weight_decay``: passed to the optimizer when
    non-zero (0). ``num_particles``: the ELBO's particles, draws of the latent variables
    averaged in each loss estimate (1). ``eval_batch_size``: sequences per minibatch of the
    default validation, which reads them shortest first (32). ``progress``: a line printed
    after each epoch and, where a terminal or notebook shows it, a progress bar per epoch
    (True; rank 0 only; see
    :mod:`~pyro_betalstm.progress`). These counts are integers >= 1 (``kl_anneal_epochs``,
    ``eval_samples`` and ``plateau_start_epoch``: >= 0). A setting out of range is refused
    when the config is made (a ValueError from :meth:`check`, which names it); one changed
    afterwards, when :func:`fit` starts.

    ``elbo``: ``"meanfield"`` (analytic KL where the prior is Gamma, Monte Carlo otherwise) or
    ``"trace"`` (Monte Carlo). ``optimizer``: a ``torch.optim`` class name (``"adam"``), a
    ``torch.optim.Optimizer`` subclass, or a :class:`pyro.optim.PyroOptim` such as
    ``pyro.optim.Adam({"lr": 1e-3})``: its constructor and its dict of arguments are used, so
    ``lr`` and ``weight_decay`` must stay at their defaults (set them in that dict), and
    per-parameter arguments (a callable), ``clip_args`` and learning-rate schedulers are refused
    (fit builds one optimizer over all the parameters; ``clip_norm`` and ``lr_rule`` clip and
    schedule). ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` with an existing index
    (checked when :func:`fit` starts). ``clip_norm``:
    gradient norm clipping, applied after ``backward`` to the gradient of the per-sequence loss
    (the negative ELBO divided by the number of training sequences; None: off). After each epoch
    the learning-rate rule ``lr_rule`` (see :mod:`~pyro_betalstm.infer.lr_rules`: ``"no_new_best"``,
    the authors' ``"authors"``, or ``"none"``) may divide the learning rate by ``lr_decay``; it
    never fires before epoch ``plateau_start_epoch``. ``target_metric``: stop after the first
    epoch whose monitored metric (validation, or the training loss per sequence without
    validation data) is at or below it (None: never; for time-to-quality runs).
    ``kl_anneal_epochs``: the KL weight rises linearly from 0 to the model's ``kl_weight`` over
    that many epochs. ``early_stopping_patience``: stop after that many epochs without
    improvement (None: never). ``time_limit_s``: stop after the first epoch that ends more than
    that many seconds after :func:`fit` was called (None: never; for fixed-budget protocols,
    the epochs run are in the history). ``bucket_by_length``: minibatches of similar lengths (less
    padding, faster). ``eval_samples``: posterior predictive draws for validation
    (0: mean gates only), from a random stream of their own seeded with ``seed``, the epoch and
    the rank, so that they do not change the training updates. ``divergence_threshold``: stop
    with :class:`DivergenceError` after an epoch whose monitored metric (validation, or the
    training loss per sequence without validation data) is above it (None: never; e.g. a few
    times the first epoch's value).
    ``seed``: seeds the generator of the minibatch order (always). ``seed_globals``: also seed
    torch's, numpy's and Python's global generators with ``seed`` when :func:`fit` starts, so
    that the gate draws and dropout masks of a run depend on ``seed`` alone (False: they
    continue from the caller's global state, which :func:`fit` leaves alone).
    ``distributed``: data-parallel training across the processes of a ``torchrun`` launch
    (None: when the environment names more than one; True: required; False: never), see
    :func:`fit`. ``distributed_timeout_s``: how long a collective waits for a silent rank
    before it fails. ``recurrence``: sets every layer's recurrence when :func:`fit` starts
    (``"eager"``, ``"auto"``: CUDA graphs on a GPU, ``"cuda_graph"``; see
    :mod:`~pyro_betalstm.nn.cuda_graphs`); None leaves the model's own setting.
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
    eval_batch_size: int = EVAL_BATCH_SIZE
    bucket_by_length: bool = True
    device: str = "cpu"
    seed: int = 0
    seed_globals: bool = False
    progress: bool = True
    divergence_threshold: float | None = None
    distributed: bool | None = None
    distributed_timeout_s: float = 600.0
    recurrence: str | None = None

    def __post_init__(self) -> None:
        self.check()  # refuse a bad setting where it is written, not when fit starts

    def to_dict(self) -> dict:
        """The settings as a plain dict (as stored in checkpoints and compared on resume); an
        optimizer that is not a name becomes a string (a PyroOptim its class and arguments)."""
        d = asdict(self)
        opt = self.optimizer
        if isinstance(opt, pyro.optim.PyroOptim):  # stable across runs (no object address)
            args = opt.pt_optim_args if isinstance(opt.pt_optim_args, dict) else "<callable>"
            d["optimizer"] = f"pyro.optim.{opt.pt_optim_constructor.__name__}({args!r})"
        elif not isinstance(opt, str):
            d["optimizer"] = repr(opt)
        return d

    def check(self) -> None:
        """Raise a ValueError naming the first setting outside its range. Making a config
        calls it, and so does :func:`fit` when it starts (a setting may have been changed)."""
        positive_ints = ("num_epochs", "batch_size", "num_particles", "eval_batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be positive (an integer >= 1), got {value!r}")
        for name in ("kl_anneal_epochs", "eval_samples", "plateau_start_epoch"):
            value = getattr(self, name)
            if not is_integer(value) or value < 0:
                raise ValueError(f"{name} must be non-negative (an integer >= 0), got {value!r}")
        if not (is_real_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (
            is_real_number(self.lr_decay) and math.isfinite(self.lr_decay) and self.lr_decay > 0
        ):
            raise ValueError(
                f"lr_decay must be a positive finite number (1: no decay), got {self.lr_decay!r}"
            )
        if self.lr_decay < 1:
            raise ValueError(
                f"lr_decay divides the learning rate when the rule fires, so it must be >= 1 "
                f"(1: no decay), got {self.lr_decay!r}"
            )
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.target_metric is not None and not (
            is_real_number(self.target_metric) and math.isfinite(self.target_metric)
        ):
            raise ValueError(
                f"target_metric must be a finite number or None, got {self.target_metric!r}"
            )
        if not isinstance(self.bucket_by_length, bool):
            raise ValueError(
                f"bucket_by_length must be True or False, got {self.bucket_by_length!r}"
            )
        if self.elbo not in ELBOS:
            raise ValueError(f"unknown elbo {self.elbo!r}; expected one of {sorted(ELBOS)}")
        check_lr_rule(self.lr_rule)
        if not (is_real_number(self.weight_decay) and 0 <= self.weight_decay < math.inf):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        if self.clip_norm is not None and not (
            is_real_number(self.clip_norm) and 0 < self.clip_norm < math.inf
        ):
            raise ValueError(
                f"clip_norm must be a positive finite number or None (None: no clipping), "
                f"got {self.clip_norm!r}"
            )
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {self.time_limit_s}")
        if self.distributed not in (None, True, False):
            raise ValueError(f"distributed must be None, True or False, got {self.distributed!r}")
        if not (is_real_number(self.distributed_timeout_s) and self.distributed_timeout_s > 0):
            raise ValueError(
                f"distributed_timeout_s must be a positive number, got {self.distributed_timeout_s!r}"
            )
        if self.recurrence is not None:
            check_recurrence(self.recurrence)
        # the optimizer too, so that fit refuses it before it prepares its folder
        _optimizer_and_args(self)
        threshold = self.divergence_threshold
        # -inf would stop every run after its first epoch; +inf is allowed (never, as None)
        if threshold is not None and not (is_real_number(threshold) and threshold > -math.inf):
            raise ValueError(
                "divergence_threshold must be a number (not NaN or -inf) or None, "
                f"got {threshold!r}"
            )
        patience = self.early_stopping_patience
        if patience is not None and (not is_integer(patience) or patience < 1):
            raise ValueError(
                "early_stopping_patience must be a positive integer or None, "
                f"got {self.early_stopping_patience!r}"
            )


def _optimizer_and_args(config: TrainConfig) -> tuple[type[torch.optim.Optimizer], dict]:
    """The optimizer class ``config.optimizer`` names and its keyword arguments; a ValueError
    for an optimizer :func:`fit` cannot build as given (rather than dropping what it cannot use)."""
    opt = config.optimizer
    if isinstance(opt, pyro.optim.PyroOptim):
        return _pyro_optimizer_and_args(opt, config)
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
    return opt, kwargs


def _pyro_optimizer_and_args(
    opt: pyro.optim.PyroOptim, config: TrainConfig
) -> tuple[type[torch.optim.Optimizer], dict]:
    """A PyroOptim's torch optimizer class and argument dict. fit builds one torch optimizer
    over all the parameters, so what a PyroOptim adds on top of that (per-parameter arguments,
    gradient clipping, a scheduler) and config values it would override are refused."""
    constructor = opt.pt_optim_constructor
    name = getattr(constructor, "__name__", repr(constructor))
    if isinstance(opt, pyro.optim.PyroLRScheduler):
        raise ValueError(
            f"optimizer: a pyro.optim learning-rate scheduler "
            f"({getattr(opt.pt_scheduler_constructor, '__name__', type(opt).__name__)}) is not "
            f"supported by fit, which would use only its optimizer ({name}); fit's own rule "
            "sets the learning rate: use TrainConfig.lr_rule and lr_decay with "
            f"pyro.optim.{name}({{...}}) or a torch.optim optimizer"
        )
    if not (isinstance(constructor, type) and issubclass(constructor, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer: the PyroOptim must wrap a torch.optim.Optimizer class, got {name}"
        )
    if not isinstance(opt.pt_optim_args, dict):
        raise ValueError(
            f"optimizer: pyro.optim.{name} was given its arguments as a callable (per-parameter "
            "arguments), which fit does not support: it builds one optimizer over all the "
            f"model's parameters. Pass a dict, e.g. pyro.optim.{name}({{'lr': 1e-3}}), or train "
            "with Pyro's SVI to keep per-parameter arguments"
        )
    if opt.pt_clip_args:
        raise ValueError(
            f"optimizer: pyro.optim.{name}'s clip_args {opt.pt_clip_args!r} are not supported "
            "by fit, which clips the gradient norm itself: use TrainConfig.clip_norm"
        )
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for key in ("lr", "weight_decay"):
        value = getattr(config, key)
        if value != defaults[key]:
            raise ValueError(
                f"{key}={value!r} was given with the optimizer pyro.optim.{name}"
                f"({opt.pt_optim_args!r}), whose own arguments govern (TrainConfig.{key} is not "
                f"used with a PyroOptim): set {key!r} in the PyroOptim's dict and leave "
                f"TrainConfig.{key} at its default ({defaults[key]!r})"
            )
    return constructor, dict(opt.pt_optim_args)


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """The torch optimizer ``config.optimizer`` names, over ``params``."""
    constructor, kwargs = _optimizer_and_args(config)
    return constructor(params, **kwargs)


def checked_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device this process can train on, or a ValueError naming it and what
    is expected: checked before training, as an index that does not exist (``"cpu:3"``) is
    accepted by torch until a checkpoint is loaded onto it at the end of the run. ``"cpu:0"``
    comes back as ``"cpu"``, the one CPU device, which torch.load can map onto."""
    expected = "expected 'cpu', 'cuda' or 'cuda:N' with N an existing GPU index"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must name a torch device ({expected}), got {name!r}") from err
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ValueError(f"device {name!r}: there is one CPU device, 'cpu'; {expected}")
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'cpu'")
        count = torch.cuda.device_count()
    else:  # another accelerator type: only the one this torch build runs on
        accelerator = torch.accelerator.current_accelerator()
        if accelerator is None or accelerator.type != device.type:
            raise ValueError(f"device {name!r}: no {device.type!r} device is available; {expected}")
        count = torch.accelerator.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device {name!r}: there are {count} {device.type} device(s), indices 0 to "
            f"{count - 1}; {expected}"
        )
    return device
