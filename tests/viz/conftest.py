"""Tiny models of the three families and their tokenizers, built once per session.

Weights are drawn larger than at initialization so that attention is far from uniform.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from formers.data.char_tokenizer import CharTokenizer
from formers.data.hf_tokenizer import HFTokenizer
from formers.data.tokenizer import Tokenizer
from formers.models import TransformerConfig, build_transformer
from formers.models.bert import BertConfig, build_bert
from formers.models.gpt import GPTConfig, build_gpt
from formers.training.checkpoint import save_checkpoint

PAIRS = [
    ("the cat sat on the mat", "die katze sitzt auf der matte"),
    ("a dog runs in the park", "ein hund rennt im park"),
    ("two men are playing football", "zwei männer spielen fußball"),
    ("a woman reads a book", "eine frau liest ein buch"),
]
CHAR_TEXT = "hello world, the cat sat on the mat\n" * 3
BERT_TEXTS = ["the movie was wonderful", "a dull film", "the cat sat on the mat"] * 4


def _peaky(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
    return model.eval()


@pytest.fixture(scope="session")
def spm() -> Tokenizer:
    return Tokenizer.train([text for pair in PAIRS for text in pair] * 3, 48)


@pytest.fixture(scope="session")
def transformer(spm):
    cfg = TransformerConfig(
        vocab_size=spm.vocab_size, d_model=16, d_ff=32, num_heads=2, num_encoder_layers=2,
        num_decoder_layers=2, dropout=0.0, pad_id=spm.pad_id, bos_id=spm.bos_id,
        eos_id=spm.eos_id,
    )  # fmt: skip
    return _peaky(build_transformer(cfg), 0)


@pytest.fixture(scope="session")
def transformer_checkpoint(tmp_path_factory, transformer, spm) -> Path:
    directory = tmp_path_factory.mktemp("viz_transformer") / "ckpt"
    save_checkpoint(directory, transformer, transformer.config.to_dict(), tokenizer=spm)
    return directory


@pytest.fixture(scope="session")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train(CHAR_TEXT)


@pytest.fixture(scope="session")
def gpt(char_tokenizer):
    cfg = GPTConfig(
        vocab_size=char_tokenizer.vocab_size, d_model=16, num_layers=2, num_heads=2, d_ff=32,
        dropout=0.0, attention_dropout=0.0, context_length=32,
    )  # fmt: skip
    return _peaky(build_gpt(cfg), 1)


@pytest.fixture(scope="session")
def gpt_checkpoint(tmp_path_factory, gpt, char_tokenizer) -> Path:
    directory = tmp_path_factory.mktemp("viz_gpt") / "ckpt"
    save_checkpoint(directory, gpt, gpt.config.to_dict(), tokenizer=char_tokenizer)
    return directory


@pytest.fixture(scope="session")
def wordpiece() -> HFTokenizer:
    return HFTokenizer.train_wordpiece(BERT_TEXTS, 60)


@pytest.fixture(scope="session")
def bert(wordpiece):
    cfg = BertConfig(
        vocab_size=wordpiece.vocab_size, d_model=16, num_layers=2, num_heads=2, d_ff=32,
        dropout=0.0, attention_dropout=0.0, max_positions=32, pad_id=wordpiece.pad_id,
        cls_id=wordpiece.cls_id, sep_id=wordpiece.sep_id, mask_id=wordpiece.mask_id,
        unk_id=wordpiece.unk_id, num_labels=2,
    )  # fmt: skip
    return _peaky(build_bert(cfg), 2)
