"""Data for the data tests: a tiny generated corpus that always exists, and the project's offline
copy of Multi30k (``../shared/data/multi30k``), whose tests skip when it is absent."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

MULTI30K = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"

WORDS_EN = "the a cat dog man woman child sees holds runs with near red blue small big ball"
WORDS_DE = "der die das katze hund mann frau kind sieht hält läuft mit bei rote blaue große"
EN, DE = WORDS_EN.split(), WORDS_DE.split()


def tiny_pairs(n: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """Sentence pairs of random words, already in SentencePiece's normalized form."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        k = rng.randint(2, 9)
        pairs.append((" ".join(rng.choices(EN, k=k)), " ".join(rng.choices(DE, k=k + 1))))
    return pairs


def multi30k_lines(name: str, n: int) -> list[str]:
    """The first ``n`` lines of a Multi30k file, e.g. ``tok/train.lc.norm.tok.en.gz``."""
    path = MULTI30K / name
    if not path.is_file():
        pytest.skip(f"Multi30k is not at {MULTI30K} (the project's offline copy, ../shared/data)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for _, line in zip(range(n), f, strict=False)]


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write lines as UTF-8, gzipped when the name ends in ``.gz``."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
