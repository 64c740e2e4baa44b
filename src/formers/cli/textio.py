"""Reading and writing the line-per-sentence text files of ``formers translate`` and ``evaluate``.

Input must be UTF-8: a bad byte is an error that names the file and line rather than a silently
replaced character, which would change the translation or the score.
"""

from __future__ import annotations

import os
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


def check_output(path: str | Path | None, flag: str = "--output") -> None:
    """Refuse an output path that :func:`write_lines` could not write, before the work that
    produces the lines (``None``: stdout, always fine).

    Raises:
        FileNotFoundError: its folder does not exist.
        ValueError: it is a directory, or the file (or its folder) is not writable.
    """
    if path is None:
        return
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {path} is a directory; give a file name (e.g. {out / 'out.txt'})")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag} {path}: the folder {folder} does not exist")
    target = out if out.exists() else folder
    if not os.access(target, os.W_OK):
        raise ValueError(f"{flag} {path}: {target} is not writable")


def write_lines(lines: Iterable[str], path: str | Path | None) -> None:
    """Write one line each to ``path`` (UTF-8), or to stdout when ``None``."""
    text = "".join(f"{line}\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")
