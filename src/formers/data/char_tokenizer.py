"""A character-level tokenizer: one id per distinct character of the training text.

This is the tokenizer of char-rnn and nanoGPT's ``shakespeare_char`` (65 symbols for Tiny
Shakespeare): the vocabulary is the sorted set of characters, with no special tokens, so that
losses are comparable with those published. Text with a character outside the vocabulary is
refused with the character named (a character model cannot represent it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from formers.data.corpus import DataError

FILE = "chars.json"


class CharTokenizer:
    """Characters <-> ids.

    Args:
        chars: the vocabulary, one character per id (no duplicates).
    """

    pad_id = None
    bos_id = None
    eos_id = None

    def __init__(self, chars: Sequence[str]) -> None:
        if not chars:
            raise DataError("a character vocabulary needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise DataError("a character vocabulary must list distinct single characters")
        self.chars = list(chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The sorted set of characters of ``text``."""
        if not text:
            raise DataError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """From ``chars.json`` (or a directory holding it)."""
        path = Path(path)
        file = path / FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no character vocabulary at {file}")
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{file} is not valid JSON: {error}") from None
        if not isinstance(values, dict) or not isinstance(values.get("chars"), list):
            raise DataError(f"{file} is not a formers character vocabulary")
        try:
            return cls(values["chars"])
        except DataError as error:
            raise DataError(f"{file}: {error}") from None

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/chars.json``; return its path."""
        file = Path(directory) / FILE
        file.write_text(json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False))
        return file

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as error:
            raise DataError(
                f"character {error.args[0]!r} is not in this model's {self.vocab_size}-character "
                "vocabulary"
            ) from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.chars[i] for i in ids]

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
