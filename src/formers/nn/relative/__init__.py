"""Relative position schemes: positions enter attention as a bias on the scores (one file each,
the paper cited there). Each is a :class:`~formers.nn.position_scheme.PositionScheme` given to
:class:`~formers.nn.attention.MultiHeadAttention` (``positions=``).

- :class:`ShawRelativePosition`: learned key (and value) vectors of clipped distances (Shaw et
  al. 2018);
- :class:`MusicRelativeAttention`: per-head distance embeddings with the memory-saving skew
  (Huang et al. 2018);
- :class:`T5RelativeBias`: a learned scalar per head and distance bucket, shared by a stack
  (Raffel et al. 2020);
- :class:`ALiBi`: fixed linear penalties of the distance per head (Press et al. 2022);
- :class:`XLRelativePosition`: Transformer-XL's sinusoidal relative terms with the global
  ``u``, ``v`` biases (Dai et al. 2019);
- :class:`DisentangledPosition`: DeBERTa's content-to-position and position-to-content terms
  over shared relative embeddings, with log buckets (He et al. 2021).
"""

from formers.nn.relative.alibi import ALiBi, alibi_slopes
from formers.nn.relative.deberta import DisentangledPosition, log_buckets
from formers.nn.relative.music import MusicRelativeAttention, skew
from formers.nn.relative.shaw import ShawRelativePosition
from formers.nn.relative.t5 import T5RelativeBias, t5_buckets
from formers.nn.relative.xl import XLRelativePosition

__all__ = [
    "ALiBi",
    "DisentangledPosition",
    "MusicRelativeAttention",
    "ShawRelativePosition",
    "T5RelativeBias",
    "XLRelativePosition",
    "alibi_slopes",
    "log_buckets",
    "skew",
    "t5_buckets",
]
