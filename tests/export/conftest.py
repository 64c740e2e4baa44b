"""The export tests' trained translation checkpoints, one per option set."""

from __future__ import annotations

from pathlib import Path

import pytest

from formers.data.symbol_tokenizer import SymbolTokenizer

from .helpers import TASK, TRANSLATION_OPTIONS, save, trained_translator


@pytest.fixture(scope="session", params=sorted(TRANSLATION_OPTIONS))
def translator_checkpoint(request, tmp_path_factory) -> Path:
    model = trained_translator(TRANSLATION_OPTIONS[request.param])
    directory = tmp_path_factory.mktemp(f"translator_{request.param}") / "ckpt"
    return save(directory, model, SymbolTokenizer(TASK.num_symbols))
