"""The joint SentencePiece BPE tokenizer: fixed special ids, round trips, saving, fingerprints."""

from __future__ import annotations

import io

import pytest
import sentencepiece as spm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from formers.data.corpus import DataError
from formers.data.tokenizer import FILENAME, Tokenizer

from .helpers import DE, EN, multi30k_lines, tiny_pairs

TEXTS = [t for pair in tiny_pairs() for t in pair]


def test_special_ids_are_fixed(tiny_tokenizer):
    assert (Tokenizer.pad_id, Tokenizer.bos_id, Tokenizer.eos_id, Tokenizer.unk_id) == (0, 1, 2, 3)
    assert tiny_tokenizer.pieces([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]


def test_encode_adds_no_bos_or_eos_and_batches_agree(tiny_tokenizer):
    ids = tiny_tokenizer.encode("the cat sees a dog")
    assert ids and all(i > 3 for i in ids)
    texts = TEXTS[:20]
    assert tiny_tokenizer.encode_batch(texts) == [tiny_tokenizer.encode(t) for t in texts]


def test_vocab_size_is_the_requested_one(tiny_tokenizer):
    assert tiny_tokenizer.vocab_size == 50


def test_decode_inverts_encode_on_normalized_text(tiny_tokenizer):
    for text in TEXTS:
        assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(EN + DE), min_size=1, max_size=12))
def test_decode_inverts_encode_on_any_sentence_of_known_words(tiny_tokenizer, words):
    text = " ".join(words)
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_decode_drops_pad_bos_and_eos(tiny_tokenizer):
    ids = tiny_tokenizer.encode("a small dog")
    assert tiny_tokenizer.decode([1, *ids, 2, 0, 0]) == "a small dog"
    assert tiny_tokenizer.decode_batch([[1, *ids, 2], []]) == ["a small dog", ""]


def test_unknown_characters_become_unk(tiny_tokenizer):
    assert Tokenizer.unk_id in tiny_tokenizer.encode("the cat ☃")


def test_save_and_load_round_trip(tiny_tokenizer, tmp_path):
    path = tiny_tokenizer.save(tmp_path / "run")
    assert path == tmp_path / "run" / FILENAME
    assert [p.name for p in path.parent.iterdir()] == [FILENAME]  # no temporary file left
    for source in (path.parent, path):
        loaded = Tokenizer.load(source)
        assert loaded.fingerprint() == tiny_tokenizer.fingerprint()
        assert loaded.encode_batch(TEXTS) == tiny_tokenizer.encode_batch(TEXTS)


def test_fingerprint_is_stable_and_tells_tokenizers_apart(tiny_tokenizer):
    again = Tokenizer.train(TEXTS, vocab_size=50)
    assert again.fingerprint() == tiny_tokenizer.fingerprint()
    assert len(again.fingerprint()) == 64
    assert Tokenizer.train(TEXTS, vocab_size=49).fingerprint() != tiny_tokenizer.fingerprint()


def test_the_model_does_not_depend_on_the_thread_count(tiny_tokenizer):
    torch.set_num_threads(3)  # the shared fixture restores the previous setting
    assert Tokenizer.train(TEXTS, vocab_size=50).fingerprint() == tiny_tokenizer.fingerprint()


def test_training_accepts_any_iterable(tiny_tokenizer):
    generated = Tokenizer.train((t for t in TEXTS), vocab_size=50)
    assert generated.fingerprint() == tiny_tokenizer.fingerprint()


def test_multi30k_tokenized_round_trip_and_save_load(tmp_path):
    en = multi30k_lines("tok/train.lc.norm.tok.en.gz", 2000)
    de = multi30k_lines("tok/train.lc.norm.tok.de.gz", 2000)
    tokenizer = Tokenizer.train(en + de, vocab_size=2000)
    assert tokenizer.vocab_size == 2000
    normalized = [" ".join(line.split()) for line in en + de]  # SentencePiece collapses spaces
    ids = tokenizer.encode_batch(normalized)
    assert [tokenizer.decode(x) for x in ids] == normalized
    mean = sum(map(len, ids)) / len(ids)
    assert 10 < mean < 20, "about one piece a word for a 2,000-piece vocabulary"
    loaded = Tokenizer.load(tokenizer.save(tmp_path))
    assert loaded.encode_batch(normalized[:100]) == ids[:100]


def test_multi30k_raw_text_round_trips_once_spaces_are_normalized():
    lines = multi30k_lines("train.en.gz", 500) + multi30k_lines("train.de.gz", 500)
    tokenizer = Tokenizer.train(lines, vocab_size=800)
    for line in lines:
        normalized = " ".join(line.split())
        assert tokenizer.decode(tokenizer.encode(line)) == normalized


@pytest.mark.parametrize("texts", [[], ["", "   ", "\t"]])
def test_training_on_no_text_is_an_error(texts):
    with pytest.raises(DataError, match="no text to train the tokenizer on"):
        Tokenizer.train(texts, vocab_size=50)


def test_a_vocabulary_too_large_for_the_corpus_says_the_limit():
    with pytest.raises(ValueError, match=r"vocab_size 5000 is too large .* at most \d+ pieces"):
        Tokenizer.train(TEXTS, vocab_size=5000)


def test_a_vocabulary_too_small_for_the_characters_says_the_minimum():
    with pytest.raises(ValueError, match=r"vocab_size 10 is too small .* at least \d+"):
        Tokenizer.train(TEXTS, vocab_size=10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vocab_size": 4}, "vocab_size must be > 4"),
    ({"vocab_size": 60, "model_type": "wordpiece"}, "model_type"),
])  # fmt: skip
def test_impossible_options_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Tokenizer.train(TEXTS, **kwargs)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / FILENAME)):
        Tokenizer.load(tmp_path)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DataError, match="garbage.model: not a SentencePiece model"):
        Tokenizer.load(garbage)


def test_a_sentencepiece_model_with_other_special_ids_is_refused(tmp_path):
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXTS), model_writer=writer, vocab_size=50, minloglevel=2
    )  # SentencePiece's defaults: unk 0, bos 1, eos 2, no pad
    path = tmp_path / "other.model"
    path.write_bytes(writer.getvalue())
    with pytest.raises(
        DataError, match=r"other\.model: .*ids \(-1, 1, 2, 0\), expected \(0, 1, 2, 3\)"
    ):
        Tokenizer.load(path)
