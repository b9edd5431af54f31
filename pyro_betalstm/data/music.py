"""Polyphonic music piano rolls: the four standard benchmarks and an embedded JSB rebuild.

The benchmarks (Boulanger-Lewandowski et al., ICML 2012) are piano rolls of 88 keys (MIDI
pitches 21..108), one frame per beat, with standard train/valid/test splits. Two file formats
are read:

* ``.mat`` (``traindata``/``validdata``/``testdata``: arrays of ``(T, 88)`` 0/1 frames);
* ``.pickle`` (``train``/``valid``/``test``: lists of sequences of lists of active MIDI pitches).

Pickles are read with a restricted unpickler that rebuilds builtin containers and numbers only
(a pickle from someone else cannot run code); there is no opt-in for other types. ``.mat`` files
are read with :func:`scipy.io.loadmat`, which does not run code.

Without downloaded files, :func:`build_jsb_music21` rebuilds JSB-style piano rolls from the
Bach chorales in ``music21``'s corpus (``pip install music21``). That rebuild is **not** the
benchmark (different chorale selection, quantisation and split) and is named
``jsb-music21`` wherever it appears.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write
from ..progress import progress_bar
from ._packages import MissingDependency
from .batching import SequenceDataset

NUM_KEYS = 88
LOWEST_MIDI = 21
#: the file name (without suffix) of each benchmark that :func:`load_benchmark` looks for first
BENCHMARK_FILES = {
    "jsb": "JSB_Chorales",
    "nottingham": "Nottingham",
    "musedata": "MuseData",
    "piano": "Piano_midi",
}
#: the names the files have where they are downloaded from (:data:`BENCHMARK_URL`)
BENCHMARK_DOWNLOAD_FILES = {
    "jsb": "JSB Chorales",
    "nottingham": "Nottingham",
    "musedata": "MuseData",
    "piano": "Piano-midi.de",
}
#: where the four benchmarks' piano rolls are published (Boulanger-Lewandowski et al., 2012)
BENCHMARK_URL = "http://www-etud.iro.umontreal.ca/~boulanni/icml2012"
#: the suffixes :func:`load_benchmark` tries, in order
BENCHMARK_SUFFIXES = (".mat", ".pickle", ".pkl")
SPLITS = ("train", "valid", "test")


@dataclass
class PianoRolls:
    """Train, valid and test piano rolls, each a list of ``(T, 88)`` float tensors of 0/1."""

    name: str
    train: list[torch.Tensor]
    valid: list[torch.Tensor]
    test: list[torch.Tensor]
    source: str = ""

    def split(self, name: str) -> list[torch.Tensor]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def next_step(self, split: str, chunk_length: int | None = None) -> SequenceDataset:
        """Next-frame data: inputs ``seq[:-1]``, targets ``seq[1:]`` (sequences of 2+ frames).

        ``chunk_length``: cut each sequence into windows of ``chunk_length + 1`` frames that
        overlap by one frame, so that every transition ``t -> t+1`` is predicted exactly once
        but the state is not carried across windows (for training on very long pieces with
        more, shorter updates; never for evaluation, which must see whole sequences).
        """
        rolls = [r for r in self.split(split) if r.shape[0] >= 2]
        if not rolls:
            raise ValueError(f"{self.name}/{split}: no sequence has two or more frames")
        if chunk_length is not None:
            if chunk_length < 1:
                raise ValueError(f"chunk_length must be positive, got {chunk_length}")
            rolls = [
                r[start : start + chunk_length + 1]
                for r in rolls
                for start in range(0, r.shape[0] - 1, chunk_length)
            ]
        return SequenceDataset(
            [r[:-1] for r in rolls], [r[1:] for r in rolls], name=f"{self.name}/{split}"
        )

    def key_frequencies(self) -> torch.Tensor:
        """Per-key frequency over all training frames (for the frequency baseline)."""
        if not self.train:
            raise ValueError(f"{self.name}: the train split is empty; no key frequencies")
        frames = torch.cat(self.train)
        return frames.mean(0)

    def summary(self) -> dict:
        return {
            split: {
                "sequences": len(self.split(split)),
                "frames": int(sum(r.shape[0] for r in self.split(split))),
            }
            for split in SPLITS
        }


def _check_roll(roll: np.ndarray, where: str) -> torch.Tensor:
    roll = np.asarray(roll)
    if roll.dtype == object or not np.issubdtype(roll.dtype, np.number):
        raise ValueError(f"{where}: expected a numeric (time, {NUM_KEYS}) piano roll")
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ValueError(
            f"{where}: expected a (time, {NUM_KEYS}) piano roll, got shape {roll.shape}"
        )
    if not np.isin(roll, (0, 1)).all():
        raise ValueError(f"{where}: piano roll entries must be 0 or 1")
    return torch.as_tensor(roll, dtype=torch.float32)


def _pitches_to_roll(frames, where: str) -> torch.Tensor:
    if not isinstance(frames, list | tuple) or not all(
        isinstance(f, list | tuple | set | frozenset) for f in frames
    ):
        raise ValueError(f"{where}: expected a sequence of frames, each a list of MIDI pitches")
    roll = np.zeros((len(frames), NUM_KEYS), dtype=np.float32)
    for t, pitches in enumerate(frames):
        for p in pitches:
            # is_integer is False for NaN and inf too, where int(p) raised naming no file
            if isinstance(p, bool) or not (
                isinstance(p, int) or (isinstance(p, float) and p.is_integer())
            ):
                raise ValueError(f"{where}: frame {t}: MIDI pitch {p!r} is not an integer")
            key = int(p) - LOWEST_MIDI
            if not 0 <= key < NUM_KEYS:
                raise ValueError(f"{where}: MIDI pitch {p} outside the piano range 21..108")
            roll[t, key] = 1.0
    return torch.from_numpy(roll)


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds builtin containers and numbers only: it cannot run code.

    Dicts, lists, tuples, ints, floats, strings and ``None`` need no global at all; the names
    below are the only ones a piano-roll pickle (Python 2 or 3) may need.
    """

    ALLOWED = frozenset(
        (module, name)
        for module in ("builtins", "__builtin__")
        for name in ("set", "frozenset", "list", "dict", "tuple", "int", "float", "long", "bool")
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a piano-roll pickle holds only builtin "
                "containers and numbers"
            )
        return super().find_class(module, name)


def _load_plain_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            content = _PlainDataUnpickler(fh, encoding="latin1").load()
    # a malformed pickle can fail in many ways; all mean "not a piano-roll pickle"
    except Exception as err:  # noqa: BLE001 - e.g. MemoryError from a damaged length field
        raise ValueError(
            f"{path}: not a readable piano-roll pickle ({type(err).__name__}: {err}); expected "
            "a Boulanger-Lewandowski .pickle (a dict train/valid/test of lists of sequences of "
            "lists of MIDI pitches) holding builtin containers and numbers only"
        ) from err
    if not isinstance(content, dict):
        raise ValueError(
            f"{path}: the pickle holds a {type(content).__name__}; expected a dict with keys "
            "train/valid/test"
        )
    return content


def _load_mat(path: Path) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(path)
    # scipy reports damaged files as ValueError, TypeError, OSError, zlib or struct errors and
    # more; whichever it is, the user needs the file named
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err}); expected "
            "traindata/validdata/testdata arrays of (time, 88) piano rolls; the file may be "
            "truncated or corrupt"
        ) from err


def _sequences(content: dict, key: str, path: Path) -> list:
    value = content[key]
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    if not isinstance(value, list | tuple):
        raise ValueError(f"{path}: {key} is a {type(value).__name__}; expected a list of sequences")
    return list(value)


def load_piano_rolls(path: str | Path, name: str | None = None) -> PianoRolls:
    """Read a ``.mat`` or Boulanger-Lewandowski ``.pickle`` file of piano-roll splits.

    Pickles are unpickled with builtin containers and numbers only (never code). A missing file
    raises :class:`FileNotFoundError`; a corrupt, truncated or malformed one a
    :class:`ValueError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"piano-roll file not found: {path} (expected a .mat file with traindata/validdata/"
            "testdata or a Boulanger-Lewandowski .pickle with train/valid/test)"
        )
    name = name or path.stem
    if path.suffix == ".mat":
        content = _load_mat(path)
        keys = {"train": "traindata", "valid": "validdata", "test": "testdata"}
        missing = [k for k in keys.values() if k not in content]
        if missing:
            raise ValueError(
                f"{path}: missing keys {missing}; expected traindata/validdata/testdata"
            )
        splits = {
            s: [
                _check_roll(r, f"{path}:{k}[{i}]")
                for i, r in enumerate(_sequences(content, k, path))
            ]
            for s, k in keys.items()
        }
    elif path.suffix in (".pickle", ".pkl"):
        content = _load_plain_pickle(path)
        missing = [s for s in SPLITS if s not in content]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; expected train/valid/test")
        splits = {
            s: [
                _pitches_to_roll(seq, f"{path}:{s}[{i}]")
                for i, seq in enumerate(_sequences(content, s, path))
            ]
            for s in SPLITS
        }
    else:
        raise ValueError(f"{path}: unsupported format {path.suffix!r}; expected .mat or .pickle")
    empty = [s for s in SPLITS if not splits[s]]
    if empty:
        raise ValueError(f"{path}: the {empty} split(s) hold no sequences; expected at least one")
    return PianoRolls(name, splits["train"], splits["valid"], splits["test"], source=str(path))


def _benchmark_stems(name: str) -> list[str]:
    """The benchmark's file names without suffix: :data:`BENCHMARK_FILES`' first, then the
    download's (:data:`BENCHMARK_DOWNLOAD_FILES`) where it differs."""
    if name not in BENCHMARK_FILES:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARK_FILES)}")
    return list(dict.fromkeys((BENCHMARK_FILES[name], BENCHMARK_DOWNLOAD_FILES[name])))


def benchmark_file_names(name: str) -> list[str]:
    """The file names :func:`load_benchmark` looks for, in its order: ``<File>.mat``,
    ``.pickle``, ``.pkl`` with :data:`BENCHMARK_FILES`' names, then with the names of the
    download (:data:`BENCHMARK_DOWNLOAD_FILES`, e.g. ``JSB Chorales.pickle``)."""
    return [stem + suffix for stem in _benchmark_stems(name) for suffix in BENCHMARK_SUFFIXES]


def load_benchmark(name: str, data_dir: str | Path) -> PianoRolls:
    """One of the four benchmarks (``jsb``, ``nottingham``, ``musedata``, ``piano``) from a folder
    holding ``<File>.mat`` or ``<File>.pickle`` (JSB_Chorales, Nottingham, MuseData, Piano_midi,
    or the names of the download from :data:`BENCHMARK_URL`: JSB Chorales, Nottingham,
    MuseData, Piano-midi.de); :func:`benchmark_file_names` gives the order they are looked
    for in. ``data_dir`` may also be one of these files itself; another file is refused
    (``ValueError``), a folder without any of them raises :class:`FileNotFoundError`."""
    names = benchmark_file_names(name)
    data_dir = Path(data_dir)
    expected = " or ".join(f"{stem}.mat / {stem}.pickle" for stem in _benchmark_stems(name))
    if data_dir.is_file():
        if data_dir.name in names:
            return load_piano_rolls(data_dir, name=name)
        raise ValueError(
            f"data_dir {data_dir} is a file, not a folder: expected the folder that holds the "
            f"{name} benchmark's {expected} (such as {data_dir.parent})"
        )
    for file_name in names:
        if (data_dir / file_name).is_file():
            return load_piano_rolls(data_dir / file_name, name=name)
    where = f"in {data_dir}" if data_dir.is_dir() else f"at {data_dir} (no such folder)"
    raise FileNotFoundError(
        f"no {expected} {where}: download the benchmark piano rolls (Boulanger-Lewandowski et "
        f"al., 2012) from {BENCHMARK_URL} there, or use the embedded 'jsb-music21' data"
    )


def frequency_baseline_nll(rolls: PianoRolls, split: str = "test") -> float:
    """NLL per predicted frame (summed over keys) of predicting each key's training frequency.

    Frames ``seq[1:]`` of ``split`` are scored, as the models' next-frame metric does.
    """
    p = rolls.key_frequencies().double().clamp(1e-6, 1 - 1e-6)
    scored = [r[1:] for r in rolls.split(split) if r.shape[0] >= 2]
    if not scored:
        raise ValueError(f"{rolls.name}/{split}: no sequence has two or more frames to score")
    frames = torch.cat(scored).double()
    log_lik = frames @ p.log() + (1 - frames) @ torch.log1p(-p)
    return float(-log_lik.mean())


# ----- the embedded default: JSB-style rolls rebuilt from music21's Bach chorales ----------------
def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "pyro_betalstm"


def build_jsb_music21(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    max_chorales: int | None = None,
) -> PianoRolls:
    """JSB-style piano rolls from music21's Bach chorales (named ``jsb-music21``; not the benchmark).

    Each distinct four-part chorale is transposed so its key's tonic is C (major or minor, by
    music21's key analysis), then up an octave as the benchmark's pitch range implies, and
    sampled at one frame per quarter note (the notes sounding at each beat). A fixed permutation
    with ``seed`` splits the chorales 60/20/20 into train/valid/test. The result is cached as
    ``jsb_music21_seed{seed}.npz`` under ``cache_dir`` (default ``~/.cache/pyro_betalstm``).
    ``max_chorales`` stops after that many corpus files (quick tests only).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    limit = "" if max_chorales is None else f"_first{max_chorales}"
    cache = cache_dir / f"jsb_music21_seed{seed}{limit}.npz"
    if cache.exists():
        return _load_cached(cache)
    rolls = _music21_chorale_rolls(progress, max_chorales)
    order = np.random.default_rng(seed).permutation(len(rolls))
    n_train, n_valid = int(0.6 * len(rolls)), int(0.2 * len(rolls))
    parts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"{s}_{j}": rolls[i] for s, idx in parts.items() for j, i in enumerate(idx)}
    # atomic: an interrupted build must not leave a truncated cache behind
    atomic_write(cache, lambda fh: np.savez_compressed(fh, **arrays))
    return _load_cached(cache)


def _load_cached(path: Path) -> PianoRolls:
    splits = {s: [] for s in SPLITS}
    try:  # allow_pickle=False (numpy's default): arrays only, never code
        with np.load(path, allow_pickle=False) as content:
            order = sorted(content.files, key=lambda k: (k.split("_")[0], int(k.split("_")[1])))
            for key in order:
                split = key.split("_")[0]
                splits[split].append(torch.as_tensor(content[key], dtype=torch.float32))
    except Exception as err:  # noqa: BLE001 - damaged zip/npz files fail in many ways
        raise ValueError(
            f"{path}: not a readable jsb-music21 cache ({type(err).__name__}: {err}); delete it "
            "to rebuild it from the music21 corpus"
        ) from err
    return PianoRolls("jsb-music21", splits["train"], splits["valid"], splits["test"], str(path))


def _parse_score(path):
    """A music21 score from its source file, never from music21's pickle cache: corpus.parse
    would unpickle a file in its scratch folder (by default in /tmp, under a predictable name),
    which runs whatever code a planted file holds."""
    from music21 import converter

    parser = converter.Converter()
    parser.parseFileNoPickle(path)
    return parser.stream


def _music21_chorale_rolls(progress: bool, max_chorales: int | None) -> list[np.ndarray]:
    try:
        from music21 import corpus, interval, pitch
    except ImportError as err:
        raise MissingDependency(
            "the embedded JSB rebuild (jsb-music21) needs music21: install the [music] extra, "
            '`pip install -e ".[music]"` in a checkout, or `pip install music21`'
        ) from err
    paths = corpus.getComposer("bach")[:max_chorales]
    desc = "building jsb-music21 from the music21 corpus"
    iterator = progress_bar(paths, len(paths), desc) if progress else paths
    rolls, seen = [], set()
    for path in iterator:
        try:
            score = _parse_score(path)
        except Exception:  # noqa: BLE001 - a corrupt corpus file is skipped, not fatal
            continue
        if len(score.parts) != 4:
            continue
        key = score.analyze("key")
        shift = interval.Interval(key.tonic, pitch.Pitch("C"))
        semitones = (shift.semitones + 6) % 12 - 6 + 12  # nearest C, then up an octave
        flat = score.flatten().notes
        length = int(np.ceil(float(score.highestTime)))
        if length < 2:
            continue
        roll = np.zeros((length, NUM_KEYS), dtype=np.uint8)
        for element in flat:
            start = float(element.offset)
            end = start + float(element.quarterLength)
            for p in element.pitches:
                key_index = p.midi + semitones - LOWEST_MIDI
                if not 0 <= key_index < NUM_KEYS:
                    continue
                first, last = int(np.ceil(start - 1e-6)), int(np.ceil(end - 1e-6))
                roll[first:last, key_index] = 1
        digest = hashlib.sha1(roll.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        rolls.append(roll)
    if not rolls:
        raise RuntimeError("music21's corpus gave no four-part Bach chorales")
    return rolls
