"""Incremental detokenization: the text of a token stream, emitted as the tokens arrive.

Decoding each new token on its own gives wrong text: SentencePiece drops the word-start space
of the first piece it decodes (``"▁world"`` alone is ``"world"``), WordPiece keeps the ``##`` of
a continuation decoded alone, and a UTF-8 character split over several byte tokens decodes to
replacement characters until its last byte arrives. :class:`IncrementalDecoder` instead decodes
a short window of recent tokens twice, with and without the new ones, and emits the difference
(the method of vLLM's ``detokenize_incrementally``), the window reaching back far enough to start
with visible text. The pieces it emits join to the text of all the tokens for SentencePiece and
characters (``tests/inference/test_detokenize.py`` checks both against decoding everything at
once). WordPiece's clean-up of spaces around apostrophes (``it ' s`` -> ``it's``) rewrites text
already emitted, which no stream can take back; its streams may differ there. Text that ends in
U+FFFD (an incomplete character) is held back until the character completes or
:meth:`IncrementalDecoder.flush`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

REPLACEMENT = "\ufffd"


class Decodes(Protocol):
    """What detokenization needs of a tokenizer."""

    def decode(self, ids: Sequence[int]) -> str: ...


class IncrementalDecoder:
    """Turn token ids, given one at a time, into text pieces.

    Args:
        tokenizer: any formers tokenizer (SentencePiece, characters, WordPiece).
        context: token ids before the stream (the prompt); they give the first new token its
            left context (e.g. the space before a SentencePiece word) and are never emitted.
        window: context tokens kept in front of the new ones (vLLM uses 5).
    """

    def __init__(self, tokenizer: Decodes, context: Sequence[int] = (), window: int = 5) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.tokenizer = tokenizer
        self.ids = [int(i) for i in context]
        self._prefix = max(len(self.ids) - window, 0)  # start of the decoded window
        self._read = len(self.ids)  # tokens before this have been emitted

    def _pending(self) -> tuple[str, str]:
        """``(text of the window up to _read, text of the whole window)``."""
        before = self.tokenizer.decode(self.ids[self._prefix : self._read])
        while self._prefix > 0 and not before.strip():
            # SentencePiece strips all leading whitespace from what it decodes, so a window
            # that starts with spaces (or specials, which decode to nothing) would lose them:
            # reach back until the window starts with visible text
            self._prefix -= 1
            before = self.tokenizer.decode(self.ids[self._prefix : self._read])
        return before, self.tokenizer.decode(self.ids[self._prefix :])

    def _emit(self, before: str, text: str) -> str:
        self._prefix, self._read = self._read, len(self.ids)
        return text[len(before) :]

    def push(self, token: int) -> str:
        """Add one token; return the text it completes (often ``""`` for a partial character).

        Returns:
            New text to append to what was returned before.
        """
        self.ids.append(int(token))
        before, text = self._pending()
        if len(text) <= len(before) or text.endswith(REPLACEMENT):
            return ""  # nothing new yet, or a character whose bytes are still arriving
        return self._emit(before, text)

    def flush(self) -> str:
        """The text held back at the end of the stream (an incomplete character, as U+FFFD)."""
        before, text = self._pending()
        if len(text) <= len(before):
            return ""
        return self._emit(before, text)

    def pieces(self, tokens: Iterable[int]) -> Iterator[str]:
        """The non-empty texts of :meth:`push` for each of ``tokens``, then of :meth:`flush`:
        a whole stream, as it arrives."""
        for token in tokens:
            if piece := self.push(token):
                yield piece
        if piece := self.flush():
            yield piece
