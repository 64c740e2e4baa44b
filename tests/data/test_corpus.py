"""Reading corpora (plain, gzip, TSV), the errors for bad input, and the length filter."""

from __future__ import annotations

import gzip

import pytest

from formers.data.corpus import (
    DataError,
    FilterStats,
    filter_encoded,
    open_text,
    read_parallel,
    read_tsv,
)

from .helpers import MULTI30K, write_lines


def test_plain_file_lines_lose_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffone\r\ntwo  \n\nthree".encode())
    assert list(open_text(path)) == ["one", "two  ", "", "three"]


def test_gzip_file_is_decompressed(tmp_path):
    path = write_lines(tmp_path / "a.de.gz", ["Ein Hund läuft.", "Zwei Katzen."])
    assert list(open_text(path)) == ["Ein Hund läuft.", "Zwei Katzen."]


def test_read_parallel_pairs_lines_in_order(tmp_path):
    src = write_lines(tmp_path / "train.en.gz", ["a dog", "", "two cats"])
    tgt = write_lines(tmp_path / "train.de", ["ein hund", "leer", "zwei katzen"])
    assert read_parallel(src, tgt) == [
        ("a dog", "ein hund"),
        ("", "leer"),
        ("two cats", "zwei katzen"),
    ]


def test_read_tsv_splits_two_columns_and_reads_blank_lines_as_empty_pairs(tmp_path):
    path = write_lines(tmp_path / "pairs.tsv.gz", ["a dog\tein hund", "", "cats\t"])
    assert read_tsv(path) == [("a dog", "ein hund"), ("", ""), ("cats", "")]


def test_read_tsv_names_the_line_with_the_wrong_number_of_columns(tmp_path):
    path = write_lines(tmp_path / "pairs.tsv", ["a\tb", "a\tb\tc"])
    with pytest.raises(DataError, match=r"pairs\.tsv, line 2: expected 2 tab-separated columns.*3"):
        read_tsv(path)


def test_missing_file_is_named(tmp_path):
    present = write_lines(tmp_path / "present.en", ["x"])
    with pytest.raises(FileNotFoundError, match="missing.de"):
        read_parallel(present, tmp_path / "missing.de")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_tsv(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        open_text(tmp_path / "missing.txt")  # at the call, not at the first line


def test_different_line_counts_name_both_files_and_counts(tmp_path):
    src = write_lines(tmp_path / "train.en", ["a", "b", "c"])
    tgt = write_lines(tmp_path / "train.de.gz", ["x", "y"])
    with pytest.raises(DataError) as error:
        read_parallel(src, tgt)
    message = str(error.value)
    assert str(src) in message and str(tgt) in message
    assert "has 3 lines" in message and "has 2" in message


@pytest.mark.parametrize("name", ["empty.en", "empty.en.gz"])
def test_empty_input_is_an_error(tmp_path, name):
    empty = write_lines(tmp_path / name, [])
    other = write_lines(tmp_path / "other.de", [])
    with pytest.raises(DataError, match="empty"):
        read_parallel(empty, other)
    with pytest.raises(DataError, match="empty"):
        read_tsv(empty)


@pytest.mark.parametrize("name", ["latin1.de", "latin1.de.gz"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path, name):
    data = "gut\nschön\n".encode("latin-1")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(DataError, match=rf"{name}, line 2: bytes that are not UTF-8"):
        list(open_text(path))


def test_a_corrupt_gzip_file_is_a_data_error(tmp_path):
    path = tmp_path / "broken.en.gz"
    path.write_bytes(gzip.compress(b"one\ntwo\n" * 1000)[:-40])  # truncated
    with pytest.raises(DataError, match="broken.en.gz: not a valid gzip file"):
        list(open_text(path))


def test_data_errors_are_value_errors_so_the_cli_prints_one_line():
    assert issubclass(DataError, ValueError)


def test_filter_counts_empty_and_over_long_pairs():
    src = [[5], [], [5] * 4, [5, 6], [5] * 9, []]
    tgt = [[7], [7], [], [7] * 5, [7], [7] * 9]
    kept, stats = filter_encoded(src, tgt, max_len=4)
    assert kept == [0]
    assert stats == FilterStats(total=6, kept=1, empty=3, too_long=2, max_len=4)
    assert str(stats) == "kept 1 of 6 pairs (dropped 3 empty, 2 with more than 4 tokens)"
    assert stats.to_dict()["too_long"] == 2


def test_filter_without_a_length_limit_drops_only_empty_pairs():
    kept, stats = filter_encoded([[1] * 500, []], [[2] * 700, [2]], max_len=None)
    assert kept == [0]
    assert (stats.empty, stats.too_long) == (1, 0)


def test_filter_rejects_a_limit_below_one():
    with pytest.raises(ValueError, match="max_len"):
        filter_encoded([[1]], [[1]], max_len=0)


def test_multi30k_train_reads_29000_pairs():
    src, tgt = MULTI30K / "train.en.gz", MULTI30K / "train.de.gz"
    if not src.is_file():
        pytest.skip(f"Multi30k is not at {MULTI30K} (the project's offline copy, ../shared/data)")
    pairs = read_parallel(src, tgt)
    assert len(pairs) == 29000
    assert pairs[0][0].startswith("Two young, White males")
