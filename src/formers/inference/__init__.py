"""Inference: translate with an encoder-decoder; generate text with a language model."""

from formers.inference.generate import generate, generate_stream
from formers.inference.layout import use_inference_layout, use_standard_layout
from formers.inference.translate import Translation, translate

__all__ = [
    "Translation",
    "generate",
    "generate_stream",
    "translate",
    "use_inference_layout",
    "use_standard_layout",
]
