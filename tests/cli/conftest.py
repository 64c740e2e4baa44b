"""Tiny checkpoints of each family for the command-line tests, built once per session.

Weights are drawn larger than at initialization so that the models' outputs vary from token to
token and from text to text (a test that compares predictions is then not vacuous).
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

CHAR_TEXT = "hello world, naïve café 日本語 → ok!\n" * 4
SPM_TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "naïve café owners serve crème brûlée",
    "a cat sat on the mat and looked at the dog",
    "unbelievably, tokenization works",
] * 4
BERT_TEXTS = [
    "the movie was wonderful and moving",
    "a dull, tedious film with no heart",
    "the cat sat on the mat",
    "dogs are playing in the park",
    "an unbelievably charming story",
] * 4


def _peaky(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(std=0.4)
    return model.eval()


def _save(directory: Path, model: torch.nn.Module, tokenizer) -> Path:
    save_checkpoint(directory, model, model.config.to_dict(), tokenizer=tokenizer)
    return directory


def gpt_config(vocab_size: int, **overrides) -> GPTConfig:
    values = dict(
        vocab_size=vocab_size, d_model=32, num_layers=2, num_heads=4, d_ff=64, dropout=0.0,
        attention_dropout=0.0, context_length=24,
    )  # fmt: skip
    return GPTConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def char_gpt(tmp_path_factory) -> Path:
    """A character-level GPT (no BOS, no EOS), context 24."""
    tokenizer = CharTokenizer.train(CHAR_TEXT)
    model = _peaky(build_gpt(gpt_config(tokenizer.vocab_size)), 1)
    return _save(tmp_path_factory.mktemp("char_gpt") / "ckpt", model, tokenizer)


@pytest.fixture(scope="session")
def spm_gpt(tmp_path_factory) -> Path:
    """A SentencePiece GPT with BOS and EOS (a LLaMA-like shape)."""
    tokenizer = Tokenizer.train(SPM_TEXTS, 80)
    cfg = gpt_config(
        tokenizer.vocab_size, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id, activation="swiglu", norm="rmsnorm", positions="rotary",
        tie_output=False, bias=False,
    )  # fmt: skip
    model = _peaky(build_gpt(cfg), 2)
    return _save(tmp_path_factory.mktemp("spm_gpt") / "ckpt", model, tokenizer)


@pytest.fixture(scope="session")
def wordpiece() -> HFTokenizer:
    return HFTokenizer.train_wordpiece(BERT_TEXTS, 90)


def bert_config(tokenizer: HFTokenizer, **overrides) -> BertConfig:
    values = dict(
        vocab_size=tokenizer.vocab_size, d_model=32, num_layers=2, num_heads=4, d_ff=64,
        dropout=0.0, attention_dropout=0.0, max_positions=64, pad_id=tokenizer.pad_id,
        cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, mask_id=tokenizer.mask_id,
        unk_id=tokenizer.unk_id,
    )  # fmt: skip
    return BertConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def bert_classifier(tmp_path_factory, wordpiece) -> Path:
    """A BERT with a 3-class classification head."""
    model = _peaky(build_bert(bert_config(wordpiece, num_labels=3)), 3)
    return _save(tmp_path_factory.mktemp("bert_cls") / "ckpt", model, wordpiece)


@pytest.fixture(scope="session")
def bert_mlm(tmp_path_factory, wordpiece) -> Path:
    """A BERT with a masked LM head."""
    model = _peaky(build_bert(bert_config(wordpiece, mlm_head=True)), 4)
    return _save(tmp_path_factory.mktemp("bert_mlm") / "ckpt", model, wordpiece)


@pytest.fixture(scope="session")
def bert_body(tmp_path_factory, wordpiece) -> Path:
    """A BERT body without a head."""
    model = _peaky(build_bert(bert_config(wordpiece)), 5)
    return _save(tmp_path_factory.mktemp("bert_body") / "ckpt", model, wordpiece)


@pytest.fixture(scope="session")
def spm_translator(tmp_path_factory) -> Path:
    """An encoder-decoder with a SentencePiece tokenizer and learned positions (64)."""
    tokenizer = Tokenizer.train(SPM_TEXTS, 80)
    cfg = TransformerConfig(
        vocab_size=tokenizer.vocab_size, d_model=32, d_ff=64, num_heads=4,
        num_encoder_layers=2, num_decoder_layers=2, dropout=0.0, positions="learned",
        max_positions=64, pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
    )  # fmt: skip
    model = _peaky(build_transformer(cfg), 6)
    return _save(tmp_path_factory.mktemp("translator") / "ckpt", model, tokenizer)
