"""T5 (Raffel et al. 2020, arXiv 1910.10683): the encoder-decoder with relative position buckets,
built from :mod:`formers.nn`, with Hugging Face ``T5ForConditionalGeneration`` interop in
:mod:`formers.models.t5.convert` (which imports ``transformers`` only when used)."""

from formers.models.t5.builders import PRESETS, build_t5, preset_config
from formers.models.t5.config import T5Config

__all__ = ["PRESETS", "T5Config", "build_t5", "preset_config"]
