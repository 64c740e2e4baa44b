"""Reading and writing the line-per-sentence text files of ``formers translate`` and ``evaluate``.

Input must be UTF-8: a bad byte is an error that names the file and line rather than a silently
replaced character, which would change the translation or the score.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from formers.data.corpus import decode_lines, open_text


def read_lines(path: str | Path | None) -> list[str]:
    """The lines of ``path`` (plain or ``.gz``; stdin when ``None``), strict UTF-8.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not valid UTF-8 (the message names the file and the line).
    """
    if path is not None:
        return list(open_text(path))
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream without bytes underneath (e.g. io.StringIO)
        return [line.rstrip("\r\n") for line in sys.stdin]
    return list(decode_lines(stream, "<stdin>"))


def write_lines(lines: Iterable[str], path: str | Path | None) -> None:
    """Write one line each to ``path`` (UTF-8), or to stdout when ``None``."""
    text = "".join(f"{line}\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")
