"""Inference: translate sentences with a trained model (batching by length, beam search)."""

from formers.inference.translate import Translation, translate

__all__ = ["Translation", "translate"]
