"""T5's relative position bias (Raffel et al. 2020, arXiv 1910.10683, section 2.1).

Each head learns one scalar per *bucket* of the distance between a key and a query, added to the
scores; the buckets are exact for the nearest distances and logarithmically wider up to
``max_distance``, beyond which all distances share the last bucket. Encoder self-attention
distinguishes keys before and after the query (bidirectional: half the buckets each); decoder
self-attention sees only earlier keys (causal). One bias is shared by the layers of a stack
(T5 computes it in the first layer and reuses it), and T5 does not scale its scores by
``1 / sqrt(d)``: its attention modules are built with ``scale=1`` (the scheme adds the bias as
is). Deviation: none; the buckets are those of Mesh TensorFlow and Hugging Face's T5.

Shapes: h heads, t_q queries, t_k keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.relative.common import distances, heads_first


def t5_buckets(
    distance: Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Tensor:
    """The bucket of each ``key - query`` distance, in ``[0, num_buckets)``.

    Bidirectional: keys after the query take the upper half of the buckets. Within a half (or
    all of them, causal, where later keys count as distance 0), the first half of the buckets are
    the distances ``0 .. n/2 - 1`` one by one, the rest spread logarithmically up to
    ``max_distance``.
    """
    n = num_buckets
    bucket = torch.zeros_like(distance)
    if bidirectional:
        n //= 2
        bucket = bucket + (distance > 0).long() * n
        far = distance.abs()
    else:
        far = (-distance).clamp(min=0)  # how far back; later keys (masked anyway) at 0
    exact = n // 2
    spread = torch.log(far.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    logarithmic = (exact + (spread * (n - exact)).long()).clamp(max=n - 1)
    return bucket + torch.where(far < exact, far, logarithmic)


class T5RelativeBias(PositionScheme):
    """A learned scalar per head and distance bucket, added to the scores.

    Args:
        num_heads: heads of the attention it biases.
        bidirectional: encoder (True) or decoder (False) buckets.
        num_buckets: buckets (T5: 32).
        max_distance: distances from which on the last bucket is used (T5: 128).
    """

    name = "t5"
    biases = True

    def __init__(
        self, num_heads: int, *, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
    ) -> None:
        super().__init__()
        if num_buckets < 2 or (bidirectional and num_buckets < 4):
            raise ValueError(
                f"num_buckets must be >= 2 (>= 4 bidirectional: two halves of exact and "
                f"logarithmic buckets), got {num_buckets}"
            )
        exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
        if max_distance <= exact:
            raise ValueError(
                f"max_distance must exceed the {exact} exact buckets (the logarithmic ones reach "
                f"from there to max_distance), got {max_distance}"
            )
        self.bidirectional, self.num_buckets, self.max_distance = (
            bidirectional, num_buckets, max_distance,
        )  # fmt: skip
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def extra_repr(self) -> str:
        return (
            f"bidirectional={self.bidirectional}, num_buckets={self.num_buckets}, "
            f"max_distance={self.max_distance}"
        )

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        buckets = t5_buckets(
            distances(positions), bidirectional=self.bidirectional,
            num_buckets=self.num_buckets, max_distance=self.max_distance,
        )  # fmt: skip
        return heads_first(self.embedding(buckets))  # (t_q, t_k, h) -> (1, h, t_q, t_k)
