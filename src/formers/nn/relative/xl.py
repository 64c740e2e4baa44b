"""Transformer-XL's relative positional encoding (Dai et al. 2019, arXiv 1901.02860, section 3.3).

The score of query ``i`` and key ``j`` splits into four terms (eq. in section 3.3):

    A_ij = q_i k_j  +  q_i W_R R_(i-j)  +  u k_j  +  v W_R R_(i-j)
           (a) content (b) position     (c) global   (d) global
               - the mechanism's            content    position bias

with ``R`` the sinusoid of the distance ``i - j`` (no learned positions), ``W_R`` a projection of
its own and ``u``, ``v`` learned per head. The attention computes (a); this scheme adds (b) + (c)
+ (d), scaled like (a). Keys may be a cached *memory* of the previous segment followed by the
segment: the positions say so (queries at ``m .. m + t - 1`` over keys ``0 .. m + t - 1``).

Deviations: the terms (b) and (d) are taken per pair from the ``t_q x distances`` products by
index rather than with the paper's code's ``rel_shift`` reshaping (the same values, the same
``O(t_q t_k)`` memory). ``u`` and ``v`` belong to each layer (the official code's ``untie_r``
default); the paper does not say whether layers share them. ``R`` lays out its sines and cosines
in halves, as the official code does.

Shapes: b batch, h heads, t_q queries, t_k keys, d head dim, n distances.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.nn.kernels import repeat_kv
from formers.nn.position_scheme import Positions, PositionScheme
from formers.nn.positional import sinusoidal_table
from formers.nn.relative.common import distances


class XLRelativePosition(PositionScheme):
    """Terms (b), (c) and (d) of Transformer-XL's scores (see the module docstring).

    Args:
        d_model: width of the sinusoids ``R`` (the model's).
        num_heads: heads of the attention.
        head_dim: their width ``d``.
    """

    name = "transformer-xl"
    biases = True

    def __init__(self, d_model: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.r_proj = nn.Linear(d_model, num_heads * head_dim, bias=False)  # W_R
        self.u = nn.Parameter(torch.zeros(num_heads, head_dim))
        self.v = nn.Parameter(torch.zeros(num_heads, head_dim))

    def bias(self, q: Tensor, k: Tensor, positions: Positions, scale: float) -> Tensor:
        b, h, _, d = q.shape
        back = (-distances(positions)).clamp(min=0)  # (..., t_q, t_k): i - j, later keys at 0
        n = int(back.max()) + 1 if back.numel() else 1
        weight = self.r_proj.weight
        r = sinusoidal_table(torch.arange(n, device=q.device), self.d_model, interleave=False,
                             dtype=weight.dtype)  # fmt: skip
        rk = self.r_proj(r).view(n, h, d).transpose(0, 1).to(q.dtype)  # (h, n, d): W_R R
        k = repeat_kv(k, h // k.size(1))  # (b, h, t_k, d): shared key heads, one per query head
        global_content = torch.matmul(self.u[:, None, :], k.transpose(-2, -1))  # (b, h, 1, t_k)
        per_distance = torch.matmul(q + self.v[:, None, :], rk.transpose(-2, -1))  # (b, h, t_q, n)
        index = (back if back.dim() == 3 else back[None])[:, None]  # (b|1, 1, t_q, t_k)
        position = torch.gather(per_distance, -1, index.expand(b, h, -1, -1))  # (b, h, t_q, t_k)
        return (global_content + position) * scale
