"""Incremental detokenization: the pieces emitted token by token join to the text of all tokens
(SentencePiece, characters, and UTF-8 split over byte tokens), where decoding each token alone
does not."""

from __future__ import annotations

import random

import pytest

from formers.data.char_tokenizer import CharTokenizer
from formers.data.tokenizer import Tokenizer
from formers.inference.detokenize import REPLACEMENT, IncrementalDecoder

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "naïve café owners serve crème brûlée",
    "日本語のテキストも少し",
    "unbelievably, tokenization works: 42 × 7 = 294",
] * 4


@pytest.fixture(scope="module")
def spm() -> Tokenizer:
    return Tokenizer.train(TEXTS, 80)


class ByteTokenizer:
    """One token per UTF-8 byte: a character may need several tokens (as byte fallback)."""

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


def stream(tokenizer, prompt, tokens) -> list[str]:
    decoder = IncrementalDecoder(tokenizer, prompt)
    return [decoder.push(t) for t in tokens] + [decoder.flush()]


def expected(tokenizer, prompt, tokens) -> str:
    before, after = tokenizer.decode(prompt), tokenizer.decode(prompt + tokens)
    assert after.startswith(before)
    return after[len(before) :]


def test_sentencepiece_random_sequences_join_to_the_full_decode(spm):
    rng = random.Random(0)
    # lone spaces and specials often: SentencePiece strips leading whitespace of what it decodes
    space = spm.pieces(range(spm.vocab_size)).index("▁")
    tricky = [spm.pad_id, spm.bos_id, spm.eos_id, spm.unk_id, space, space]
    for _ in range(500):
        ids = [
            rng.choice(tricky) if rng.random() < 0.4 else rng.randrange(spm.vocab_size)
            for _ in range(rng.randrange(1, 30))
        ]
        cut = rng.randrange(len(ids))
        prompt, tokens = ids[:cut], ids[cut:]
        assert "".join(stream(spm, prompt, tokens)) == expected(spm, prompt, tokens)


def test_sentencepiece_keeps_the_spaces_that_decoding_one_piece_at_a_time_loses(spm):
    prompt, tokens = spm.encode("the quick"), spm.encode("brown fox jumps")
    pieces = stream(spm, prompt, tokens)
    assert "".join(pieces) == " brown fox jumps"
    assert "".join(spm.decode([t]) for t in tokens) != " brown fox jumps"  # the naive way


def test_characters_multibyte_text_streams_exactly():
    text = "naïve café 日本語 → ok"
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    for cut in range(len(ids)):
        pieces = stream(tok, ids[:cut], ids[cut:])
        assert "".join(pieces) == text[cut:]
        assert all(len(p) <= 1 for p in pieces)


def test_a_character_split_over_byte_tokens_is_held_back_until_complete():
    text = "aé日本😀b"
    ids = list(text.encode("utf-8"))
    pieces = stream(ByteTokenizer(), [], ids)
    assert "".join(pieces) == text
    assert not any(REPLACEMENT in p for p in pieces)
    assert [p for p in pieces if p] == list(text)  # each character once, when complete


def test_flush_gives_an_incomplete_character_as_a_replacement():
    ids = list("a日".encode())[:-1]  # the last byte of 日 never arrives
    pieces = stream(ByteTokenizer(), [], ids)
    assert pieces[-1] == REPLACEMENT
    assert "".join(pieces) == "a" + REPLACEMENT


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        IncrementalDecoder(ByteTokenizer(), window=0)


def test_pieces_are_the_non_empty_texts_of_push_then_flush(spm):
    text = "naïve café, ½ ☃ — déjà vu"
    tokens = list(text.encode("utf-8"))  # multi-byte characters split over several tokens
    byte_pieces = list(IncrementalDecoder(ByteTokenizer()).pieces(tokens))
    assert byte_pieces == [p for p in stream(ByteTokenizer(), [], tokens) if p]
    assert "".join(byte_pieces) == text and len(byte_pieces) < len(tokens)
    prompt, rest = spm.encode("the cat sat"), spm.encode(" on the mat")
    spm_pieces = list(IncrementalDecoder(spm, prompt).pieces(rest))
    assert spm_pieces == [p for p in stream(spm, prompt, rest) if p]
    assert "".join(spm_pieces) == expected(spm, prompt, rest)
