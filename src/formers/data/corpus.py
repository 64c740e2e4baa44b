"""Parallel corpora from text files: plain or gzipped, one sentence a line, or two-column TSV.

Multi30k's layout (``train.en.gz`` beside ``train.de.gz``) is the model: two line-aligned files.
Reading is strict, so that bad data fails at once with the file and line that caused it instead
of surfacing as odd translations later: bytes that are not UTF-8, files of different lengths and
empty input raise :class:`DataError` (a ``ValueError``, so the command line prints one line).

Filtering happens on token ids (:func:`filter_encoded`), after the tokenizer has seen the text:
"over-long" is a statement about subwords, not characters.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass
from pathlib import Path

Pair = tuple[str, str]


class DataError(ValueError):
    """Input data that cannot be used as given; the message says where and how to fix it."""


def open_text(path: str | Path) -> Iterator[str]:
    """Lines of a plain or gzipped (``.gz``) UTF-8 text file, without their line endings.

    Args:
        path: the file; a name ending in ``.gz`` is decompressed on the fly.

    Returns:
        An iterator over the lines (a leading byte-order mark is dropped).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: a line is not valid UTF-8 (names the file and line), or a ``.gz`` file is
            not valid gzip.
    """
    path = Path(path)
    if not path.is_file():  # checked now, not at the first next()
        raise FileNotFoundError(f"no such file: {path}")
    return _lines(path)


def decode_lines(stream: Iterable[bytes], name: str) -> Iterator[str]:
    """Decode byte lines as strict UTF-8, without line endings or a leading byte-order mark.

    Raises:
        DataError: a line is not valid UTF-8 (the message names ``name`` and the line).
    """
    for number, raw in enumerate(stream, start=1):  # split on b"\n" only, as the files do
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{name}, line {number}: bytes that are not UTF-8 "
                f"({raw[error.start : error.start + 4]!r} at byte {error.start} of the "
                "line); convert the file to UTF-8, e.g. with iconv"
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.rstrip("\r\n")


def _lines(path: Path) -> Iterator[str]:
    number = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            for line in decode_lines(f, str(path)):
                number += 1  # for the error message below
                yield line
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: not a valid gzip file after line {number} ({error}); "
            "re-download it or drop the .gz suffix if it is plain text"
        ) from None


def read_lines(path: str | Path) -> list[str]:
    """All lines of :func:`open_text`; raises :class:`DataError` when there are none."""
    lines = list(open_text(path))
    if not lines:
        raise DataError(f"{path} is empty: expected one sentence a line")
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Sentence pairs from two line-aligned files (line ``i`` of one translates line ``i``).

    Args:
        src_path: source-language file, plain or ``.gz``.
        tgt_path: target-language file, plain or ``.gz``.

    Returns:
        ``(source, target)`` pairs in file order; empty lines are kept (the encoder's filter
        counts and drops them).

    Raises:
        FileNotFoundError: a file does not exist.
        DataError: the files have different line counts (both are named with their counts),
            are empty, or hold bytes that are not UTF-8.
    """
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"parallel files differ in length: {src_path} has {len(src):,} lines but "
            f"{tgt_path} has {len(tgt):,}; line i of one must translate line i of the other"
        )
    return list(zip(src, tgt, strict=True))


def read_tsv(path: str | Path) -> list[Pair]:
    """Sentence pairs from a two-column ``source<TAB>target`` file (plain or ``.gz``).

    A line that is entirely empty is read as an empty pair (and dropped later, counted).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file is empty, a line does not have exactly two columns (names the
            line), or holds bytes that are not UTF-8.
    """
    pairs = []
    for number, line in enumerate(open_text(path), start=1):
        columns = line.split("\t") if line else ["", ""]
        if len(columns) != 2:
            raise DataError(
                f"{path}, line {number}: expected 2 tab-separated columns "
                f"(source<TAB>target), found {len(columns)}"
            )
        pairs.append((columns[0], columns[1]))
    if not pairs:
        raise DataError(f"{path} is empty: expected one source<TAB>target pair a line")
    return pairs


@dataclass(frozen=True)
class FilterStats:
    """What :func:`filter_encoded` kept and dropped.

    Attributes:
        total: pairs seen.
        kept: pairs kept.
        empty: pairs dropped because the source or the target has no tokens.
        too_long: pairs dropped because a side has more than ``max_len`` tokens.
        max_len: the limit applied (``None``: none).
    """

    total: int
    kept: int
    empty: int
    too_long: int
    max_len: int | None

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (for logs and cache metadata)."""
        return asdict(self)

    def __str__(self) -> str:
        limit = f"more than {self.max_len} tokens" if self.max_len is not None else "too long"
        return (
            f"kept {self.kept:,} of {self.total:,} pairs "
            f"(dropped {self.empty:,} empty, {self.too_long:,} with {limit})"
        )


def filter_encoded(
    src_ids: Sequence[Sized], tgt_ids: Sequence[Sized], max_len: int | None
) -> tuple[list[int], FilterStats]:
    """Indices of the encoded pairs to train on: neither side empty nor over ``max_len``.

    Args:
        src_ids: token ids of each source sentence (only the lengths are read).
        tgt_ids: token ids of each target sentence, aligned with ``src_ids``.
        max_len: the most subword tokens a side may have, not counting BOS/EOS;
            ``None`` for no limit.

    Returns:
        The kept indices in order, and the counts of what was dropped. An empty pair is
        counted as empty even when its other side is also too long.
    """
    if len(src_ids) != len(tgt_ids):
        raise ValueError(f"{len(src_ids)} sources but {len(tgt_ids)} targets")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1 (or None for no limit), got {max_len}")
    kept, empty, too_long = [], 0, 0
    limit = max_len if max_len is not None else float("inf")
    for i, (src, tgt) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        n, m = len(src), len(tgt)
        if n == 0 or m == 0:
            empty += 1
        elif n > limit or m > limit:
            too_long += 1
        else:
            kept.append(i)
    stats = FilterStats(len(src_ids), len(kept), empty, too_long, max_len)
    return kept, stats
