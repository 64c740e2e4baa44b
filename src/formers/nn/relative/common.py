"""What the relative position schemes share: the distance between every query and key.

Shapes: b batch, t_q queries, t_k keys.
"""

from __future__ import annotations

from torch import Tensor

from formers.nn.position_scheme import Positions


def distances(positions: Positions) -> Tensor:
    """``key position - query position`` for every pair: ``(t_q, t_k)``, or ``(b, t_q, t_k)``
    when the positions are per row (padded batches). Negative: the key is earlier."""
    return positions.keys[..., None, :] - positions.queries[..., :, None]


def heads_first(values: Tensor) -> Tensor:
    """``(..., t_q, t_k, h)`` per-pair values -> ``(b|1, h, t_q, t_k)``."""
    values = values.movedim(-1, -3)  # (..., h, t_q, t_k)
    return values if values.dim() == 4 else values[None]
