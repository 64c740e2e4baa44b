"""The synthetic tasks' symbol tokenizer: round trips, errors, and a checkpoint holding it."""

from __future__ import annotations

import json

import pytest
import torch

from formers.data.corpus import DataError
from formers.data.symbol_tokenizer import SymbolTokenizer
from formers.data.synthetic import SyntheticTask
from formers.data.tokenizers import load_tokenizer, tokenizer_kind
from formers.models import TransformerConfig, build_transformer
from formers.training.checkpoint import load_model, save_checkpoint


def test_ids_are_the_synthetic_tasks_ids():
    tok = SymbolTokenizer(10)
    assert tok.vocab_size == SyntheticTask().vocab_size == 13
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, None)
    assert tok.encode("3 1 4 1 5") == [5, 3, 6, 3, 7]
    assert tok.encode("  10\t1\n") == [12, 3]
    assert tok.encode("") == []


def test_round_trip_and_specials():
    tok = SymbolTokenizer(10)
    text = "3 1 4 1 5 9 2 6 10"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([1, 5, 3, 2, 0, 0]) == "3 1"  # specials are skipped
    assert tok.pieces([1, 5, 12, 2, 0]) == ["<s>", "3", "10", "</s>", "<pad>"]
    batch = tok.encode_batch(["1 2", "3"])
    assert batch == [[3, 4], [5]] and tok.decode_batch(batch) == ["1 2", "3"]


def test_matches_the_task_samples():
    task = SyntheticTask("reverse", min_len=3, max_len=6)
    tok = SymbolTokenizer(task.num_symbols)
    batch = task.sample(8, torch.Generator().manual_seed(0))
    for src in batch.src.tolist():
        ids = [i for i in src if i != tok.pad_id]
        assert tok.encode(tok.decode(ids)) == ids


@pytest.mark.parametrize("bad", ["11", "0", "x", "-1", "1.5", "٣"])
def test_unknown_symbol_names_it_and_the_range(bad):
    with pytest.raises(ValueError, match=rf"symbol '{bad}'.*1\.\.10"):
        SymbolTokenizer(10).encode(f"1 2 {bad} 3")


def test_bad_ids_and_sizes():
    with pytest.raises(DataError, match=r"id 13 is outside the vocabulary 0\.\.12"):
        SymbolTokenizer(10).decode([3, 13])
    with pytest.raises(DataError, match="num_symbols"):
        SymbolTokenizer(0)


def test_save_load_and_registry(tmp_path):
    file = SymbolTokenizer(7).save(tmp_path)
    assert file.name == "symbols.json"
    assert json.loads(file.read_text()) == {"kind": "symbols", "num_symbols": 7}
    assert tokenizer_kind(tmp_path) == "symbols"
    for path in (tmp_path, file):
        tok = load_tokenizer(path)
        assert isinstance(tok, SymbolTokenizer) and tok.num_symbols == 7
    file.write_text('{"kind": "char", "chars": ["a"]}')
    with pytest.raises(DataError, match="not a formers symbol vocabulary"):
        SymbolTokenizer.load(tmp_path)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=13, d_model=16, d_ff=32, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, dropout=0.0,
    )  # fmt: skip
    model = build_transformer(config).eval()
    save_checkpoint(tmp_path / "ckpt", model, config.to_dict(), tokenizer=SymbolTokenizer(10))
    loaded, tok, _ = load_model(tmp_path / "ckpt")
    assert isinstance(tok, SymbolTokenizer) and tok.num_symbols == 10
    src = torch.tensor([tok.encode("3 1 4 1 5")])
    tgt = torch.tensor([[tok.bos_id, *tok.encode("5 1 4")]])
    with torch.no_grad():
        assert torch.equal(loaded(src, tgt), model(src, tgt))
    with pytest.raises(ValueError, match="11 tokens but the model's vocabulary has 13"):
        save_checkpoint(tmp_path / "bad", model, config.to_dict(), tokenizer=SymbolTokenizer(8))
