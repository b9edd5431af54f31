"""Safe file input and output: atomic writes, and loads that never run code from a file.

Writes: each writer fills a temporary file in the destination's folder, flushes and fsyncs it,
then renames it over the destination with :func:`os.replace` (atomic on POSIX and Windows). A
reader, or a run killed mid-write, never sees half a file; the previous version of the file
stays intact until the new one is complete (also when the write fails, e.g. on a full disk).

Reads: :func:`safe_torch_load` is ``torch.load(..., weights_only=True)``: tensors, numbers,
strings and builtin containers only, never arbitrary objects. Every read error names the file
and says what was expected.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_path",
    "atomic_write_text",
    "read_json",
    "remove_temporaries",
    "safe_torch_load",
]


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable across a power loss; not possible on every platform
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The permissions the file would get from a plain ``open``: the old file's, else by umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


#: Numbers the temporary files of this process (their names hold the pid too).
_TEMP_NUMBERS = itertools.count()


def _temp_name(path: Path) -> str:
    """``.<name>.<pid>-<n>.tmp`` beside ``path``: a name known before the file exists, so that
    an interruption (Ctrl-C) at any point of the write can remove it; mkstemp's name came back
    only after the file was made."""
    return str(path.parent / f".{path.name}.{os.getpid()}-{next(_TEMP_NUMBERS)}.tmp")


def _open_temp(tmp: str, path: Path) -> int:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:  # the permissions a plain write would give
        os.chmod(tmp, _file_mode(path))
    except OSError:
        pass
    return fd


def _os_error_in(err: BaseException) -> OSError | None:
    # torch.save reports a failed write (full disk, file-size limit) as a RuntimeError
    # ("unexpected pos ...") raised while handling the OSError
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _write_failed(path: Path, err: BaseException) -> OSError:
    os_err = _os_error_in(err)
    reason = os_err.strerror or str(os_err) if os_err is not None else str(err)
    kept = "the previous version is kept" if path.exists() else "nothing was written there"
    return OSError(
        getattr(os_err, "errno", None),
        f"could not write {path} ({reason}); {kept}",
        str(path),
    )


def _write_via_temp(path: Path, fill: Callable[[int, str], None]) -> Path:
    """Make the temporary file, ``fill(fd, tmp)`` it, rename it to ``path``; on any error or
    interruption (``BaseException``: Ctrl-C too) the temporary file is removed."""
    tmp = _temp_name(path)
    try:
        while True:
            try:
                fd = _open_temp(tmp, path)
                break
            except FileExistsError:  # left by a killed process that had this pid: not ours
                tmp = _temp_name(path)
        fill(fd, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, Exception) and _os_error_in(err) is not None:
            raise _write_failed(path, err) from err
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a binary file handle, then put the result at ``path`` atomically.

    A write that fails for lack of space or any other OS error raises an :class:`OSError`
    naming ``path``; the file at ``path`` is then untouched.
    """

    def fill(fd: int, tmp: str) -> None:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())

    return _write_via_temp(Path(path), fill)


def atomic_write_path(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Atomic write for writers that need a file name, not a handle (netCDF, figures).

    ``write(tmp)`` writes a temporary file in the same folder, ``.<name>.<pid>-<n>.tmp``, which
    is fsynced and renamed to ``path``. The temporary name ends in ``.tmp``, not in the
    target's suffix, so that a file left by a killed write is never taken for a real one (a
    ``*.csv`` glob would match it) and :func:`remove_temporaries` finds it: a writer that picks
    its format from the suffix must be told the format (``savefig(..., format="png")``).
    """

    def fill(fd: int, tmp: str) -> None:
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())

    return _write_via_temp(Path(path), fill)


def remove_temporaries(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files (``.<name>.<pid>-<n>.tmp``) that writes of ``names`` in
    ``folder`` killed half-way left behind (``None``: of any name, for a folder that holds
    one writer's files only); returns what was deleted."""
    folder = Path(folder)
    patterns = ["*"] if names is None else [glob.escape(name) for name in names]
    stale = [p for pattern in patterns for p in folder.glob(f".{pattern}.*.tmp")]
    removed = [p for p in stale if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)``, atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """``json.loads`` of a file; a missing, truncated or corrupt file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: not a readable {what} ({err}); expected complete UTF-8 JSON, "
            "the file may be truncated or corrupt"
        ) from err


def _legacy_numpy_globals() -> list:
    """The numpy types of ``np.random.get_state()`` as older checkpoints pickled it.

    Only array and scalar reconstruction (plain data) is allowed, under both the numpy 1 and
    numpy 2 module names; found through ``__reduce__`` so no private numpy module is imported.
    """
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    return [
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
    ]


def _unpickling_detail(err: Exception) -> str:
    # torch's message is long; keep the line that names what was refused
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported" in line or "unsupported" in line]
    return (named or lines or [type(err).__name__])[0][:300]


def safe_torch_load(path: str | Path, map_location=None, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs anything else is refused.

    Numpy arrays and scalars (how checkpoints before this version stored numpy's random state)
    are allowed as plain data. A missing file raises :class:`FileNotFoundError`; a truncated,
    corrupt or unsafe one a :class:`ValueError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: refused to load this {what}: it is corrupt or holds objects other than "
            "tensors, numbers, strings and containers (loading it could run code). Only "
            "files written by pyro_betalstm are read; if you trust the file, convert it with "
            f"your own torch.load(weights_only=False). Detail: {_unpickling_detail(err)}"
        ) from err
    # a damaged file fails in many ways (zip, pickle, storage sizes, memory); all mean the same
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path}: not a readable {what} ({type(err).__name__}: {err}); expected a file "
            "written by torch.save; it may be truncated or corrupt"
        ) from err
