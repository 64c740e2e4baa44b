"""BERT, the encoder-only Transformer (Devlin et al. 2018, arXiv 1810.04805), and its Hugging Face
interop (``formers.models.bert.convert``, which needs ``pip install 'formers[hf]'``)."""

from formers.models.bert.builders import (
    PRESETS,
    AnyBert,
    bert_base,
    bert_mini,
    bert_tiny,
    build_bert,
    init_bert_weights,
    preset_config,
)
from formers.models.bert.config import BERT_VOCAB_IDS, BertConfig

__all__ = [
    "BERT_VOCAB_IDS",
    "PRESETS",
    "AnyBert",
    "BertConfig",
    "bert_base",
    "bert_mini",
    "bert_tiny",
    "build_bert",
    "init_bert_weights",
    "preset_config",
]
