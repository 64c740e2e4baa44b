"""Monolingual readers and the character tokenizer: strict, with errors that say where."""

import pytest

from formers.data.char_tokenizer import CharTokenizer
from formers.data.corpus import DataError
from formers.data.text import read_labeled, read_text, read_texts, split_text


def test_labeled_tsv_with_header(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("label\tsentence\n1\tgood film\n0\tbad\tstill text\n\n")
    assert read_labeled(f) == ([1, 0], ["good film", "bad\tstill text"])
    assert read_texts(f) == ["good film", "bad\tstill text"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "has no examples"),
        ("label\tsentence\n", "has no examples"),
        ("1\tok\npositive\tgreat\n", r"line 2: the label 'positive' is not an integer"),
        ("1 no tab here\n", "line 1: expected 'label<TAB>text'"),
        ("-1\tneg\n", "labels must be >= 0"),
    ],
)
def test_labeled_errors(tmp_path, content, message):
    f = tmp_path / "bad.tsv"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        read_labeled(f)


def test_text_split_and_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcdefghij\n")
    text = read_text(f)
    assert text == "abcdefghij\n"
    train, valid = split_text(text, 0.1)
    assert train + valid == text and len(valid) == 2  # int(11 * 0.9) = 9
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(DataError, match="is empty"):
        read_text(tmp_path / "e.txt")
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_text(tmp_path / "latin1.txt")


def test_char_tokenizer_round_trip(tmp_path):
    tok = CharTokenizer.train("hello world\n")
    assert tok.vocab_size == len(set("hello world\n"))
    assert tok.chars == sorted(set("hello world\n"))
    ids = tok.encode("low\n")
    assert tok.decode(ids) == "low\n"
    tok.save(tmp_path)
    assert CharTokenizer.load(tmp_path).encode("hello") == tok.encode("hello")
    with pytest.raises(DataError, match="'z' is not in"):
        tok.encode("zoo")
