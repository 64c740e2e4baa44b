"""Encoded parallel data: building with the length filter, the flat arrays, and the cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from formers.data.corpus import DataError, FilterStats
from formers.data.parallel import EncodedParallel, load_or_build
from formers.data.tokenizer import Tokenizer

from .helpers import multi30k_lines, tiny_pairs, write_lines

PAIRS = tiny_pairs(60)


@pytest.fixture
def files(tmp_path):
    """Line-aligned train files with one empty source and one over-long target."""
    src = [s for s, _ in PAIRS] + ["", "a dog"]
    tgt = [t for _, t in PAIRS] + ["ein hund", " ".join(["große katze"] * 20)]
    return write_lines(tmp_path / "train.en.gz", src), write_lines(tmp_path / "train.de", tgt)


@pytest.fixture
def encodes(monkeypatch):
    """Counts calls of ``Tokenizer.encode_batch``: zero means the data came from the cache."""
    calls = []
    original = Tokenizer.encode_batch

    def counting(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(Tokenizer, "encode_batch", counting)
    return calls


def refuse_to_encode(monkeypatch):
    def fail(self, texts):
        raise AssertionError("encoded again although the cache is valid")

    monkeypatch.setattr(Tokenizer, "encode_batch", fail)


def test_build_encodes_both_sides_and_keeps_them_aligned(tiny_tokenizer):
    data, stats = EncodedParallel.build(PAIRS, tiny_tokenizer, max_len=None, progress=False)
    assert len(data) == len(PAIRS) == stats.kept
    for i in (0, 17, len(PAIRS) - 1):
        assert data.pair(i) == tuple(map(tiny_tokenizer.encode, PAIRS[i]))
    assert data.src_lengths.tolist() == [len(tiny_tokenizer.encode(s)) for s, _ in PAIRS]
    assert data.tgt_lengths.tolist() == [len(tiny_tokenizer.encode(t)) for _, t in PAIRS]
    assert data.src_data.dtype == np.int32 and data.src_offsets.dtype == np.int64


def test_build_drops_and_counts_empty_and_over_long_pairs(tiny_tokenizer):
    pairs = [*PAIRS[:5], ("", "ein hund"), ("a dog", "   "), ("a dog", "die katze " * 30)]
    data, stats = EncodedParallel.build(pairs, tiny_tokenizer, max_len=40, progress=False)
    assert stats == FilterStats(total=8, kept=5, empty=2, too_long=1, max_len=40)
    assert [data.pair(i) for i in range(5)] == [
        tuple(map(tiny_tokenizer.encode, p)) for p in PAIRS[:5]
    ]


def test_build_across_chunks_matches_one_chunk(tiny_tokenizer, monkeypatch):
    whole, _ = EncodedParallel.build(PAIRS, tiny_tokenizer, max_len=None, progress=False)
    monkeypatch.setattr("formers.data.parallel.CHUNK", 7)
    chunked, stats = EncodedParallel.build(PAIRS, tiny_tokenizer, max_len=None, progress=False)
    assert stats.total == len(PAIRS)
    for name in ("src_data", "src_offsets", "tgt_data", "tgt_offsets"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


def test_nothing_to_encode_or_nothing_left_is_an_error(tiny_tokenizer):
    with pytest.raises(DataError, match="no sentence pairs to encode"):
        EncodedParallel.build([], tiny_tokenizer, max_len=10)
    with pytest.raises(DataError, match="no sentence pairs left after filtering: kept 0 of 2"):
        EncodedParallel.build([("", "x"), ("a dog", "")], tiny_tokenizer, max_len=10)


def test_from_ids_and_bad_offsets():
    data = EncodedParallel.from_ids([[4, 5], [6]], [[7], []])
    assert len(data) == 2 and data.pair(1) == ([6], []) and data.pair(-2) == ([4, 5], [7])
    with pytest.raises(IndexError):
        data.pair(2)
    with pytest.raises(ValueError, match="src_offsets must be non-decreasing"):
        EncodedParallel(np.array([4, 5]), np.array([0, 3]), np.array([7]), np.array([0, 1]))


def test_save_and_load_keep_arrays_and_metadata(tmp_path):
    data = EncodedParallel.from_ids([[4, 5], [6]], [[7], [8, 9, 10]])
    data.save(tmp_path / "d.safetensors", {"note": "x"})
    loaded, metadata = EncodedParallel.load(tmp_path / "d.safetensors")
    assert metadata == {"note": "x"}
    assert [loaded.pair(i) for i in range(2)] == [data.pair(i) for i in range(2)]
    assert (tmp_path / "d.safetensors").read_bytes()[8:9] == b"{"  # a safetensors JSON header


def test_cache_is_written_then_reused_without_encoding(
    files, tiny_tokenizer, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    first, stats = load_or_build(*files, tiny_tokenizer, cache, max_len=40, progress=False)
    assert stats == FilterStats(total=62, kept=60, empty=1, too_long=1, max_len=40)
    assert len(list(cache.glob("*.safetensors"))) == 1
    refuse_to_encode(monkeypatch)
    second, cached_stats = load_or_build(*files, tiny_tokenizer, cache, max_len=40)
    assert cached_stats == stats
    assert [second.pair(i) for i in range(len(second))] == [first.pair(i) for i in range(60)]
    again, _ = EncodedParallel.load_or_build(*files, tiny_tokenizer, cache, max_len=40)
    assert len(again) == 60


def test_cache_is_rebuilt_when_a_file_changes(files, tiny_tokenizer, tmp_path, encodes):
    src, tgt = files
    cache = tmp_path / "cache"
    load_or_build(src, tgt, tiny_tokenizer, cache, max_len=40, progress=False)
    n = len(encodes)
    load_or_build(src, tgt, tiny_tokenizer, cache, max_len=40, progress=False)
    assert len(encodes) == n
    lines = (tgt.read_text().splitlines())[:-1] + ["ein kleiner hund"]
    write_lines(tgt, lines)
    os.utime(tgt, ns=(1, 1))  # a different modification time even on a coarse clock
    data, stats = load_or_build(src, tgt, tiny_tokenizer, cache, max_len=40, progress=False)
    assert len(encodes) > n
    assert stats.too_long == 0 and data.pair(len(data) - 1)[1] == tiny_tokenizer.encode(lines[-1])


def test_cache_is_rebuilt_for_another_tokenizer_or_max_len(
    files, tiny_tokenizer, tmp_path, encodes
):
    cache = tmp_path / "cache"
    load_or_build(*files, tiny_tokenizer, cache, max_len=40, progress=False)
    n = len(encodes)
    other = Tokenizer.train([t for p in tiny_pairs() for t in p], vocab_size=45)
    data, _ = load_or_build(*files, other, cache, max_len=40, progress=False)
    assert len(encodes) > n
    assert data.pair(0)[0] == other.encode(PAIRS[0][0])
    n = len(encodes)
    _, stats = load_or_build(*files, tiny_tokenizer, cache, max_len=300, progress=False)
    assert len(encodes) > n and stats.too_long == 0
    assert len(list(cache.glob("*.safetensors"))) == 3


def test_a_corrupt_cache_file_is_rebuilt(files, tiny_tokenizer, tmp_path, encodes):
    cache = tmp_path / "cache"
    load_or_build(*files, tiny_tokenizer, cache, max_len=40, progress=False)
    (path,) = cache.glob("*.safetensors")
    path.write_bytes(b"garbage")
    n = len(encodes)
    data, _ = load_or_build(*files, tiny_tokenizer, cache, max_len=40, progress=False)
    assert len(encodes) > n and len(data) == 60
    assert EncodedParallel.load(path)[1]["key"]  # rewritten


def test_tsv_input_and_no_cache(tiny_tokenizer, tmp_path):
    tsv = write_lines(tmp_path / "pairs.tsv", [f"{s}\t{t}" for s, t in PAIRS])
    data, stats = load_or_build(tsv, None, tiny_tokenizer, None, max_len=None, progress=False)
    assert stats.kept == len(PAIRS) == len(data)
    assert data.pair(3) == tuple(map(tiny_tokenizer.encode, PAIRS[3]))
    assert list(tmp_path.iterdir()) == [tsv]


def test_missing_files_are_named_before_anything_is_encoded(tiny_tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_or_build(tmp_path / "nothere.en", tmp_path / "nothere.de", tiny_tokenizer, tmp_path, 9)


def test_multi30k_validation_set_encodes_and_caches(tmp_path, monkeypatch):
    en = multi30k_lines("tok/val.lc.norm.tok.en.gz", 1014)
    de = multi30k_lines("tok/val.lc.norm.tok.de.gz", 1014)
    tokenizer = Tokenizer.train(en + de, vocab_size=1000)
    src = write_lines(tmp_path / "val.en.gz", en)
    tgt = write_lines(tmp_path / "val.de.gz", de)
    data, stats = load_or_build(src, tgt, tokenizer, tmp_path / "c", max_len=100, progress=False)
    assert stats.kept == len(data) == 1014
    assert tokenizer.decode(data.pair(0)[1]) == " ".join(de[0].split())
    refuse_to_encode(monkeypatch)
    cached, _ = load_or_build(src, tgt, tokenizer, tmp_path / "c", max_len=100)
    np.testing.assert_array_equal(cached.tgt_data, data.tgt_data)
