"""Piano rolls: the .mat and .pickle loaders, next-frame data and its chunking, the frequency
baseline, the music21 JSB rebuild and the four benchmark files."""

from __future__ import annotations

import importlib.util
import math
import pickle
import sys
import time

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from scipy.io import loadmat, savemat

from pyro_betalstm.data import MissingDependency, music
from pyro_betalstm.data.music import (
    BENCHMARK_FILES,
    LOWEST_MIDI,
    NUM_KEYS,
    PianoRolls,
    build_jsb_music21,
    frequency_baseline_nll,
    load_benchmark,
    load_piano_rolls,
)

MUSIC_DIR = SHARED_DATA / "music"
HAS_MUSIC21 = importlib.util.find_spec("music21") is not None
needs_music21 = pytest.mark.skipif(
    not HAS_MUSIC21, reason="music21 is not installed (pip install music21); the rebuild needs it"
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The machine is shared with long training jobs; these tensors are tiny anyway.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----- helpers: small files written the way the real ones are -----------------------------------
def cell(rolls: list[np.ndarray]) -> np.ndarray:
    """A (1, N) object array of rolls: how the benchmark .mat files store a split (a cell array).

    ``np.array(rolls)`` would not do: equal-length rolls would become one 3-D numeric array."""
    out = np.empty((1, len(rolls)), dtype=object)
    for i, roll in enumerate(rolls):
        out[0, i] = roll
    return out


def roll_from_pitches(frames: list[list[int]]) -> np.ndarray:
    """A uint8 (T, 88) roll with key ``pitch - 21`` on, written independently of the loader."""
    roll = np.zeros((len(frames), 88), dtype=np.uint8)
    for t, pitches in enumerate(frames):
        for p in pitches:
            roll[t, p - 21] = 1
    return roll


# Hand-made splits as lists of frames of MIDI pitches (21 = A0 = key 0, 108 = C8 = key 87).
TRAIN = [[[21, 60], [60], [], [108, 64, 67]], [[60, 64]]]
VALID = [[[72], [74], [76]]]
TEST = [[[21], [108]], [[48, 55, 60]]]


def write_mat(path, train=TRAIN, valid=VALID, test=TEST, **replace) -> None:
    content = {
        "traindata": cell([roll_from_pitches(s) for s in train]),
        "validdata": cell([roll_from_pitches(s) for s in valid]),
        "testdata": cell([roll_from_pitches(s) for s in test]),
    }
    content.update(replace)
    savemat(path, content)


def write_pickle(path, train=TRAIN, valid=VALID, test=TEST, **replace) -> None:
    content = {"train": train, "valid": valid, "test": test}
    content.update(replace)
    with open(path, "wb") as fh:
        pickle.dump(content, fh)


def rolls_of(*lengths: int, name: str = "toy") -> PianoRolls:
    """Train rolls in which every frame has one key on, a different key for every frame of every
    sequence (sequence after sequence, in order), so that a frame says where it came from."""
    assert sum(lengths) <= NUM_KEYS
    seqs, offset = [], 0
    for length in lengths:
        roll = torch.zeros(length, NUM_KEYS)
        roll[torch.arange(length), offset + torch.arange(length)] = 1.0
        seqs.append(roll)
        offset += length
    return PianoRolls(name, seqs, [], [])


def frame_ids(roll: torch.Tensor) -> list[int]:
    return roll.argmax(1).tolist()


# ----- the mirror of the real layout ---------------------------------------------------------------
def test_fixture_mirrors_the_real_mat_layout(tmp_path):
    """The hand-made .mat reads back like the benchmark files: (1, N) object arrays of uint8."""
    write_mat(tmp_path / "toy.mat")
    content = loadmat(tmp_path / "toy.mat")
    assert content["traindata"].shape == (1, 2) and content["traindata"].dtype == object
    assert content["traindata"][0, 0].shape == (4, 88)
    assert content["traindata"][0, 0].dtype == np.uint8
    if (MUSIC_DIR / "JSB_Chorales.mat").exists():
        real = loadmat(MUSIC_DIR / "JSB_Chorales.mat")
        assert real["traindata"].ndim == 2 and real["traindata"].shape[0] == 1
        assert real["traindata"].dtype == object
        assert real["traindata"][0, 0].dtype == np.uint8 and real["traindata"][0, 0].shape[1] == 88


# ----- load_piano_rolls: known answers ------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mat", ".pickle", ".pkl"])
def test_load_known_answers(tmp_path, suffix):
    path = tmp_path / f"Toy{suffix}"
    (write_mat if suffix == ".mat" else write_pickle)(path)
    rolls = load_piano_rolls(path)
    assert rolls.name == "Toy" and rolls.source == str(path)
    assert [len(rolls.train), len(rolls.valid), len(rolls.test)] == [2, 1, 2]
    assert [r.shape[0] for r in rolls.train] == [4, 1]
    assert [r.shape[0] for r in rolls.test] == [2, 1]
    for split in ("train", "valid", "test"):
        for roll in rolls.split(split):
            assert roll.dtype == torch.float32 and roll.shape[1] == 88
            assert set(roll.unique().tolist()) <= {0.0, 1.0}
    first = rolls.train[0]
    # Pitch p is key p - 21: A0 (21) is the first key, C8 (108) the last, middle C (60) key 39.
    assert first[0].nonzero().ravel().tolist() == [0, 39]
    assert first[1].nonzero().ravel().tolist() == [39]
    assert first[2].sum() == 0
    assert first[3].nonzero().ravel().tolist() == [43, 46, 87]
    assert rolls.test[0][1].nonzero().ravel().tolist() == [87]
    assert rolls.valid[0].sum(1).tolist() == [1.0, 1.0, 1.0]


def test_mat_and_pickle_agree(tmp_path):
    write_mat(tmp_path / "a.mat")
    write_pickle(tmp_path / "a.pickle")
    mat, pkl = load_piano_rolls(tmp_path / "a.mat"), load_piano_rolls(tmp_path / "a.pickle")
    for split in ("train", "valid", "test"):
        for x, y in zip(mat.split(split), pkl.split(split), strict=True):
            assert torch.equal(x, y)


def test_pickle_repeated_pitch_stays_binary(tmp_path):
    write_pickle(tmp_path / "r.pickle", train=[[[60, 60, 61], [61]]])
    roll = load_piano_rolls(tmp_path / "r.pickle").train[0]
    assert roll.max() == 1.0 and roll.sum().item() == 3.0


def test_mat_accepts_float_zero_one(tmp_path):
    roll = roll_from_pitches([[60], [62]]).astype(np.float64)
    write_mat(tmp_path / "f.mat", traindata=cell([roll]))
    assert torch.equal(
        load_piano_rolls(tmp_path / "f.mat").train[0], torch.from_numpy(roll).float()
    )


def test_name_override(tmp_path):
    write_mat(tmp_path / "x.mat")
    assert load_piano_rolls(tmp_path / "x.mat", name="mine").name == "mine"


def test_summary_counts(tmp_path):
    write_pickle(tmp_path / "s.pickle")
    assert load_piano_rolls(tmp_path / "s.pickle").summary() == {
        "train": {"sequences": 2, "frames": 5},
        "valid": {"sequences": 1, "frames": 3},
        "test": {"sequences": 2, "frames": 3},
    }


# ----- load_piano_rolls: errors -------------------------------------------------------------------
def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "JSB_Chorales.mat"
    with pytest.raises(FileNotFoundError, match="piano-roll file") as err:
        load_piano_rolls(path)
    assert str(path) in str(err.value)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "rolls.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"unsupported format '\.npz'.*\.mat or \.pickle"):
        load_piano_rolls(path)


def test_mat_wrong_keys(tmp_path):
    path = tmp_path / "k.mat"
    roll = cell([roll_from_pitches([[60], [62]])])
    savemat(path, {"train": roll, "validdata": roll, "testdata": roll})
    with pytest.raises(ValueError, match=r"missing keys \['traindata'\].*traindata/validdata"):
        load_piano_rolls(path)


def test_pickle_wrong_keys(tmp_path):
    path = tmp_path / "k.pickle"
    with open(path, "wb") as fh:
        pickle.dump({"training": TRAIN, "valid": VALID, "testing": TEST}, fh)
    with pytest.raises(ValueError, match=r"missing keys \['train', 'test'\].*train/valid/test"):
        load_piano_rolls(path)


@pytest.mark.parametrize("shape", [(3, 87), (3, 89), (88, 3)])
def test_mat_wrong_width(tmp_path, shape):
    path = tmp_path / "w.mat"
    write_mat(path, validdata=cell([np.zeros(shape, dtype=np.uint8)]))
    with pytest.raises(ValueError, match=rf"validdata\[0\].*\(time, 88\).*{shape[0]}, {shape[1]}"):
        load_piano_rolls(path)


def test_mat_numeric_array_instead_of_cells(tmp_path):
    """A split saved as one numeric (N, T, 88) array, not a cell array of rolls, is refused."""
    path = tmp_path / "n.mat"
    write_mat(path, testdata=np.zeros((2, 3, 88), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"testdata\[0\].*\(time, 88\)"):
        load_piano_rolls(path)


@pytest.mark.parametrize("bad", [2, 0.5, -1, np.nan])
def test_mat_non_binary(tmp_path, bad):
    roll = np.zeros((3, 88))
    roll[1, 40] = bad
    path = tmp_path / "b.mat"
    write_mat(path, traindata=cell([roll_from_pitches([[60]]), roll]))
    with pytest.raises(ValueError, match=r"traindata\[1\].*must be 0 or 1"):
        load_piano_rolls(path)


@pytest.mark.parametrize("pitch", [20, 109, -1])
def test_pickle_pitch_out_of_range(tmp_path, pitch):
    path = tmp_path / "p.pickle"
    write_pickle(path, test=[[[60]], [[60], [pitch]]])
    with pytest.raises(ValueError, match=rf"test\[1\].*MIDI pitch {pitch} outside.*21\.\.108"):
        load_piano_rolls(path)


@pytest.mark.parametrize("pitch", [math.inf, -math.inf, math.nan, 60.5, "60"])
def test_pickle_non_integer_pitch_names_the_file(tmp_path, pitch):
    """inf and NaN gave a bare OverflowError/ValueError from int(), naming no file."""
    path = tmp_path / "p.pickle"
    write_pickle(path, valid=[[[60]], [[60], [62, pitch]]])
    message = rf"p\.pickle:valid\[1\]: frame 1: MIDI pitch {pitch!r} is not an integer"
    with pytest.raises(ValueError, match=message):
        load_piano_rolls(path)


@pytest.mark.parametrize("fmt", ["mat", "pickle"])
def test_empty_split_is_refused_at_load(tmp_path, fmt):
    path = tmp_path / f"e.{fmt}"
    (write_mat if fmt == "mat" else write_pickle)(path, valid=[])
    with pytest.raises(ValueError, match="valid"):
        load_piano_rolls(path)


# ----- load_benchmark ----------------------------------------------------------------------------
def test_load_benchmark_finds_each_file_by_name(tmp_path):
    for stem in BENCHMARK_FILES.values():
        write_mat(tmp_path / f"{stem}.mat")
    for name, stem in BENCHMARK_FILES.items():
        rolls = load_benchmark(name, tmp_path)
        assert rolls.name == name and rolls.source == str(tmp_path / f"{stem}.mat")


@pytest.mark.parametrize("suffix", [".pickle", ".pkl"])
def test_load_benchmark_reads_the_pickle(tmp_path, suffix):
    write_pickle(tmp_path / f"Nottingham{suffix}")
    rolls = load_benchmark("nottingham", tmp_path)
    assert rolls.name == "nottingham" and rolls.source.endswith(suffix)
    assert rolls.train[0][0].nonzero().ravel().tolist() == [0, 39]


def test_load_benchmark_prefers_mat_over_pickle(tmp_path):
    write_mat(tmp_path / "MuseData.mat")
    write_pickle(tmp_path / "MuseData.pickle", train=[[[60], [61]]])
    assert load_benchmark("musedata", tmp_path).source.endswith(".mat")


def test_load_benchmark_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_benchmark("piano", tmp_path)
    message = str(err.value)
    assert "Piano_midi.mat" in message and "Piano_midi.pickle" in message
    assert str(tmp_path) in message and "download" in message and "jsb-music21" in message
    # where to download them, and the names the download has
    assert "http://www-etud.iro.umontreal.ca/~boulanni/icml2012" in message
    assert "Piano-midi.de.mat" in message and "Piano-midi.de.pickle" in message
    assert "\n" not in message


def test_load_benchmark_missing_folder_says_so(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"JSB Chorales\.pickle at .*nowhere \(no such folder\)"
    ):
        load_benchmark("jsb", tmp_path / "nowhere")


#: the files as downloaded from the benchmark's page (a space, and dots in the name)
DOWNLOAD_NAMES = {
    "jsb": "JSB Chorales",
    "nottingham": "Nottingham",
    "musedata": "MuseData",
    "piano": "Piano-midi.de",
}


@pytest.mark.parametrize("suffix", [".pickle", ".mat"])
@pytest.mark.parametrize("name", sorted(DOWNLOAD_NAMES))
def test_load_benchmark_reads_the_files_under_their_download_names(tmp_path, name, suffix):
    path = tmp_path / f"{DOWNLOAD_NAMES[name]}{suffix}"
    (write_pickle if suffix == ".pickle" else write_mat)(path)
    rolls = load_benchmark(name, tmp_path)
    assert rolls.name == name and rolls.source == str(path)
    assert rolls.train[0][0].nonzero().ravel().tolist() == [0, 39]


def test_load_benchmark_prefers_its_own_names_over_the_download_names(tmp_path):
    write_mat(tmp_path / "JSB Chorales.mat")
    write_pickle(tmp_path / "JSB_Chorales.pickle")
    assert load_benchmark("jsb", tmp_path).source == str(tmp_path / "JSB_Chorales.pickle")
    assert music.benchmark_file_names("piano") == [
        *(f"Piano_midi{suffix}" for suffix in (".mat", ".pickle", ".pkl")),
        *(f"Piano-midi.de{suffix}" for suffix in (".mat", ".pickle", ".pkl")),
    ]


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_a_download_name_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "JSB Chorales.pickle", "wb") as fh:
        pickle.dump({"train": _RunsCode(), "valid": [], "test": []}, fh)
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        load_benchmark("jsb", tmp_path)
    assert "ran code" not in capsys.readouterr().out


@pytest.mark.parametrize("stem", ["JSB_Chorales", "JSB Chorales"])
def test_load_benchmark_accepts_the_benchmark_file_itself(tmp_path, stem):
    write_mat(tmp_path / f"{stem}.mat")
    rolls = load_benchmark("jsb", tmp_path / f"{stem}.mat")
    assert rolls.name == "jsb" and rolls.source == str(tmp_path / f"{stem}.mat")


def test_load_benchmark_refuses_another_file_as_the_folder(tmp_path):
    # --data-dir .../Nottingham.mat --dataset jsb said "no JSB_Chorales.mat ... in .../Nottingham.mat"
    write_mat(tmp_path / "Nottingham.mat")
    with pytest.raises(ValueError) as err:
        load_benchmark("jsb", tmp_path / "Nottingham.mat")
    message = str(err.value)
    assert f"data_dir {tmp_path / 'Nottingham.mat'} is a file, not a folder" in message
    assert "JSB_Chorales.mat" in message and f"(such as {tmp_path})" in message


@pytest.mark.parametrize("name", ["JSB", "jsb-music21", "bach", ""])
def test_load_benchmark_unknown_name(tmp_path, name):
    with pytest.raises(ValueError, match=r"unknown benchmark.*'jsb', 'musedata', 'nottingham'"):
        load_benchmark(name, tmp_path)


# ----- PianoRolls.split / next_step --------------------------------------------------------------
@pytest.mark.parametrize("split", ["training", "dev", "TEST", ""])
def test_unknown_split(split):
    rolls = rolls_of(3)
    with pytest.raises(ValueError, match=r"unknown split.*\('train', 'valid', 'test'\)"):
        rolls.split(split)
    with pytest.raises(ValueError, match="unknown split"):
        rolls.next_step(split)


def test_next_step_shifts_by_one_and_drops_short_sequences():
    rolls = rolls_of(1, 4, 2, 1, 3)
    data = rolls.next_step("train")
    assert data.name == "toy/train" and data.input_size == 88
    kept = [1, 2, 4]  # sequences of one frame have no transition
    first_frame = [0, 1, 5, 7, 8]  # global frame id of each sequence's first frame
    assert len(data) == 3
    for x, y, s in zip(data.inputs, data.targets, kept, strict=True):
        seq, start = rolls.train[s], first_frame[s]
        assert torch.equal(x, seq[:-1]) and torch.equal(y, seq[1:])
        assert frame_ids(x) == list(range(start, start + seq.shape[0] - 1))
        assert frame_ids(y) == list(range(start + 1, start + seq.shape[0]))


def test_next_step_without_usable_sequence():
    with pytest.raises(ValueError, match=r"toy/train: no sequence has two or more frames"):
        rolls_of(1, 1).next_step("train")
    with pytest.raises(ValueError, match=r"toy/valid: no sequence"):
        rolls_of(3).next_step("valid")  # an empty split


def test_chunks_known_windows():
    """Length 8, chunk 3: windows of frames 0-3, 3-6 and 6-7, overlapping by one frame."""
    data = rolls_of(8).next_step("train", chunk_length=3)
    assert [frame_ids(x) for x in data.inputs] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [frame_ids(y) for y in data.targets] == [[1, 2, 3], [4, 5, 6], [7]]


def test_chunks_predict_every_transition_exactly_once():
    lengths = (1, 2, 3, 5, 7, 8, 13, 30)
    rolls = rolls_of(*lengths)
    whole = rolls.next_step("train")

    def transitions(data):  # (frame id, next frame id) for every predicted frame
        pairs = []
        for x, y in zip(data.inputs, data.targets, strict=True):
            pairs += list(zip(frame_ids(x), frame_ids(y), strict=True))
        return pairs

    expected = sorted(transitions(whole))
    assert all(b == a + 1 for a, b in expected)  # the toy ids number frames consecutively
    total = sum(len(y) for y in whole.targets)
    assert total == sum(n - 1 for n in lengths)
    for chunk in (1, 2, 3, 4, 6, 29, 100):
        data = rolls.next_step("train", chunk_length=chunk)
        assert all(1 <= len(x) <= chunk for x in data.inputs)
        assert sum(len(y) for y in data.targets) == total
        assert sorted(transitions(data)) == expected
        for x, y in zip(data.inputs, data.targets, strict=True):
            assert torch.equal(x[1:], y[:-1])  # each window is consecutive frames
    # a chunk at least as long as every sequence changes nothing
    long = rolls.next_step("train", chunk_length=29)
    assert len(long) == len(whole)
    assert all(torch.equal(a, b) for a, b in zip(long.inputs, whole.inputs, strict=True))


@pytest.mark.parametrize("chunk", [0, -1, -5])
def test_chunk_length_must_be_positive(chunk):
    with pytest.raises(ValueError, match=rf"chunk_length must be positive, got {chunk}"):
        rolls_of(5).next_step("train", chunk_length=chunk)


# ----- key_frequencies / frequency_baseline_nll ---------------------------------------------------
def baseline_set() -> PianoRolls:
    """Train: 5 frames (one sequence of 4, one of 1). Key 0 on in 2 of them, key 1 in all 5,
    key 2 in 1, key 3 in 1. Test: a 3-frame sequence (frames 1 and 2 are scored) and a 1-frame one
    (nothing to predict)."""
    a = torch.zeros(4, 88)
    a[0:2, 0] = 1
    a[:, 1] = 1
    a[0, 2] = 1
    b = torch.zeros(1, 88)
    b[0, [1, 3]] = 1
    x = torch.zeros(3, 88)
    x[0, 50] = 1  # frame 0 is never scored: nothing predicts it
    x[1, [0, 1]] = 1
    x[2, [2, 5]] = 1  # key 1 (frequency 1) off, key 5 (frequency 0) on
    lone = torch.ones(1, 88)  # a one-frame sequence: never scored either
    return PianoRolls("hand", [a, b], [], [x, lone])


def test_key_frequencies_known_answer():
    freq = baseline_set().key_frequencies()
    assert freq.shape == (88,)
    expected = torch.zeros(88)
    expected[:4] = torch.tensor([2 / 5, 1.0, 1 / 5, 1 / 5])
    assert torch.allclose(freq, expected)


def test_frequency_baseline_nll_known_answer():
    eps = 1e-6  # p is clamped to [eps, 1 - eps] so that log(0) never happens
    log = math.log
    # frame 1: keys 0 and 1 on. key 0 p=.4 on; key 1 p=1-eps on; keys 2, 3 p=.2 off;
    # the other 84 keys p=eps off.
    frame1 = -(log(0.4) + log(1 - eps) + 2 * log(0.8) + 84 * log(1 - eps))
    # frame 2: keys 2 and 5 on. key 0 p=.4 off; key 1 p=1-eps off; key 2 p=.2 on; key 3 p=.2 off;
    # key 5 p=eps on; the other 83 keys p=eps off.
    frame2 = -(log(0.6) + log(eps) + log(0.2) + log(0.8) + log(eps) + 83 * log(1 - eps))
    expected = (frame1 + frame2) / 2
    assert frequency_baseline_nll(baseline_set(), "test") == pytest.approx(expected, rel=1e-6)
    # (1.36 + 29.97) / 2: the two -log(eps) = 13.8 terms of frame 2 dominate
    assert expected == pytest.approx(15.67, abs=0.01)


def test_frequency_baseline_nll_default_split_is_test():
    rolls = baseline_set()
    assert frequency_baseline_nll(rolls) == frequency_baseline_nll(rolls, "test")


def test_frequency_baseline_nll_is_zero_up_to_the_clamp_on_constant_frames():
    """Scored on (frames 1.. of) training data whose every frame is identical, the baseline is
    exact up to the clamp."""
    seq = torch.zeros(6, 88)
    seq[:, [10, 20]] = 1
    rolls = PianoRolls("same", [seq], [], [seq])
    assert frequency_baseline_nll(rolls, "train") == pytest.approx(-88 * math.log(1 - 1e-6))


def test_frequency_baseline_nll_unknown_split():
    with pytest.raises(ValueError, match="unknown split"):
        frequency_baseline_nll(baseline_set(), "dev")


def test_frequency_baseline_nll_without_scored_frames():
    rolls = baseline_set()
    rolls.valid = [torch.zeros(1, 88)]
    with pytest.raises(ValueError, match="valid"):
        frequency_baseline_nll(rolls, "valid")


def test_key_frequencies_empty_train():
    with pytest.raises(ValueError, match="train"):
        PianoRolls("empty", [], [torch.zeros(2, 88)], []).key_frequencies()


# ----- build_jsb_music21: split and cache, without music21 ---------------------------------------
def test_rebuild_without_music21_is_a_missing_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)  # `import music21` fails as if absent
    with pytest.raises(MissingDependency, match=r"needs music21.*\[music\] extra.*pip install"):
        build_jsb_music21(tmp_path, progress=False, max_chorales=2)
    assert not list(tmp_path.iterdir())


def fake_chorales(n: int) -> list[np.ndarray]:
    """``n`` distinct uint8 rolls; roll ``i`` has ``i + 2`` frames, so its length names it."""
    return [np.eye(i + 2, 88, dtype=np.uint8) for i in range(n)]


def test_interrupted_rebuild_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(music, "_music21_chorale_rolls", lambda progress, m: fake_chorales(10))

    def interrupted(fh, **arrays):  # the cache is written through a file handle
        fh.write(b"truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(music.np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_jsb_music21(tmp_path, seed=0, progress=False)
    assert not (tmp_path / "jsb_music21_seed0.npz").exists()  # the next call rebuilds
    assert not list(tmp_path.iterdir())  # and no temporary file is left behind


def test_rebuild_split_and_cache(tmp_path, monkeypatch):
    calls = []

    def fake(progress, max_chorales):
        calls.append(max_chorales)
        return fake_chorales(20)

    monkeypatch.setattr(music, "_music21_chorale_rolls", fake)
    first = build_jsb_music21(tmp_path / "a", seed=3, progress=False)
    assert calls == [None] and (tmp_path / "a" / "jsb_music21_seed3.npz").exists()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["jsb_music21_seed3.npz"]
    assert first.name == "jsb-music21" and first.source == str(
        tmp_path / "a" / "jsb_music21_seed3.npz"
    )
    ids = {s: [r.shape[0] - 2 for r in first.split(s)] for s in ("train", "valid", "test")}
    assert [len(ids[s]) for s in ("train", "valid", "test")] == [12, 4, 4]  # 60/20/20
    assert sorted(ids["train"] + ids["valid"] + ids["test"]) == list(range(20))
    for s in ("train", "valid", "test"):  # the rolls themselves come back intact, as float
        for roll in first.split(s):
            assert roll.dtype == torch.float32
            assert torch.equal(roll, torch.from_numpy(fake_chorales(20)[roll.shape[0] - 2]).float())

    # Second call: served from the cache, the builder is not run again.
    again = build_jsb_music21(tmp_path / "a", seed=3, progress=False)
    assert calls == [None]
    assert {s: [r.shape[0] - 2 for r in again.split(s)] for s in ids} == ids
    # Same seed elsewhere: rebuilt, same split. Another seed: another split of the same rolls.
    other_dir = build_jsb_music21(tmp_path / "b", seed=3, progress=False)
    assert {s: [r.shape[0] - 2 for r in other_dir.split(s)] for s in ids} == ids
    other_seed = build_jsb_music21(tmp_path / "a", seed=4, progress=False)
    assert calls == [None, None, None] and (tmp_path / "a" / "jsb_music21_seed4.npz").exists()
    ids4 = {s: [r.shape[0] - 2 for r in other_seed.split(s)] for s in ids}
    assert ids4 != ids and sorted(sum(ids4.values(), [])) == list(range(20))
    # max_chorales is passed on and has its own cache file.
    build_jsb_music21(tmp_path / "a", seed=3, progress=False, max_chorales=7)
    assert calls[-1] == 7 and (tmp_path / "a" / "jsb_music21_seed3_first7.npz").exists()


# ----- build_jsb_music21 with music21 --------------------------------------------------------------
def hand_score(shift: int = 0, parts: int = 4):
    """A C major passage, four parts, four beats (transposed by ``shift`` semitones)."""
    from music21 import chord, note, stream

    voices = [
        [("C5", 1.5), ("D5", 0.5), ("E5", 2.0)],  # D5 starts between beats: never sampled
        [("G4", 4.0)],
        [("E4", 2.0), (["C4", "E4"], 2.0)],  # a chord
        [("C3", 3.0), ("G2", 1.0)],
    ][:parts]
    score = stream.Score()
    for voice in voices:
        part = stream.Part()
        for pitch, length in voice:
            cls = chord.Chord if isinstance(pitch, list) else note.Note
            part.append(cls(pitch, quarterLength=length))
        score.insert(0, part)
    return score.transpose(shift) if shift else score


# MIDI pitches sounding on each beat of hand_score(); the rebuild moves C major up an octave.
HAND_BEATS = [[48, 64, 67, 72], [48, 64, 67, 72], [48, 60, 64, 67, 76], [43, 60, 64, 67, 76]]


@needs_music21
def test_rebuild_quantisation_and_transposition_known_answer(monkeypatch):
    """Beat sampling, chords, the shift of the tonic to the nearest C plus an octave, duplicate and
    non-four-part scores skipped; on hand-made scores fed in place of the corpus."""
    from music21 import corpus

    def broken():
        raise OSError("corrupt corpus file")

    scores = {
        "c": hand_score,
        "g": lambda: hand_score(-5),  # G major: up 5 to the nearest C
        "d": lambda: hand_score(2),  # D major: down 2
        "three": lambda: hand_score(parts=3),
        "broken": broken,
    }
    monkeypatch.setattr(music, "_parse_score", lambda path: scores[path]())
    expected = roll_from_pitches([[p + 12 for p in beat] for beat in HAND_BEATS])
    for path in ("c", "g", "d"):
        monkeypatch.setattr(corpus, "getComposer", lambda name, path=path: [path])
        (roll,) = music._music21_chorale_rolls(False, None)
        assert roll.shape == (4, 88)
        np.testing.assert_array_equal(roll, expected)
    # Same piece in three keys is one chorale; the three-part and the broken ones are skipped.
    monkeypatch.setattr(corpus, "getComposer", lambda name: ["c", "three", "g", "broken", "d"])
    assert len(music._music21_chorale_rolls(False, None)) == 1
    assert len(music._music21_chorale_rolls(False, 2)) == 1  # max_chorales: first two paths only
    monkeypatch.setattr(corpus, "getComposer", lambda name: ["three", "broken"])
    with pytest.raises(RuntimeError, match="no four-part Bach chorales"):
        music._music21_chorale_rolls(False, None)


@needs_music21
def test_rebuild_from_the_music21_corpus(tmp_path, monkeypatch):
    start = time.perf_counter()
    rolls = build_jsb_music21(tmp_path, seed=0, progress=False, max_chorales=10)
    cache = tmp_path / "jsb_music21_seed0_first10.npz"
    assert cache.exists() and rolls.source == str(cache)
    assert rolls.name == "jsb-music21" and rolls.name not in BENCHMARK_FILES  # not the benchmark
    n = {s: len(rolls.split(s)) for s in ("train", "valid", "test")}
    total = sum(n.values())
    assert 5 <= total <= 10  # some corpus files are not distinct four-part chorales
    assert n["train"] == int(0.6 * total) and n["valid"] == int(0.2 * total)
    everything = torch.cat(rolls.train + rolls.valid + rolls.test)
    assert everything.shape[1] == 88 and everything.dtype == torch.float32
    assert set(everything.unique().tolist()) == {0.0, 1.0}
    assert all(r.shape[0] >= 2 for r in rolls.train + rolls.valid + rolls.test)
    # Four voices: most beats sound 3 or 4 distinct keys, in a chorale's range within the piano.
    per_beat = everything.sum(1)
    assert per_beat.max() <= 8 and (per_beat >= 3).float().mean() > 0.9
    active = everything.sum(0).nonzero().ravel() + LOWEST_MIDI
    assert 30 <= int(active.min()) and int(active.max()) <= 100
    built_in = time.perf_counter() - start

    # The second call is the cache: it must not parse anything again.
    def no_parse(*args, **kwargs):
        raise AssertionError("the cached rebuild was parsed again")

    monkeypatch.setattr(music, "_music21_chorale_rolls", no_parse)
    start = time.perf_counter()
    again = build_jsb_music21(tmp_path, seed=0, progress=False, max_chorales=10)
    assert time.perf_counter() - start < max(1.0, built_in / 2)
    for s in ("train", "valid", "test"):
        assert len(again.split(s)) == n[s]
        assert all(torch.equal(a, b) for a, b in zip(again.split(s), rolls.split(s), strict=True))
    monkeypatch.undo()

    # A fresh rebuild elsewhere with the same seed gives the same split, roll for roll.
    fresh = build_jsb_music21(tmp_path / "fresh", seed=0, progress=False, max_chorales=10)
    for s in ("train", "valid", "test"):
        assert all(torch.equal(a, b) for a, b in zip(fresh.split(s), rolls.split(s), strict=True))
    assert len(fresh.test) == n["test"]


# ----- the real benchmark files -------------------------------------------------------------------
STANDARD_SPLITS = {
    "jsb": (229, 76, 77),
    "nottingham": (694, 173, 170),
    "musedata": (524, 135, 124),
    "piano": (87, 12, 25),
}


@pytest.mark.parametrize("name", sorted(STANDARD_SPLITS))
def test_real_benchmark_files(name):
    path = MUSIC_DIR / f"{BENCHMARK_FILES[name]}.mat"
    if not path.exists():
        pytest.skip(f"{path} is absent: download the Boulanger-Lewandowski piano rolls there")
    rolls = load_benchmark(name, MUSIC_DIR)
    assert rolls.name == name and rolls.source == str(path)
    sizes = tuple(len(rolls.split(s)) for s in ("train", "valid", "test"))
    assert sizes == STANDARD_SPLITS[name]
    for roll in rolls.train + rolls.valid + rolls.test:
        assert roll.dtype == torch.float32 and roll.shape[1] == 88 and roll.shape[0] >= 2
    frames = torch.cat(rolls.train)
    assert set(frames.unique().tolist()) == {0.0, 1.0}
    # The loaded rolls are the file's, frame for frame.
    raw = loadmat(path)["testdata"].ravel()
    assert torch.equal(rolls.test[-1], torch.from_numpy(raw[-1].astype(np.float32)))
    # Chunked training data predicts as many frames as whole sequences do.
    whole = sum(len(y) for y in rolls.next_step("train").targets)
    assert sum(len(y) for y in rolls.next_step("train", chunk_length=50).targets) == whole
    nll = frequency_baseline_nll(rolls)
    assert math.isfinite(nll) and 0 < nll < 88 * math.log(2)  # beats a coin flip per key


def test_jsb_music21_is_built_from_the_scores_never_from_music21s_pickle_cache(
    tmp_path, monkeypatch
):
    """music21's parseFile loads a cached pickle of a score from its scratch folder (by
    default /tmp, under a predictable name), which runs any code a planted file holds: the
    build must parse the source files without it."""
    converter = pytest.importorskip("music21.converter", reason="the rebuild needs music21")

    def refuse(*args, **kwargs):
        raise AssertionError("Converter.parseFile (the pickle-reading path) was called")

    monkeypatch.setattr(converter.Converter, "parseFile", refuse)
    rolls = build_jsb_music21(cache_dir=tmp_path, progress=False, max_chorales=3)
    assert sum(len(rolls.split(s)) for s in ("train", "valid", "test")) >= 1
