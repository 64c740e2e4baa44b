"""Search over a model's step function: greedy, beam search, sampling (all with a KV cache)."""

from formers.decoding.base import Decodable, DecodeOutput, Hypothesis, max_lengths
from formers.decoding.beam_search import (
    LENGTH_PENALTIES,
    beam_search,
    gnmt_length_penalty,
    length_penalty,
    power_length_penalty,
)
from formers.decoding.sequential import filter_logits, greedy_search, sample

__all__ = [
    "Decodable",
    "DecodeOutput",
    "Hypothesis",
    "LENGTH_PENALTIES",
    "beam_search",
    "filter_logits",
    "gnmt_length_penalty",
    "greedy_search",
    "length_penalty",
    "max_lengths",
    "power_length_penalty",
    "sample",
]
