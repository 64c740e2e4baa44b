"""Encoded parallel data: flat token arrays and their on-disk cache.

Sentence pairs are encoded once into four arrays (ids and offsets for each side), which load in
milliseconds and cost 4 bytes a token. The cache holds only arrays (safetensors, never pickle),
keyed by the input files' paths, sizes and modification times, the tokenizer's fingerprint and
``max_len``: change any of them and the data is encoded again.

Batching and collation live in :mod:`formers.data.batching` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from formers.data.batching import TokenBatchSampler, collate
from formers.data.corpus import (
    DataError,
    FilterStats,
    Pair,
    filter_encoded,
    read_parallel,
    read_tsv,
)
from formers.data.tokenizer import Tokenizer

__all__ = [
    "EncodedParallel",
    "TokenBatchSampler",
    "cache_key",
    "collate",
    "load_or_build",
]

CACHE_FORMAT = 1
CHUNK = 16_384  # pairs encoded per call: bounds memory, keeps the progress bar moving


class EncodedParallel:
    """Token ids of sentence pairs, stored flat: pair ``i``'s source is
    ``src_data[src_offsets[i]:src_offsets[i + 1]]`` (int32 ids, int64 offsets), likewise target.
    """

    def __init__(
        self,
        src_data: np.ndarray,
        src_offsets: np.ndarray,
        tgt_data: np.ndarray,
        tgt_offsets: np.ndarray,
    ) -> None:
        self.src_data, self.tgt_data = (np.asarray(a, dtype=np.int32) for a in (src_data, tgt_data))
        self.src_offsets, self.tgt_offsets = (
            np.asarray(a, dtype=np.int64) for a in (src_offsets, tgt_offsets)
        )
        for name, data, offsets in (
            ("src", self.src_data, self.src_offsets),
            ("tgt", self.tgt_data, self.tgt_offsets),
        ):
            if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0:
                raise ValueError(f"{name}_offsets must be 1-D and start at 0")
            if offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
                raise ValueError(f"{name}_offsets must be non-decreasing and end at len(data)")
        if len(self.src_offsets) != len(self.tgt_offsets):
            raise ValueError("source and target must hold the same number of sentences")
        self.src_lengths: np.ndarray = np.diff(self.src_offsets)  # (n,) tokens, no BOS/EOS
        self.tgt_lengths: np.ndarray = np.diff(self.tgt_offsets)

    def __len__(self) -> int:
        return len(self.src_lengths)

    def pair(self, i: int) -> tuple[list[int], list[int]]:
        """Source and target token ids of pair ``i`` (no BOS/EOS)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair {i} out of range for {len(self)} pairs")
        i %= len(self)
        src = self.src_data[self.src_offsets[i] : self.src_offsets[i + 1]]
        tgt = self.tgt_data[self.tgt_offsets[i] : self.tgt_offsets[i + 1]]
        return src.tolist(), tgt.tolist()

    @classmethod
    def from_ids(
        cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]
    ) -> EncodedParallel:
        """Pack aligned lists of token ids (no filtering)."""
        return cls(*_pack(src_ids), *_pack(tgt_ids))

    @classmethod
    def build(
        cls,
        pairs: Sequence[Pair],
        tokenizer: Tokenizer,
        max_len: int | None,
        *,
        progress: bool = True,
    ) -> tuple[EncodedParallel, FilterStats]:
        """Encode sentence pairs, dropping empty and over-long ones.

        Args:
            pairs: ``(source, target)`` sentences.
            tokenizer: the joint tokenizer.
            max_len: the most tokens a side may have (no BOS/EOS); ``None`` for no limit.
            progress: show a progress bar (only when encoding takes over a second).

        Returns:
            The kept pairs, encoded, and the counts of what was dropped.

        Raises:
            DataError: there are no pairs, or none is left after filtering.
        """
        if not pairs:
            raise DataError("no sentence pairs to encode")
        parts, stats = [], []
        bar = tqdm(total=len(pairs), desc="encoding", unit=" pairs", disable=not progress, delay=1)
        with bar:
            for start in range(0, len(pairs), CHUNK):
                chunk = pairs[start : start + CHUNK]
                src = tokenizer.encode_batch([s for s, _ in chunk])
                tgt = tokenizer.encode_batch([t for _, t in chunk])
                kept, chunk_stats = filter_encoded(src, tgt, max_len)
                parts.append(cls.from_ids([src[i] for i in kept], [tgt[i] for i in kept]))
                stats.append(chunk_stats)
                bar.update(len(chunk))
        total = FilterStats(*(sum(getattr(s, f) for s in stats) for f in _COUNTS), max_len)
        if total.kept == 0:
            raise DataError(f"no sentence pairs left after filtering: {total}")
        return _concat(parts), total

    @classmethod
    def load_or_build(cls, *args, **kwargs) -> tuple[EncodedParallel, FilterStats]:
        """The module function :func:`load_or_build`, reachable from the class too."""
        return load_or_build(*args, **kwargs)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write the arrays to a safetensors file atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        save_file(arrays, str(tmp), metadata=metadata)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> tuple[EncodedParallel, dict[str, str]]:
        """Read a file written by :meth:`save`; returns the data and its metadata."""
        with safe_open(str(path), framework="numpy") as f:
            arrays = {name: f.get_tensor(name) for name in _ARRAYS}
            metadata = f.metadata() or {}
        return cls(**arrays), metadata


_ARRAYS = ("src_data", "src_offsets", "tgt_data", "tgt_offsets")
_COUNTS = ("total", "kept", "empty", "too_long")


def _pack(ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.fromiter((i for seq in ids for i in seq), dtype=np.int32, count=int(offsets[-1]))
    return data, offsets


def _concat(parts: list[EncodedParallel]) -> EncodedParallel:
    def join(data: str, offsets: str) -> tuple[np.ndarray, np.ndarray]:
        starts = np.cumsum([0] + [len(getattr(p, data)) for p in parts[:-1]])
        joined = [getattr(p, offsets)[1:] + s for p, s in zip(parts, starts, strict=True)]
        return (
            np.concatenate([getattr(p, data) for p in parts]),
            np.concatenate([np.zeros(1, np.int64), *joined]),
        )

    return EncodedParallel(*join("src_data", "src_offsets"), *join("tgt_data", "tgt_offsets"))


def cache_key(
    src_path: str | Path, tgt_path: str | Path | None, tokenizer: Tokenizer, max_len: int | None
) -> str:
    """SHA-256 over what the encoded data depends on: the files (resolved path, size,
    modification time), the tokenizer's fingerprint and ``max_len``."""
    files = []
    for path in (src_path, tgt_path):
        if path is not None:
            path = Path(path).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            stat = path.stat()
            files.append([str(path), stat.st_size, stat.st_mtime_ns])
    key = {
        "format": CACHE_FORMAT,
        "files": files,
        "tokenizer": tokenizer.fingerprint(),
        "max_len": max_len,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def load_or_build(
    src_path: str | Path,
    tgt_path: str | Path | None,
    tokenizer: Tokenizer,
    cache_dir: str | Path | None,
    max_len: int | None,
    *,
    progress: bool = True,
) -> tuple[EncodedParallel, FilterStats]:
    """Encoded pairs of two line-aligned files (or one TSV file), from the cache when it is valid.

    Args:
        src_path: source file, plain or ``.gz``; with ``tgt_path=None``, a ``source<TAB>target``
            file.
        tgt_path: target file aligned with ``src_path``, or ``None``.
        tokenizer: the joint tokenizer.
        cache_dir: where encoded data is kept (created if needed); ``None`` disables the cache.
        max_len: the most tokens a side may have (no BOS/EOS); ``None`` for no limit.
        progress: show a progress bar while encoding.

    Returns:
        The encoded pairs and the filter counts (also stored in, and read back from, the cache).
    """
    key = cache_key(src_path, tgt_path, tokenizer, max_len)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{Path(src_path).name}.{key[:16]}.safetensors"
        if cache.is_file():
            try:
                data, metadata = EncodedParallel.load(cache)
                if metadata.get("key") == key:
                    return data, FilterStats(**json.loads(metadata["stats"]))
            except (SafetensorError, OSError, KeyError, ValueError, TypeError):
                pass  # unreadable or stale: encode again and overwrite it
    pairs = read_parallel(src_path, tgt_path) if tgt_path is not None else read_tsv(src_path)
    data, stats = EncodedParallel.build(pairs, tokenizer, max_len, progress=progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        data.save(cache, {"key": key, "stats": json.dumps(stats.to_dict())})
    return data, stats
