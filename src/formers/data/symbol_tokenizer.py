"""The tokenizer of the synthetic tasks (:mod:`formers.data.synthetic`): symbols <-> ids.

Text is whitespace-separated symbols, e.g. ``"3 1 4 1 5"``; symbol ``i`` (1-based) has id
``i + 2`` after the three specials (0 padding, 1 BOS, 2 EOS), the ids the tasks generate. It lets
a model trained by ``formers demo`` be saved as an ordinary checkpoint and read by
``formers translate``, ``formers attention`` and ``formers serve``. A symbol outside
``1..num_symbols`` is refused with the symbol and the valid range named.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from formers.data.corpus import DataError
from formers.data.synthetic import BOS, EOS, NUM_SPECIAL, PAD

FILE = "symbols.json"
KIND = "symbols"
SPECIAL_PIECES = {PAD: "<pad>", BOS: "<s>", EOS: "</s>"}


class SymbolTokenizer:
    """Symbols ``1..num_symbols`` <-> ids ``3..num_symbols + 2``.

    Args:
        num_symbols: how many symbols the task uses (the demo: 10).
    """

    pad_id = PAD
    bos_id = BOS
    eos_id = EOS
    unk_id = None

    def __init__(self, num_symbols: int = 10) -> None:
        if isinstance(num_symbols, bool) or not isinstance(num_symbols, int) or num_symbols < 1:
            raise DataError(f"num_symbols must be a positive int, got {num_symbols!r}")
        self.num_symbols = num_symbols

    @classmethod
    def load(cls, path: str | Path) -> SymbolTokenizer:
        """From ``symbols.json`` (or a directory holding it).

        Raises:
            FileNotFoundError: there is no such file.
            DataError: the file is not a formers symbol vocabulary.
        """
        path = Path(path)
        file = path / FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no symbol vocabulary at {file}")
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DataError(f"{file} is not valid JSON: {error}") from None
        if not isinstance(values, dict) or values.get("kind") != KIND:
            raise DataError(f'{file} is not a formers symbol vocabulary (no "kind": "{KIND}")')
        try:
            return cls(values.get("num_symbols"))
        except DataError as error:
            raise DataError(f"{file}: {error}") from None

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/symbols.json``; return its path."""
        file = Path(directory) / FILE
        file.write_text(json.dumps({"kind": KIND, "num_symbols": self.num_symbols}) + "\n")
        return file

    @property
    def vocab_size(self) -> int:
        """Symbols plus the three specials."""
        return self.num_symbols + NUM_SPECIAL

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated symbols of ``text``, without BOS or EOS.

        Raises:
            DataError: a symbol is not an integer in ``1..num_symbols``.
        """
        ids = []
        for symbol in text.split():
            value = int(symbol) if symbol.isdecimal() and symbol.isascii() else 0
            if not 1 <= value <= self.num_symbols:
                raise DataError(
                    f"symbol {symbol!r} is not in this model's vocabulary: symbols are the "
                    f'integers 1..{self.num_symbols}, separated by spaces (e.g. "3 1 4 1 5")'
                )
            ids.append(value + NUM_SPECIAL - 1)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode` for many texts."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """The symbols of ``ids`` separated by spaces; pad, BOS and EOS are dropped."""
        return " ".join(p for i, p in zip(ids, self.pieces(ids), strict=True) if i >= NUM_SPECIAL)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """:meth:`decode` for many sequences."""
        return [self.decode(ids) for ids in batch]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The symbol of each id, specials as ``<pad>``, ``<s>`` and ``</s>`` (attention labels).

        Raises:
            DataError: an id is outside the vocabulary.
        """
        out = []
        for i in map(int, ids):
            if not 0 <= i < self.vocab_size:
                raise DataError(f"id {i} is outside the vocabulary 0..{self.vocab_size - 1}")
            out.append(SPECIAL_PIECES.get(i) or str(i - NUM_SPECIAL + 1))
        return out

    def __repr__(self) -> str:
        return f"SymbolTokenizer(num_symbols={self.num_symbols})"
