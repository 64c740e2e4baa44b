"""Transformer-XL (Dai et al. 2019, arXiv 1901.02860): a decoder-only language model with
segment recurrence and relative positions (:mod:`formers.nn.recurrent_lm`)."""

from formers.models.transformer_xl.builders import PRESETS, build_transformer_xl, preset_config
from formers.models.transformer_xl.config import TransformerXLConfig

__all__ = ["PRESETS", "TransformerXLConfig", "build_transformer_xl", "preset_config"]
