"""Position schemes: how positions enter attention.

The paper adds absolute positions to the input embeddings (:mod:`formers.nn.positional`); most
of the family puts them inside attention instead, in one of two ways:

- *rotate* queries and keys by their positions, so that their dot product depends on the
  distance only: RoPE (Su et al. 2021, arXiv 2104.09864), :class:`~formers.nn.positional.
  RotaryEmbedding`;
- add a *bias* to the scores computed from the queries, the keys and their positions: Shaw et al.
  2018 (arXiv 1803.02155), the Music Transformer's skew, T5's buckets, ALiBi, Transformer-XL,
  DeBERTa (:mod:`formers.nn.relative`); Shaw's may also add a *value* term to the output,
  computed from the attention weights.

A :class:`PositionScheme` is injected into :class:`~formers.nn.attention.MultiHeadAttention`; one
instance is shared by the layers of a stack where the paper shares it (T5's bias, RoPE's tables).
It is told the :class:`Positions` of the queries and of all the keys, cached ones included, so
that it works the same with and without a KV cache.

Shapes: b batch, h heads, t_q queries, t_k keys, d head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Positions:
    """Positions of the queries and of the keys they attend to.

    Attributes:
        queries: ``(t_q,)`` or ``(b, t_q)`` positions of the queries (and of the new keys in
            self-attention).
        keys: ``(t_k,)`` or ``(b, t_k)`` positions of all the keys.
        offset: when both are contiguous and shared by the batch (``queries`` =
            ``offset .. offset + t_q - 1``, ``keys`` = ``0 .. offset + t_q - 1``), ``offset``;
            schemes may then slice their tables instead of gathering.
    """

    queries: Tensor
    keys: Tensor
    offset: int | None = None

    @classmethod
    def contiguous(cls, offset: int, length: int, device: torch.device) -> Positions:
        """``length`` new positions after ``offset`` earlier ones (a cache's length)."""
        keys = torch.arange(offset + length, device=device)
        return cls(keys[offset:], keys, offset)


class PositionScheme(nn.Module):
    """How positions enter attention (see the module docstring).

    Subclasses set ``name``, say whether they ``rotates``, ``biases`` and/or add ``values``,
    whether they mean anything on cross-attention (``cross``), and implement the matching
    methods.
    """

    name: str = "positions"
    rotates: bool = False
    biases: bool = False
    values: bool = False
    cross: bool = False

    def rotate(self, x: Tensor, positions: Tensor, offset: int | None = None) -> Tensor:
        """``x`` (``(b, h, t, d)`` queries or keys) at ``positions`` (``(t,)`` or ``(b, t)``,
        starting at ``offset`` when contiguous)."""
        return x

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor | None:
        """A ``(b|1, h, t_q, t_k)`` bias added to the scaled scores (``scale``: the one the
        content scores ``q k^T`` are multiplied by, for schemes whose terms share it), or
        ``None``."""
        return None

    def value(self, weights: Tensor, positions: Positions) -> Tensor | None:
        """A ``(b, h, t_q, d)`` term added to the attention's output, from its ``(b, h, t_q,
        t_k)`` weights, or ``None``."""
        return None
