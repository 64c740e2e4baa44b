"""Relative position representations (Shaw, Uszkoreit and Vaswani 2018, arXiv 1803.02155).

Each clipped distance ``r = clip(key - query, -k, k)`` has a learned key vector ``a^K_r`` and,
optionally, a value vector ``a^V_r`` (the paper's eqs. 3-4, section 3.2), shared by the heads of
a layer (section 3.3):

    e_ij = q_i (k_j + a^K_ij)^T / sqrt(d),    z_i = sum_j alpha_ij (v_j + a^V_ij).

Computed as the paper's efficient implementation suggests (section 3.3): ``q_i a^K_r`` once per
query and distance (``t_q x (2k + 1)`` products, not one vector per pair), then picked per pair;
the value term sums each query's weights per distance before multiplying by ``a^V``.

Shapes: b batch, h heads, t_q queries, t_k keys, d head dim, R = 2k + 1 distances.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.relative.common import distances


class ShawRelativePosition(PositionScheme):
    """Learned relative key (and value) vectors of clipped distances.

    Args:
        head_dim: the attention's head width ``d``.
        max_distance: the clipping distance ``k`` (the paper: 16 for its base model).
        values: also learn the value vectors ``a^V`` (the paper finds them unnecessary for
            translation, Table 3).
    """

    name = "shaw"
    biases = True

    def __init__(self, head_dim: int, max_distance: int = 16, *, values: bool = True) -> None:
        super().__init__()
        if max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {max_distance}")
        self.max_distance = max_distance
        self.keys = nn.Embedding(2 * max_distance + 1, head_dim)  # a^K, row r + k for distance r
        self.values = values  # the scheme's flag: it adds a value term when it has a^V
        self.value_vectors = nn.Embedding(2 * max_distance + 1, head_dim) if values else None

    def extra_repr(self) -> str:
        return f"max_distance={self.max_distance}, values={self.values}"

    def index(self, positions: Positions) -> Tensor:
        """The row of each pair's distance: ``(t_q, t_k)`` or ``(b, t_q, t_k)`` in ``[0, R)``."""
        k = self.max_distance
        return distances(positions).clamp(-k, k) + k

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        per_distance = torch.matmul(q, self.keys.weight.t())  # (b, h, t_q, R): q_i . a^K_r
        index = self.index(positions)
        index = (index if index.dim() == 3 else index[None])[:, None]  # (b|1, 1, t_q, t_k)
        index = index.expand(q.size(0), q.size(1), -1, -1)
        return torch.gather(per_distance, -1, index) * scale  # (b, h, t_q, t_k)

    def value(self, weights: Tensor, positions: Positions) -> Tensor | None:
        if self.value_vectors is None:
            return None
        index = self.index(positions)
        index = (index if index.dim() == 3 else index[None])[:, None].expand_as(weights)
        per_distance = weights.new_zeros(*weights.shape[:-1], self.value_vectors.num_embeddings)
        per_distance.scatter_add_(-1, index, weights)  # (b, h, t_q, R): weight of each distance
        return torch.matmul(per_distance, self.value_vectors.weight)  # (b, h, t_q, d)
