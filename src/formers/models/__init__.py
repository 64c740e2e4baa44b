"""Model families: configs, builders and named presets.

``transformer`` (encoder-decoder), ``gpt`` (decoder-only) and ``bert`` (encoder-only); see
:mod:`formers.models.registry`.
"""

from formers.models.bert import BertConfig, build_bert
from formers.models.config_base import ConfigError
from formers.models.gpt import GPTConfig, build_gpt
from formers.models.transformer import (
    TransformerConfig,
    build_transformer,
    transformer_base,
    transformer_big,
    transformer_tiny,
)

__all__ = [
    "BertConfig",
    "ConfigError",
    "GPTConfig",
    "TransformerConfig",
    "build_bert",
    "build_gpt",
    "build_transformer",
    "transformer_base",
    "transformer_big",
    "transformer_tiny",
]
