"""Decoder-only language models: GPT-2 (Radford et al. 2019) and LLaMA-style variants
(Touvron et al. 2023, arXiv 2302.13971), with Hugging Face GPT-2/LLaMA weight interop in
:mod:`formers.models.gpt.convert` (which imports ``transformers`` only when used)."""

from formers.models.gpt.builders import PRESETS, build_gpt, preset_config
from formers.models.gpt.config import GPTConfig

__all__ = ["PRESETS", "GPTConfig", "build_gpt", "preset_config"]
