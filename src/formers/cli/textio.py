"""Reading and writing the line-per-sentence text files of ``formers translate`` and ``evaluate``.

Input must be UTF-8: a bad byte is an error that names the file and line rather than a silently
replaced character, which would change the translation or the score.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


def _decode_lines(stream: BinaryIO, name: str) -> list[str]:
    lines = []
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name}, line {number}: bytes that are not UTF-8 ({error.reason} at byte "
                f"{error.start} of the line); convert the file to UTF-8, e.g. with iconv"
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the text
        lines.append(line.rstrip("\r\n"))
    return lines


def read_lines(path: str | Path | None) -> list[str]:
    """The lines of ``path`` (or of stdin when ``None``), without line endings, strict UTF-8.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not valid UTF-8 (the message names the file and the line).
    """
    if path is None:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream without bytes underneath (e.g. io.StringIO)
            return [line.rstrip("\r\n") for line in sys.stdin]
        return _decode_lines(stream, "<stdin>")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open("rb") as stream:
        return _decode_lines(stream, str(path))


def write_lines(lines: Iterable[str], path: str | Path | None) -> None:
    """Write one line each to ``path`` (UTF-8), or to stdout when ``None``."""
    text = "".join(f"{line}\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")
