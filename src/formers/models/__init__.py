"""Model families: configs, builders and named presets."""

from formers.models.config_base import ConfigError
from formers.models.transformer import (
    TransformerConfig,
    build_transformer,
    transformer_base,
    transformer_big,
    transformer_tiny,
)

__all__ = [
    "ConfigError",
    "TransformerConfig",
    "build_transformer",
    "transformer_base",
    "transformer_big",
    "transformer_tiny",
]
