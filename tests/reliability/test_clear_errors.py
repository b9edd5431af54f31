"""Every error names the file or argument and says what was expected: damaged files (fixed
cases, then ``hypothesis`` fuzzing with random bytes and truncations) and bad arguments."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import savemat

from pyro_betalstm.data.music import load_piano_rolls
from pyro_betalstm.diagnostics.draws import load_history
from pyro_betalstm.infer import fit, load_best
from pyro_betalstm.infer.checkpoint import load_resume_point
from pyro_betalstm.io import atomic_torch_save, atomic_write_json
from pyro_betalstm.models import NextStepBernoulli
from pyro_betalstm.nn import StochasticLSTM
from pyro_betalstm.results import COMMON_KEYS, KIND_KEYS, load_results

from ._tiny import make_config, make_data, make_model

SEQS = [[[60, 64], [62]], [[65], [], [67, 71]]]


def _roll(seq) -> np.ndarray:
    roll = np.zeros((len(seq), 88), dtype=np.uint8)
    for t, frame in enumerate(seq):
        roll[t, [p - 21 for p in frame]] = 1
    return roll


def _cells(seqs) -> np.ndarray:
    out = np.empty((1, len(seqs)), dtype=object)
    for i, s in enumerate(seqs):
        out[0, i] = _roll(s)
    return out


def _music_model() -> NextStepBernoulli:
    """A music model with the settings of the results record below."""
    torch.manual_seed(0)
    return NextStepBernoulli(StochasticLSTM(88, 4, 1, gate="bivariate", batch_first=True), 88)


def good_files(folder) -> dict[str, bytes]:
    """Valid examples of every file the library reads, as bytes."""
    savemat(folder / "g.mat", {k: _cells(SEQS) for k in ("traindata", "validdata", "testdata")})
    savemat(
        folder / "gz.mat",
        {k: _cells(SEQS) for k in ("traindata", "validdata", "testdata")},
        do_compression=True,
    )
    (folder / "g.pickle").write_bytes(pickle.dumps({"train": SEQS, "valid": SEQS, "test": SEQS}))
    atomic_torch_save({"model": _music_model().state_dict(), "epoch": 1}, folder / "best.pt")
    atomic_write_json(folder / "metrics.json", [{"epoch": 1, "train_loss": 1.0}])
    settings_ = dict(
        hidden=4, layers=1, gate="bivariate", dropout=0.0, prior="gamma", kl_weight=1.0
    )
    record = {key: None for key in (*COMMON_KEYS, *KIND_KEYS["music"])}
    atomic_write_json(folder / "results.json", {**record, "settings": settings_})
    names = ["g.mat", "gz.mat", "g.pickle", "best.pt", "metrics.json", "results.json"]
    return {n: (folder / n).read_bytes() for n in names}


def _load(name: str, folder):
    """Read ``folder/name`` with the library's loader for that kind of file."""
    if name.endswith((".mat", ".pickle")):
        return load_piano_rolls(folder / name)
    if name == "best.pt":
        return load_best(_music_model(), folder)
    if name == "metrics.json":
        return load_history(folder / name)
    return load_results(folder)  # results.json, checked against the schema


_ORIGINALS: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    # kept at module level so that hypothesis does not print it with a failing example
    if not _ORIGINALS:
        _ORIGINALS.update(good_files(tmp_path_factory.mktemp("good")))
    return _ORIGINALS


NAMES = ["g.mat", "gz.mat", "g.pickle", "best.pt", "metrics.json", "results.json"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cut", [0, 0.5, 0.9])
def test_truncated_file_gives_an_error_naming_it(tmp_path, originals, name, cut):
    for other, data in originals.items():
        (tmp_path / other).write_bytes(data)
    _load(name, tmp_path)  # control: the complete file loads
    data = originals[name]
    (tmp_path / name).write_bytes(data[: int(cut * len(data))])
    with pytest.raises(ValueError) as info:
        _load(name, tmp_path)
    assert str(tmp_path / name) in str(info.value)


def _fuzz_case(folder, originals, name: str, data: bytes) -> None:
    """Loading ``data`` as ``name`` either works or raises a ValueError naming the file."""
    for other, content in originals.items():
        (folder / other).write_bytes(content)
    (folder / name).write_bytes(data)
    try:
        _load(name, folder)
    except ValueError as err:
        assert str(folder / name) in str(err), (name, err)


@settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=512))
def test_fuzz_random_bytes(tmp_path_factory, originals, name, data):
    """60 examples (derandomized, so the same every run): random bytes as every file kind."""
    _fuzz_case(tmp_path_factory.mktemp("fuzz"), _ORIGINALS, name, data)


@settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(NAMES),
    cut=st.floats(0, 1),
    flips=st.lists(st.integers(0, 10**6), max_size=4),
)
def test_fuzz_truncated_and_flipped(tmp_path_factory, originals, name, cut, flips):
    """60 examples (derandomized): valid files cut at a random point, with up to 4 bytes
    flipped; each loads (a flip may hit unused bytes) or fails with an error naming it."""
    data = bytearray(originals[name][: int(cut * len(originals[name]))])
    for i in flips:
        if data:
            data[i % len(data)] ^= 0xFF
    _fuzz_case(tmp_path_factory.mktemp("fuzz"), _ORIGINALS, name, bytes(data))


def test_corrupt_resume_point_names_the_file(tmp_path):
    fit(make_model(), make_data(), None, make_config(num_epochs=1), out_dir=tmp_path)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot resume") as info:
        load_resume_point(tmp_path)
    assert str(tmp_path / "last.pt") in str(info.value)


def test_bad_arguments_are_named():
    lstm = StochasticLSTM(3, 4, 2, batch_first=True)
    x = torch.randn(2, 5, 3)
    with pytest.raises(
        ValueError,
        match="input has dtype torch.float64; the network's parameters are torch.float32",
    ):
        lstm(x.double())
    with pytest.raises(
        ValueError,
        match=r"hx: h_0 must have shape \(num_layers, batch, hidden_size\) = \(2, 2, 4\), got \(1, 2, 4\)",
    ):
        lstm(x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="hx must be a pair"):
        lstm(x, torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="unknown gate_mode 'bogus'; expected one of"):
        lstm(x, gate_mode="bogus")
    with pytest.raises(TypeError, match="hidden_size must be an integer, got 4.5"):
        StochasticLSTM(3, 4.5)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        fit(make_model(), make_data(), None, make_config(batch_size=0))
    with pytest.raises(ValueError, match="input has dtype torch.float64"):
        model = make_model()
        batch = make_data().batch(range(2))
        model.model(
            type(batch)(batch.inputs.double(), batch.targets, batch.lengths, batch.dataset_size)
        )
