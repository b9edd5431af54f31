"""Resume points of :func:`~pyro_betalstm.infer.fit`: written safely, read safely.

``last.pt`` holds everything needed to resume. Before a new one replaces it, the current one is
kept as ``last.prev.pt`` (a hard link, or a copy where links are not supported), so a resume
point that turns out to be unreadable (a damaged disk, a file copied half-way) still leaves the
one before it. Both are read with ``weights_only=True``: the random states are stored as tensors
and plain numbers, and checkpoints of earlier versions (numpy's state as a numpy array) are read
with numpy arrays allowed as plain data only.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_torch_save, remove_temporaries, safe_torch_load

LAST, PREVIOUS = "last.pt", "last.prev.pt"
RESUME_KEYS = (
    "model",
    "optimizer",
    "epoch",
    "history",
    "best_epoch",
    "best_metric",
    "bad_epochs",
    "target_kl_weight",
    "rng",
)
# also written, and read when present: "world_size" (1 if absent), "rank_seeds" and, in a
# data-parallel run, "rng_per_rank" (every rank's random states, in rank order)

# TrainConfig keys that may change on resume: how long to train (num_epochs, time_limit_s,
# target_metric, early_stopping_patience), what is shown (progress), in what chunks evaluation
# runs (eval_batch_size: validation draws from a random stream of its own, see fit), and where
# and how the computation runs (device, recurrence, distributed...). The first three groups
# leave the updates already made and to come unchanged; another device or recurrence computes
# the same model with other rounding and, for graph replays, other random draws of the same law
RESUME_MAY_CHANGE = frozenset(
    {
        "num_epochs",
        "progress",
        "device",
        "time_limit_s",
        "target_metric",
        "early_stopping_patience",
        "eval_batch_size",
        "seed_globals",  # a resumed run restores every random state from the checkpoint
        # how the processes are joined; the world size itself is checked on its own
        "distributed",
        "distributed_timeout_s",
        "recurrence",  # how the same computation is launched (eager loop or CUDA graphs)
    }
)


def rng_state(generator: torch.Generator) -> dict:
    """Every random state of a run, as tensors and plain numbers (loadable with weights_only)."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
        "shuffle": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore :func:`rng_state` (also the format of earlier versions, numpy's legacy tuple)."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (
            numpy_state["bit_generator"],
            numpy_state["key"].cpu().numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["gauss"],
        )
    np.random.set_state(numpy_state)
    random.setstate(_as_tuples(state["python"]))
    generator.set_state(state["shuffle"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def save_resume_point(out: Path, state: dict) -> Path:
    """Write ``out/last.pt`` atomically, keeping the current one as ``out/last.prev.pt``."""
    last, previous = out / LAST, out / PREVIOUS
    if last.exists():
        tmp = out / f".{PREVIOUS}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(last, tmp)
        except OSError:  # no hard links on this file system: copy instead
            shutil.copyfile(last, tmp)
        os.replace(tmp, previous)
    return atomic_torch_save(state, last)


FIT_FILES = ("last.pt", "best.pt", "metrics.json", "metrics.csv")
#: the files whose presence means a folder holds a run (fit refuses to start over on them)
RUN_FILES = (LAST, PREVIOUS, "best.pt")
#: where an unreadable ``last.pt`` goes when a run resumes from ``last.prev.pt``
UNREADABLE = "last.unreadable.pt"


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporary files that a run killed while writing left in ``out`` (only the
    names of :func:`~pyro_betalstm.infer.fit`'s own files); returns what was deleted."""
    link = out / f".{PREVIOUS}.link"
    removed = [link] if link.is_file() else []
    link.unlink(missing_ok=True)
    return removed + remove_temporaries(out, FIT_FILES)


def set_aside_unreadable(out: Path) -> None:
    """Rename an unreadable ``out/last.pt`` to ``last.unreadable.pt`` (kept for inspection),
    so that the next :func:`save_resume_point` does not rotate it into ``last.prev.pt`` in
    place of the good resume point the run was resumed from."""
    if (out / LAST).exists():
        os.replace(out / LAST, out / UNREADABLE)


def has_resume_point(out: str | Path) -> bool:
    """Whether ``out`` holds ``last.pt`` or the ``last.prev.pt`` kept before it."""
    return (Path(out) / LAST).exists() or (Path(out) / PREVIOUS).exists()


def _check_resume_state(state, path: Path) -> dict:
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict resume point written by fit")
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: not a resume point of fit: missing keys {missing}")
    return state


def load_resume_point(out: Path, map_location=None) -> tuple[dict, Path]:
    """The newest readable resume point in ``out`` and its path.

    ``last.pt`` is tried first; when it is missing or unreadable, ``last.prev.pt`` (the one
    before it, at most one more epoch behind) is used with a :class:`RuntimeWarning` that says
    why. Raises :class:`FileNotFoundError` when neither exists and :class:`ValueError` naming
    both files when neither can be read.
    """
    candidates = [out / LAST, out / PREVIOUS]
    if not any(p.exists() for p in candidates):
        raise FileNotFoundError(f"cannot resume: no checkpoint {out / LAST} (nor {PREVIOUS})")
    errors = []
    for path in candidates:
        if not path.exists():
            errors.append(f"{path}: missing")
            continue
        try:
            state = _check_resume_state(safe_torch_load(path, map_location), path)
        except ValueError as err:
            errors.append(str(err))
            continue
        if errors:
            warnings.warn(
                f"resuming from the previous checkpoint {path} (epoch {state['epoch']}) because "
                f"the newest could not be used: {errors[0]}",
                RuntimeWarning,
                stacklevel=3,
            )
        return state, path
    raise ValueError("cannot resume: no readable checkpoint:\n  " + "\n  ".join(errors))


def check_resume_settings(
    saved: dict | None,
    requested: dict,
    path: Path,
    allow: bool | Iterable[str] = False,
    defaults: dict | None = None,
) -> list[str]:
    """Refuse a resume whose settings differ from the checkpoint's (except
    :data:`RESUME_MAY_CHANGE`), listing every differing key with both values.

    ``allow``: True accepts every difference; a collection of keys accepts those.
    ``defaults``: the value of a key the checkpoint lacks (a setting added since it was written).
    Returns the differences that ``allow`` accepted (``key: saved ..., requested ...``).
    """
    if saved is None:
        return []
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: its 'config' is a {type(saved).__name__}; expected a dict")
    if isinstance(allow, str):
        allow = [allow]
    accepted = set(requested) | set(saved) if allow is True else set(allow or ())
    defaults = defaults or {}
    diffs, overridden = [], []
    for key in sorted(set(saved) | set(requested)):
        if key in RESUME_MAY_CHANGE:
            continue
        old = saved.get(key, defaults.get(key, "<absent>"))
        new = requested.get(key, "<absent>")
        if key == "optimizer" and " at 0x" in str(old):
            continue  # earlier versions recorded a PyroOptim by its address: not comparable
        if old != new:
            line = f"{key}: saved {old!r}, requested {new!r}"
            (overridden if key in accepted else diffs).append(line)
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the settings differ from the checkpoint's:\n  "
            + "\n  ".join(diffs)
            + "\nuse the checkpoint's settings or another output folder (an example script: "
            "--out-dir), or, calling fit, pass resume_override=True (or the keys to accept) to "
            "continue anyway"
        )
    return overridden
