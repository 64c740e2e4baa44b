"""Monolingual data: a text file for language modelling, ``label<TAB>text`` files for
classification, one text per line for masked language modelling.

Reading is strict like :mod:`formers.data.corpus`: missing files, bytes that are not UTF-8, empty
input and labels that are not integers raise :class:`~formers.data.corpus.DataError` naming the
file and line.
"""

from __future__ import annotations

from pathlib import Path

from formers.data.corpus import DataError, open_text

HEADER_LABELS = ("label",)


def read_text(path: str | Path) -> str:
    """The whole (plain or gzipped) file as one string, lines joined with ``\\n``.

    Raises:
        DataError: the file is empty or not UTF-8.
    """
    lines = list(open_text(path))
    text = "\n".join(lines) + ("\n" if lines else "")
    if not text.strip():
        raise DataError(f"{path} is empty: a language model needs text to train on")
    return text


def split_text(text: str, valid_fraction: float) -> tuple[str, str]:
    """The first ``1 - valid_fraction`` of the characters and the rest (nanoGPT's split)."""
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    cut = int(len(text) * (1.0 - valid_fraction))
    return text[:cut], text[cut:]


def read_labeled(path: str | Path) -> tuple[list[int], list[str]]:
    """``label<TAB>text`` lines (an optional header whose first column is ``label``).

    Returns:
        ``(labels, texts)``.

    Raises:
        DataError: no examples, a line without a tab, or a label that is not an integer >= 0
            (the message names the file, the line and the value).
    """
    labels: list[int] = []
    texts: list[str] = []
    for number, line in enumerate(open_text(path), start=1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if number == 1 and label.strip().lower() in HEADER_LABELS:
            continue
        if not sep:
            raise DataError(f"{path}, line {number}: expected 'label<TAB>text', found no tab")
        try:
            value = int(label)
        except ValueError:
            raise DataError(
                f"{path}, line {number}: the label {label!r} is not an integer "
                "(classification files are 'label<TAB>text' with labels 0, 1, ...)"
            ) from None
        if value < 0:
            raise DataError(f"{path}, line {number}: labels must be >= 0, got {value}")
        labels.append(value)
        texts.append(text)
    if not labels:
        raise DataError(f"{path} has no examples (expected 'label<TAB>text' lines)")
    return labels, texts


def read_texts(path: str | Path) -> list[str]:
    """Non-empty lines; for a ``.tsv`` file, the text after the first tab (labels ignored).

    Raises:
        DataError: no non-empty line.
    """
    name = str(path).removesuffix(".gz")
    if name.endswith(".tsv"):
        rows = [line.partition("\t") for line in open_text(path)]
        if rows and rows[0][0].strip().lower() in HEADER_LABELS:
            rows = rows[1:]
        texts = [text for _, _, text in rows if text.strip()]
    else:
        texts = [line for line in open_text(path) if line.strip()]
    if not texts:
        raise DataError(f"{path} has no text")
    return texts
