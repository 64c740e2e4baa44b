"""ALiBi: attention with linear biases (Press et al. 2022, arXiv 2108.12409).

No position embeddings at all: each head adds ``-m * distance`` to its scores, where the
distance is how far back the key is and the head's slope ``m`` comes from a fixed geometric
sequence (for 8 heads ``1/2, 1/4, ..., 1/256``). Nothing is learned and nothing depends on a
maximum length, so a model trained on length ``L`` reads ``2L`` with the bias continuing: the
paper's "train short, test long".

Deviations: the paper is causal; for bidirectional attention (``causal=False``) the distance is
taken as ``|key - query|`` (a common extension, e.g. in encoder models), which the paper does not
define.

Shapes: h heads, t_q queries, t_k keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.relative.common import distances


def alibi_slopes(num_heads: int) -> Tensor:
    """The paper's head slopes: for ``n`` a power of two, ``2^(-8/n), 2^(-16/n), ...``; for
    other ``n``, those of the power of two below ``n`` and every other one of the next power."""
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    below = 2 ** math.floor(math.log2(num_heads))
    slopes = geometric(below) + geometric(2 * below)[0::2][: num_heads - below]
    return torch.tensor(slopes)


class ALiBi(PositionScheme):
    """``-slope_h * distance`` added to head ``h``'s scores.

    Args:
        num_heads: heads of the attention it biases.
        causal: keys come only from the past (the paper); else the distance is absolute.
    """

    name = "alibi"
    biases = True

    def __init__(self, num_heads: int, *, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def extra_repr(self) -> str:
        return f"heads={self.slopes.numel()}, causal={self.causal}"

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        back = -distances(positions)  # (..., t_q, t_k): how far back each key is
        back = back.clamp(min=0) if self.causal else back.abs()
        bias = -self.slopes[:, None, None] * back[..., None, :, :].to(self.slopes.dtype)
        return bias if bias.dim() == 4 else bias[None]  # (b|1, h, t_q, t_k)
