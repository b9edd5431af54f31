"""The synthetic grid-caption data, the caption decoder (SVI, decoding) and the caption metrics."""

from __future__ import annotations

import itertools
import subprocess
import threading

import numpy as np
import pyro
import pytest
import torch

from pyro_betalstm.batch import SequenceBatch
from pyro_betalstm.caption_metrics import (
    CaptionScorer,
    caption_metrics,
    pycocoevalcap_available,
)
from pyro_betalstm.data.captions import (
    DIGIT_WORDS,
    EMPTY,
    SYNTHETIC_NAME,
    TEMPLATES,
    build_synthetic_grid_captions,
    caption_dataset,
    caption_from_cells,
    caption_vocabulary,
    captions_for_layout,
    cell_accuracy,
    decode_caption,
    encode_caption,
    layout_accuracy,
    parse_caption,
)
from pyro_betalstm.data.vocabulary import Vocabulary
from pyro_betalstm.gates import GATE_FAMILIES
from pyro_betalstm.infer import GateMeanFieldELBO, TrainConfig, evaluate_nll, fit
from pyro_betalstm.models.caption import CaptionDecoder
from pyro_betalstm.nn import StochasticLSTM

needs_coco = pytest.mark.skipif(
    not pycocoevalcap_available(),
    reason="pycocoevalcap is not installed (pip install --no-deps pycocoevalcap==1.2)",
)


def source_digits(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small stand-in for an MNIST split: distinct random 28 x 28 images with labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28), dtype=np.float32), np.arange(n) % 10


def count_digit_words(caption: str) -> dict[int, int]:
    words = caption.split()
    return {d: words.count(w) for d, w in enumerate(DIGIT_WORDS) if w in words}


# ----- the synthetic builder --------------------------------------------------------------------
def test_grid_cells_are_the_source_images_and_labels():
    images, labels = source_digits()
    data = build_synthetic_grid_captions(images, labels, 30, seed=3)
    assert data.name == SYNTHETIC_NAME and "synthetic" in data.name
    assert data.images.shape == (30, 56, 56) and data.images.dtype == np.float32
    for n in range(30):
        assert 1 <= (data.layouts[n] != EMPTY).sum() <= 4
        for cell in range(4):
            r, c = divmod(cell, 2)
            crop = data.images[n, 28 * r : 28 * (r + 1), 28 * c : 28 * (c + 1)]
            src = data.sources[n, cell]
            if src == EMPTY:
                assert data.layouts[n, cell] == EMPTY and not crop.any()
            else:
                np.testing.assert_array_equal(crop, images[src])
                assert data.layouts[n, cell] == labels[src]


def test_captions_mention_exactly_the_digits_present_and_where():
    images, labels = source_digits()
    data = build_synthetic_grid_captions(images, labels, 50, seed=1, num_captions=5)
    for layout, refs in zip(data.layouts, data.captions, strict=True):
        present = [int(d) for d in layout if d != EMPTY]
        expected = {d: present.count(d) for d in set(present)}
        truth = {k: int(d) for k, d in enumerate(layout) if d != EMPTY}
        assert len(refs) == 5 and len(set(refs)) > 1  # varied wording
        for caption in refs:
            assert count_digit_words(caption) == expected
            assert parse_caption(caption) == truth
    assert layout_accuracy([refs[3] for refs in data.captions], data.layouts) == 1.0


def test_caption_templates_by_hand():
    cells = [(0, 7), (3, 2)]
    assert caption_from_cells(cells) == "a seven in the top left and a two in the bottom right"
    assert caption_from_cells(cells, "has") == (
        "the top left has a seven and the bottom right has a two"
    )
    three = [(1, 8), (2, 1), (0, 0)]
    assert caption_from_cells(three, "there_is") == (
        "there is an eight in the top right , a one in the bottom left and a zero in the top left"
    )
    for template in TEMPLATES:
        assert parse_caption(caption_from_cells(three, template)) == {1: 8, 2: 1, 0: 0}
    assert parse_caption("nothing here") == {}
    # a caption that misplaces one digit does not count as right; two of its four cells are
    layout = np.array([[7, -1, -1, -1]])
    assert layout_accuracy(["a seven in the top right"], layout) == 0.0
    assert cell_accuracy(["a seven in the top right"], layout) == 0.5
    assert cell_accuracy(["a seven in the top left"], layout) == 1.0


def test_builder_is_reproducible_by_seed():
    images, labels = source_digits()
    a = build_synthetic_grid_captions(images, labels, 20, seed=5)
    b = build_synthetic_grid_captions(images, labels, 20, seed=5)
    c = build_synthetic_grid_captions(images, labels, 20, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.sources, b.sources)
    assert a.captions == b.captions
    assert not np.array_equal(a.sources, c.sources)


def test_builder_sizes_are_configurable():
    images, labels = source_digits()
    data = build_synthetic_grid_captions(
        images, labels, 12, seed=0, num_captions=3, min_digits=2, max_digits=2
    )
    assert len(data) == 12 and all(len(refs) == 3 for refs in data.captions)
    assert ((data.layouts != EMPTY).sum(1) == 2).all()
    assert data.summary()["digits_per_image_mean"] == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"images": np.zeros((4, 28)), "labels": np.zeros(4, int)}, "images must be"),
        ({"images": np.zeros((4, 28, 28)), "labels": np.zeros(3, int)}, "labels must have shape"),
        ({"images": np.zeros((4, 28, 28)), "labels": np.full(4, 11)}, "digits in 0..9"),
        ({"num_images": 0}, "num_images must be positive"),
        ({"min_digits": 3, "max_digits": 2}, "min_digits"),
        ({"max_digits": 5}, "max_digits"),
    ],
)
def test_builder_rejects_bad_input(kwargs, message):
    images, labels = source_digits()
    args = {"images": images, "labels": labels, "num_images": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_synthetic_grid_captions(**args)


def test_caption_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        caption_from_cells([])
    with pytest.raises(ValueError, match="unknown template"):
        caption_from_cells([(0, 1)], "poem")
    with pytest.raises(ValueError, match="cell must be"):
        caption_from_cells([(4, 1)])
    with pytest.raises(ValueError, match="at least one digit"):
        captions_for_layout([EMPTY] * 4, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="one caption per layout"):
        layout_accuracy(["a one in the top left"], np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="one caption per layout"):
        cell_accuracy([], np.zeros((0, 4), int))


# ----- vocabulary and data set -------------------------------------------------------------------
def test_vocabulary_round_trip_and_specials():
    vocab = caption_vocabulary(["a seven in the top left", "a two in the top right"])
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    ids = encode_caption(vocab, "a seven in the top left")
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert decode_caption(vocab, ids) == "a seven in the top left"
    assert decode_caption(vocab, [*ids[:3], vocab.eos_id, *ids[3:]]) == "a seven"  # stops at <eos>
    assert vocab.encode(["a", "nine"])[1] == vocab.unk_id == 3
    assert Vocabulary.from_dict(vocab.to_dict()).itos == vocab.itos
    with pytest.raises(ValueError, match="non-empty string"):
        encode_caption(vocab, "  ")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([len(vocab)])
    with pytest.raises(ValueError, match="empty vocabulary"):
        caption_vocabulary([])


def test_caption_vocabulary_saved_before_the_merge_still_loads():
    """``vocab.json`` of a caption vocabulary as the former CaptionVocabulary wrote it."""
    words = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "seven"]
    vocab = Vocabulary.from_dict({"words": words})
    assert vocab.itos == words and vocab.specials == tuple(words[:4])
    assert encode_caption(vocab, "a seven") == [1, 4, 5, 2]


def small_task(n_images: int = 24, seed: int = 0):
    images, labels = source_digits(seed=seed)
    data = build_synthetic_grid_captions(images, labels, n_images, seed=seed, max_digits=2)
    vocab = caption_vocabulary(c for refs in data.captions for c in refs)
    return data, vocab


def test_caption_dataset_teacher_forcing_pairs():
    data, vocab = small_task(6)
    ds = caption_dataset(data, vocab, captions_per_image=2, seed=0)
    assert len(ds) == 12
    for x, y, n in zip(ds.inputs, ds.targets, ds.image_index, strict=True):
        assert x[0, 0] == vocab.bos_id and y[-1] == vocab.eos_id
        assert torch.equal(x[1:, 0], y[:-1])  # inputs are the targets shifted by one
        assert decode_caption(vocab, y.tolist()) in data.captions[int(n)]
    batch = ds.batch([0, 5, 7])
    assert batch.extras["images"].shape == (3, 56, 56)
    assert torch.equal(batch.extras["images"][1], torch.as_tensor(data.images[ds.image_index[5]]))
    with pytest.raises(ValueError, match="captions_per_image"):
        caption_dataset(data, vocab, captions_per_image=6)


# ----- the decoder -------------------------------------------------------------------------------
def make_decoder(
    vocab_size: int, gate: str = "sigmoid", hidden: int = 8, seed: int = 0, image_input="every"
):
    torch.manual_seed(seed)
    lstm = StochasticLSTM(6, hidden, 1, gate=gate, batch_first=True)
    # a KL weight for the latent families only: a deterministic one warns it is ignored
    kl_weight = 0.5 if lstm.family.is_latent else None
    return CaptionDecoder(
        lstm, vocab_size, kl_weight=kl_weight, cnn_channels=(4, 4, 4), image_input=image_input
    )


def test_image_reaches_every_input_or_only_the_first():
    data, vocab = small_task(4)
    batch = caption_dataset(data, vocab).batch(range(2))
    swapped = SequenceBatch(
        batch.inputs, batch.targets, batch.lengths, 4, {"images": batch.extras["images"].flip(0)}
    )
    for image_input, later_steps_see_image in (("every", True), ("first", False)):
        model = make_decoder(len(vocab), image_input=image_input).eval()
        a, b = model.embed_batch(batch).inputs, model.embed_batch(swapped).inputs
        assert not torch.allclose(a[:, 0], b[:, 0])
        assert torch.allclose(a[:, 1:], b[:, 1:]) != later_steps_see_image


@pytest.mark.parametrize("gate", sorted(GATE_FAMILIES))
def test_every_gate_family_runs_an_svi_step(gate):
    data, vocab = small_task(8)
    ds = caption_dataset(data, vocab)
    model = make_decoder(len(vocab), gate)
    batch = ds.batch(range(4))
    pyro.set_rng_seed(0)
    loss = GateMeanFieldELBO().differentiable_loss(model.model, model.guide, batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.encoder.project.weight.grad.abs().sum() > 0  # the CNN is trained through SVI
    assert model.embedding.weight.grad.abs().sum() > 0


def test_elbo_is_the_teacher_forced_log_likelihood_for_deterministic_gates():
    data, vocab = small_task(8)
    ds = caption_dataset(data, vocab)
    model = make_decoder(len(vocab), "sigmoid").eval()
    batch = ds.batch(range(5))
    loss = GateMeanFieldELBO().differentiable_loss(model.model, model.guide, batch)
    tokens = [ds.targets[i].tolist() for i in range(5)]
    direct = model.score_captions(batch.extras["images"], tokens)
    # dataset_size 8 > batch 5: the plate scales the minibatch log-likelihood by 8 / 5
    torch.testing.assert_close(loss, -direct.sum() * 8 / 5)


def test_fit_lowers_the_validation_nll(tmp_path):
    data, vocab = small_task(24)
    ds = caption_dataset(data, vocab)
    model = make_decoder(len(vocab), "bivariate", hidden=12)
    before = evaluate_nll(model, ds)["nll_mean_gates"]
    config = TrainConfig(
        num_epochs=10, batch_size=8, lr=1e-2, progress=False, seed=0, seed_globals=True
    )
    fit(model, ds, ds, config, out_dir=tmp_path)
    after = evaluate_nll(model, ds)["nll_mean_gates"]
    assert after < before - 0.5
    assert (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("gate, image_input", [("sigmoid", "first"), ("bivariate5", "every")])
def test_greedy_equals_beam_of_width_one(gate, image_input):
    data, vocab = small_task(6)
    model = make_decoder(len(vocab), gate, seed=1, image_input=image_input)
    images = torch.as_tensor(data.images)
    g_caps, g_lp = model.greedy_decode(images, max_length=12)
    b_caps, b_lp = model.beam_decode(images, beam_size=1, max_length=12)
    assert g_caps == b_caps
    torch.testing.assert_close(g_lp, b_lp)


def test_a_float64_decoder_decodes_the_float32_images_it_scores():
    # a data set stores float32 images; a .double() model scores them (teacher forcing) and
    # must decode them too, each path casting to the model's dtype
    data, vocab = small_task(3)
    model = make_decoder(len(vocab), "bivariate", seed=1).double()
    images = torch.as_tensor(data.images)
    assert images.dtype == torch.float32
    (caps, log_p), (beam_caps, _) = (
        model.greedy_decode(images, max_length=6),
        model.beam_decode(images, beam_size=1, max_length=6),
    )
    assert log_p.dtype == torch.float64 and caps == beam_caps
    assert torch.allclose(model.score_captions(images, caps), log_p, atol=1e-9)


def test_beam_finds_the_most_probable_caption_of_a_tiny_model():
    vocab_size, max_length = 6, 3  # <pad> <bos> <eos> <unk> x y: 4 tokens can be predicted
    allowed = [2, 3, 4, 5]
    image = torch.rand(1, 56, 56, generator=torch.Generator().manual_seed(0))
    found_better = False
    for seed, image_input in itertools.product(range(4), ("every", "first")):
        model = make_decoder(vocab_size, "sigmoid", hidden=4, seed=seed, image_input=image_input)
        # every caption: words then <eos>, or max_length words without <eos>
        candidates = [
            [*words, 2]
            for k in range(max_length)
            for words in itertools.product([3, 4, 5], repeat=k)
        ] + [list(w) for w in itertools.product([3, 4, 5], repeat=max_length)]
        scores = model.score_captions(image.expand(len(candidates), -1, -1), candidates)
        best = int(scores.argmax())
        caps, lp = model.beam_decode(image, beam_size=len(allowed) ** max_length, max_length=3)
        expected = [t for t in candidates[best] if t != 2]
        assert caps[0] == expected
        torch.testing.assert_close(lp[0], scores[best])
        # the beam's score is the teacher-forced log-probability of what it returns
        g_caps, g_lp = model.greedy_decode(image, max_length=3)
        assert lp[0] >= g_lp[0] - 1e-6
        found_better |= bool(lp[0] > g_lp[0] + 1e-4)
    assert found_better, "on some tiny model beam search must beat greedy decoding"


def test_decoder_rejects_bad_input():
    data, vocab = small_task(4)
    ds = caption_dataset(data, vocab)
    model = make_decoder(len(vocab))
    batch = ds.batch(range(2))
    no_images = type(batch)(batch.inputs, batch.targets, batch.lengths, 4)
    with pytest.raises(ValueError, match="extras\\['images'\\]"):
        model.run_network(no_images)
    # ids stored as floats are read as the text model reads them: whole numbers only
    floats = type(batch)(batch.inputs.float(), batch.targets, batch.lengths, 4, batch.extras)
    torch.testing.assert_close(model.embed_batch(floats).inputs, model.embed_batch(batch).inputs)
    halves = type(batch)(floats.inputs + 0.5, batch.targets, batch.lengths, 4, batch.extras)
    with pytest.raises(ValueError, match="caption token ids must be whole numbers"):
        model.run_network(halves)
    flags = type(batch)(batch.inputs > 0, batch.targets, batch.lengths, 4, batch.extras)
    with pytest.raises(ValueError, match=r"caption inputs must be token ids of shape"):
        model.run_network(flags)
    big = type(batch)(batch.inputs + 100, batch.targets, batch.lengths, 4, batch.extras)
    with pytest.raises(ValueError, match=r"caption token ids must lie in \[0, \d+\], got"):
        model.run_network(big)
    with pytest.raises(ValueError, match="grey-scale"):
        model.greedy_decode(torch.zeros(2, 3, 56, 56))
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_decode(torch.zeros(1, 56, 56), beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        model.greedy_decode(torch.zeros(1, 56, 56), max_length=0)
    with pytest.raises(ValueError, match="vocab_size"):
        CaptionDecoder(StochasticLSTM(6, 4, batch_first=True), 3)
    with pytest.raises(ValueError, match="image_input"):
        CaptionDecoder(StochasticLSTM(6, 4, batch_first=True), 8, image_input="last")


# ----- metrics -----------------------------------------------------------------------------------
REFS = {
    n: [caption_from_cells(cells, t) for t in TEMPLATES[:3]]
    for n, cells in enumerate([[(0, 7)], [(1, 2), (3, 8)], [(2, 4)], [(0, 1), (1, 5), (3, 3)]])
}


@pytest.fixture(scope="module")
def scorer():
    if not pycocoevalcap_available():
        pytest.skip("pycocoevalcap is not installed (pip install --no-deps pycocoevalcap==1.2)")
    with CaptionScorer(meteor=True) as s:
        yield s


@needs_coco
def test_perfect_captions_score_one(scorer):
    scores = scorer.score(REFS, {n: refs[0] for n, refs in REFS.items()})
    for n in (1, 2, 3, 4):
        assert scores[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["CIDEr"] > 0.5
    if scores["METEOR"] is None:
        assert scores["METEOR_unavailable"]  # says why (no java), never a made-up number
    else:
        assert scores["METEOR"] == pytest.approx(1.0, abs=1e-3)


@needs_coco
def test_disjoint_captions_score_zero(scorer):
    scores = scorer.score(REFS, dict.fromkeys(REFS, "zebra umbrella quartz"))
    for key in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert scores[key] == pytest.approx(0.0, abs=1e-6)
    assert scores["METEOR"] is None or scores["METEOR"] == pytest.approx(0.0, abs=1e-6)


@needs_coco
def test_partly_right_captions_score_in_between(scorer):
    # the right digits in the wrong cells share most n-grams with the references
    hyps = {n: refs[0].replace("top", "bottom") for n, refs in REFS.items()}
    scores = scorer.score(REFS, hyps)
    assert 0.3 < scores["BLEU-1"] < 1.0 and 0.0 < scores["CIDEr"]


@needs_coco
def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        caption_metrics({}, {}, meteor=False)
    with pytest.raises(ValueError, match="same keys"):
        caption_metrics({0: ["a"]}, {1: "a"}, meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics({0: "a one"}, {0: "a one"}, meteor=False)
    with pytest.raises(ValueError, match="must be a string"):
        caption_metrics({0: ["a one"]}, {0: ["a one"]}, meteor=False)
    result = caption_metrics({0: ["a one in the top left"]}, {0: ""}, meteor=False)
    assert result["METEOR"] is None and result["METEOR_unavailable"] == "not requested"


def test_meteor_without_java_is_reported_unavailable(monkeypatch):
    if not pycocoevalcap_available():
        pytest.skip("pycocoevalcap is not installed (pip install --no-deps pycocoevalcap==1.2)")
    monkeypatch.setattr("shutil.which", lambda name: None)
    scores = caption_metrics(REFS, {n: refs[0] for n, refs in REFS.items()})
    assert scores["METEOR"] is None and "java" in scores["METEOR_unavailable"]
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


class _FailingMeteor:
    """Stands in for pycocoevalcap's Meteor whose Java process died mid-call."""

    def __init__(self):
        self.lock = threading.Lock()
        self.meteor_p = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE)

    def compute_score(self, gts, res):
        self.lock.acquire()  # as pycocoevalcap does, and then the read fails
        raise ValueError("could not convert string to float: b''")


def test_meteor_failure_is_reported_and_its_process_ended():
    if not pycocoevalcap_available():
        pytest.skip("pycocoevalcap is not installed (pip install --no-deps pycocoevalcap==1.2)")
    scorer = CaptionScorer(meteor=True)
    fake = scorer._meteor = _FailingMeteor()
    scores = scorer.score(REFS, {n: refs[0] for n, refs in REFS.items()})
    assert scores["METEOR"] is None and "METEOR jar failed" in scores["METEOR_unavailable"]
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert fake.meteor_p.poll() is not None and not fake.lock.locked()
    # later calls do not retry the dead process, and still say why
    again = scorer.score(REFS, {n: refs[1] for n, refs in REFS.items()})
    assert again["METEOR"] is None and "failed" in again["METEOR_unavailable"]
    scorer.close()


def test_scorer_without_pycocoevalcap_says_how_to_install(monkeypatch):
    monkeypatch.setattr("pyro_betalstm.caption_metrics.pycocoevalcap_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps pycocoevalcap"):
        CaptionScorer()
