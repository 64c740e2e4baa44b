"""The encoder-decoder Transformer of "Attention Is All You Need" (arXiv 1706.03762)."""

from formers.models.transformer.builders import (
    PRESETS,
    build_transformer,
    preset_config,
    transformer_base,
    transformer_big,
    transformer_tiny,
)
from formers.models.transformer.config import TransformerConfig

__all__ = [
    "PRESETS",
    "TransformerConfig",
    "build_transformer",
    "preset_config",
    "transformer_base",
    "transformer_big",
    "transformer_tiny",
]
