"""The Music Transformer's relative attention with the *skew* (Huang et al. 2018, arXiv
1809.04281, section 3.4.1).

Shaw et al.'s relative key term ``S^rel_ij = q_i . e_(j - i)`` (:mod:`formers.nn.relative.shaw`)
written out as one vector per pair costs ``O(L^2 D)`` memory; the Music Transformer learns one
embedding ``E^r`` per head for each distance ``-(L-1) .. 0`` (causal attention: no later keys)
and gets every pair's term from the ``L x L`` product ``Q E^r^T`` by the *skew*: pad a zero column
on the left, reshape ``(L, L + 1) -> (L + 1, L)`` and drop the first row, which shifts row ``i``
left by ``L - 1 - i`` so that column ``j`` holds distance ``j - i``. The extra memory is that of
``E^r``, ``O(L D)`` (the paper: 1.1 GB -> 0.52 MB per head at L = 2,048, D = 64).

The skew applies when every query attends over keys at the same positions (a full causal pass,
as in training); with a KV cache, or per-row positions, the same terms are picked from
``Q E^r^T`` by index (``O(t_q t_k)`` as well). Distances farther than ``max_len - 1`` use the
farthest embedding (the paper trains at one length; this lets a model read longer inputs).
Causal only: the terms of later keys are not defined (they are masked).

Shapes: b batch, h heads, t_q queries, t_k keys, d head dim, L length (t_q = t_k = L).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.relative.common import distances


def skew(qe: Tensor) -> Tensor:
    """``(..., L, L)`` products with columns for distances ``-(L-1) .. 0`` -> ``(..., L, L)``
    with column ``j`` of row ``i`` holding distance ``j - i`` (for ``j <= i``; the rest is
    padding to be masked)."""
    length = qe.size(-1)
    padded = F.pad(qe, (1, 0))  # (..., L, L + 1): a zero column on the left
    shifted = padded.reshape(*qe.shape[:-2], length + 1, length)  # (..., L + 1, L)
    return shifted[..., 1:, :]  # (..., L, L)


class MusicRelativeAttention(PositionScheme):
    """A learned embedding per head of each distance ``-(max_len - 1) .. 0``, whose products
    with the queries are added to the scores (via the skew).

    Args:
        num_heads: heads of the attention.
        head_dim: their width ``d``.
        max_len: distances learned (the training length).
    """

    name = "music"
    biases = True

    def __init__(self, num_heads: int, head_dim: int, max_len: int) -> None:
        super().__init__()
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        # row r: distance r - (max_len - 1), so the last row is distance 0 (the query itself)
        self.embeddings = nn.Parameter(torch.randn(num_heads, max_len, head_dim) * head_dim**-0.5)

    def extra_repr(self) -> str:
        heads, length, dim = self.embeddings.shape
        return f"heads={heads}, max_len={length}, head_dim={dim}"

    def _rows(self, length: int) -> Tensor:
        """``(h, length, d)`` embeddings of distances ``-(length - 1) .. 0``."""
        if length <= self.max_len:
            return self.embeddings[:, self.max_len - length :]
        farthest = self.embeddings[:, :1].expand(-1, length - self.max_len, -1)
        return torch.cat([farthest, self.embeddings], dim=1)

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        t_q, t_k = q.size(-2), k.size(-2)
        if positions.offset == 0 and t_q == t_k:  # a full pass: the skew
            qe = torch.matmul(q, self._rows(t_q).transpose(-2, -1))  # (b, h, L, L)
            return skew(qe) * scale
        # with a cache (or per-row positions): pick each pair's distance from Q E^r^T
        span = min(self.max_len, t_k)
        qe = torch.matmul(q, self._rows(span).transpose(-2, -1))  # (b, h, t_q, span)
        index = distances(positions).clamp(-(span - 1), 0) + span - 1
        index = (index if index.dim() == 3 else index[None])[:, None]  # (b|1, 1, t_q, t_k)
        return torch.gather(qe, -1, index.expand(q.size(0), q.size(1), -1, -1)) * scale
