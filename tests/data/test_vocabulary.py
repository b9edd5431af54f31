"""The one Vocabulary of the text tasks: specials, sentence marks, saved forms old and new."""

import json

import pytest

from pyro_betalstm.data.vocabulary import CAPTION_SPECIALS, WORD_SPECIALS, Vocabulary


def test_word_vocabulary_has_no_sentence_marks():
    vocab = Vocabulary.build([["a", "b", "a"]])
    assert vocab.specials == WORD_SPECIALS and (vocab.pad_id, vocab.unk_id) == (0, 1)
    with pytest.raises(KeyError, match="<bos>"):
        vocab.encode(["a"], add_bos_eos=True)
    # <pad> is dropped; without <eos> nothing stops the decoding
    assert vocab.decode([2, 0, 3, 1]) == ["a", "b", "<unk>"]


def test_caption_vocabulary_frames_and_stops_at_the_sentence_marks():
    vocab = Vocabulary.build([["x", "y", "x"]], specials=CAPTION_SPECIALS)
    assert vocab.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "x", "y"]
    ids = vocab.encode(["y", "z"], add_bos_eos=True)
    assert ids == [1, 5, 3, 2]
    assert vocab.decode([1, 5, 0, 4, 2, 4]) == ["y", "x"]


def test_specials_are_not_counted_as_tokens_and_must_come_first():
    vocab = Vocabulary.build([["<eos>", "<unk>", "w"]], specials=CAPTION_SPECIALS)
    assert vocab.itos == [*CAPTION_SPECIALS, "w"]
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["<pad>", "<unk>", "w"], CAPTION_SPECIALS)
    with pytest.raises(ValueError, match="specials"):
        Vocabulary(["<unk>", "<pad>"], ("<unk>", "<pad>"))
    with pytest.raises(ValueError, match="token list"):
        Vocabulary.build([["w"]]).encode("w")


@pytest.mark.parametrize("specials", [WORD_SPECIALS, CAPTION_SPECIALS])
def test_saved_form_round_trips_through_json(specials):
    vocab = Vocabulary.build([["b", "a", "b"]], specials=specials)
    loaded = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert loaded.itos == vocab.itos and loaded.specials == vocab.specials


def test_files_written_before_the_merge_still_load():
    """``vocab.json`` of the sentence example and the former CaptionVocabulary's saved form."""
    words = Vocabulary.from_dict({"itos": ["<pad>", "<unk>", "film"]})
    assert words.specials == WORD_SPECIALS and words.encode(["film", "?"]) == [2, 1]
    captions = Vocabulary.from_dict({"words": [*CAPTION_SPECIALS, "seven"]})
    assert captions.specials == CAPTION_SPECIALS and captions.encode(["seven"], True) == [1, 4, 2]
