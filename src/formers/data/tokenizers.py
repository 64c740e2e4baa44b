"""Load whichever tokenizer a directory holds: SentencePiece (``tokenizer.model``), characters
(``chars.json``), Hugging Face ``tokenizers`` (``tokenizer.json``) or the synthetic tasks'
symbols (``symbols.json``).

All four offer ``encode``, ``decode``, ``vocab_size``, ``save(directory)`` and the special ids
their models use (``None`` where a tokenizer has no such token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILES = {
    "tokenizer.model": "sentencepiece",
    "chars.json": "char",
    "tokenizer.json": "wordpiece",
    "symbols.json": "symbols",
}


def tokenizer_kind(directory: str | Path) -> str | None:
    """The kind of tokenizer saved in ``directory``, or ``None``."""
    for name, kind in FILES.items():
        if (Path(directory) / name).is_file():
            return kind
    return None


def load_tokenizer(path: str | Path, kind: str | None = None) -> Any:
    """The tokenizer at ``path`` (a directory, or one of the files above); ``None`` when a
    directory holds none.

    Raises:
        FileNotFoundError: ``path`` names a file that does not exist.
    """
    path = Path(path)
    if path.is_dir():
        kind = kind or tokenizer_kind(path)
        if kind is None:
            return None
    elif not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}")
    else:
        kind = (
            kind or FILES.get(path.name) or ("sentencepiece" if path.suffix == ".model" else None)
        )
        if kind is None:
            raise ValueError(
                f"{path}: not a known tokenizer file (expected one of {', '.join(FILES)})"
            )
    if kind == "sentencepiece":
        from formers.data.tokenizer import Tokenizer

        return Tokenizer.load(path)
    if kind == "char":
        from formers.data.char_tokenizer import CharTokenizer

        return CharTokenizer.load(path)
    if kind == "symbols":
        from formers.data.symbol_tokenizer import SymbolTokenizer

        return SymbolTokenizer.load(path)
    from formers.data.hf_tokenizer import HFTokenizer

    return HFTokenizer.load(path)
