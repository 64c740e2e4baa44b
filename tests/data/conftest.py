"""Fixtures of the data tests."""

from __future__ import annotations

import pytest

from formers.data.tokenizer import Tokenizer

from .helpers import tiny_pairs


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    """A 50-piece BPE tokenizer of the tiny corpus (trains in milliseconds)."""
    return Tokenizer.train([t for pair in tiny_pairs() for t in pair], vocab_size=50)
