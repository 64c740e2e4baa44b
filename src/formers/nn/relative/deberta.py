"""DeBERTa's disentangled attention (He et al. 2021, arXiv 2006.03654, section 3.1).

Every token has a content vector and, for each other token, a relative position; the score adds
to content-to-content ``Q_c K_c^T`` (the attention's own) the content-to-position and
position-to-content terms (eq. 4):

    A_ij = Q^c_i K^c_j  +  Q^c_i K^r_(d(i, j))  +  K^c_j Q^r_(d(i, j)),

where ``K^r = P W_k,r`` and ``Q^r = P W_q,r`` project one table ``P`` of relative position
embeddings shared by all layers (``2 * span`` rows), ``d(i, j) = clip(i - j + span)``, and the
sum is scaled by ``1 / sqrt(3 d)`` (the attention's modules are built with that ``scale``; each
term here is scaled alike). DeBERTa-v2 buckets far distances logarithmically
(``position_buckets``, :func:`log_buckets`) and may reuse the layer's own query and key
projections for ``P`` (``share_att_key``).

Deviations: none from Hugging Face's ``DebertaV2`` (the reference of the tests), whose
position-to-content term indexes by ``i - j`` as its content-to-position term does (the
paper writes ``d(j, i)``; the released models were trained with the code).

Shapes: b batch, h heads, t_q queries, t_k keys, d head dim, R = 2 * span rows of ``P``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from formers.nn.kernels import repeat_kv
from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.relative.common import distances

ATTENTION_TYPES = ("c2p", "p2c")


def log_buckets(relative: Tensor, bucket_size: int, max_position: int) -> Tensor:
    """DeBERTa-v2's buckets of ``query - key`` distances: exact within ``bucket_size // 2``,
    logarithmic beyond, up to ``max_position``; the sign is kept."""
    mid = bucket_size // 2
    sign = torch.sign(relative)
    near = (relative < mid) & (relative > -mid)
    far = torch.where(near, torch.full_like(relative, mid - 1), relative.abs()).to(torch.float64)
    grown = torch.ceil(torch.log(far / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return torch.where(far <= mid, relative.to(torch.float64), grown * sign).long()


class DisentangledPosition(PositionScheme):
    """The content-to-position and position-to-content terms of one layer.

    Args:
        d_model: width of the relative embeddings ``P`` (the model's).
        num_heads, head_dim: of the attention.
        table: returns ``P``, ``(2 * span, d_model)``: the stack's shared embeddings (normed
            and dropped out as the model does); held by reference, not as a submodule.
        span: ``P``'s rows per direction (``position_buckets``, else ``max_relative_positions``).
        position_buckets, max_relative_positions: log buckets (``position_buckets > 0``).
        attention_types: ``c2p`` and/or ``p2c``.
        projections: ``(query, key)`` projections to apply to ``P`` instead of this layer's own
            (``share_att_key``: the attention's ``q_proj``, ``k_proj``), held by reference.
    """

    name = "deberta"
    biases = True

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int,
        *,
        table: Callable[[], Tensor],
        span: int,
        position_buckets: int = 0,
        max_relative_positions: int = 0,
        attention_types: tuple[str, ...] = ATTENTION_TYPES,
        projections: tuple[nn.Module, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(attention_types) - set(ATTENTION_TYPES))
        if unknown or not attention_types:
            raise ValueError(
                f"attention_types must be some of {list(ATTENTION_TYPES)}, got {attention_types}"
            )
        if span < 1 or (position_buckets > 0 and max_relative_positions <= position_buckets // 2):
            raise ValueError(
                f"span must be >= 1 and max_relative_positions beyond half the buckets; got "
                f"span {span}, position_buckets {position_buckets}, max_relative_positions "
                f"{max_relative_positions}"
            )
        self.num_heads, self.head_dim, self.span = num_heads, head_dim, span
        self.position_buckets = position_buckets
        self.max_relative_positions = max_relative_positions
        self.types = tuple(attention_types)
        self._table = (table,)  # a reference: the embeddings belong to the stack
        self._shared = projections
        if projections is None:
            width = num_heads * head_dim
            self.pos_key_proj = nn.Linear(d_model, width) if "c2p" in self.types else None
            self.pos_query_proj = nn.Linear(d_model, width) if "p2c" in self.types else None

    def extra_repr(self) -> str:
        return (
            f"types={list(self.types)}, span={self.span}, buckets={self.position_buckets}, "
            f"shared_projections={self._shared is not None}"
        )

    def _heads(self, rows: Tensor) -> Tensor:
        return rows.view(rows.size(0), self.num_heads, self.head_dim).transpose(0, 1)  # (h, R, d)

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        b, h = q.size(0), q.size(1)
        relative = -distances(positions)  # (..., t_q, t_k): query - key
        if self.position_buckets > 0:
            relative = log_buckets(relative, self.position_buckets, self.max_relative_positions)
        index = (relative + self.span).clamp(0, 2 * self.span - 1)
        index = (index if index.dim() == 3 else index[None])[:, None]  # (b|1, 1, t_q, t_k)
        table = self._table[0]()[: 2 * self.span].to(q.dtype)  # (R, d_model)
        query_proj, key_proj = self._shared or (self.pos_query_proj, self.pos_key_proj)
        total = 0
        if "c2p" in self.types:
            pos_key = self._heads(key_proj(table))  # (h, R, d)
            per_row = torch.matmul(q, pos_key.transpose(-2, -1))  # (b, h, t_q, R)
            total = total + torch.gather(per_row, -1, index.expand(b, h, -1, -1))
        if "p2c" in self.types:
            pos_query = self._heads(query_proj(table))  # (h, R, d)
            keys = repeat_kv(k, h // k.size(1))  # (b, h, t_k, d)
            per_row = torch.matmul(keys, pos_query.transpose(-2, -1))  # (b, h, t_k, R)
            by_key = index.transpose(-2, -1).expand(b, h, -1, -1)  # (b, h, t_k, t_q)
            total = total + torch.gather(per_row, -1, by_key).transpose(-2, -1)  # (b, h, t_q, t_k)
        return total * scale
