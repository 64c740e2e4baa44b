"""Normalization and the residual "Add & Norm" arrangements.

- LayerNorm (Ba et al. 2016, arXiv 1607.06450) as in the paper; RMSNorm (Zhang & Sennrich
  2019, arXiv 1910.07467) as in T5 and LLaMA. Both are PyTorch's own modules.
- :class:`PostNormResidual`: the paper's ``LayerNorm(x + Dropout(Sublayer(x)))`` (section 5.4).
- :class:`PreNormResidual`: ``x + Dropout(Sublayer(LayerNorm(x)))`` (Xiong et al. 2020,
  arXiv 2002.04745), which trains without warmup sensitivity; its stack needs a final norm.

A layer calls ``residual.sublayer_input(x)`` to get what the sublayer reads and
``residual.merge(x, y)`` to combine the sublayer's output ``y`` with the stream ``x``; the two
arrangements are interchangeable classes, not a flag inside ``forward``.
"""

from __future__ import annotations

from torch import Tensor, nn

NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` over the last dimension."""
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")


class PostNormResidual(nn.Module):
    """``norm(x + dropout(sublayer(x)))``: the paper's arrangement."""

    def __init__(self, norm: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def sublayer_input(self, x: Tensor) -> Tensor:
        return x

    def merge(self, x: Tensor, y: Tensor) -> Tensor:
        return self.norm(x + self.dropout(y))


class PreNormResidual(nn.Module):
    """``x + dropout(sublayer(norm(x)))``: the pre-norm arrangement."""

    def __init__(self, norm: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def sublayer_input(self, x: Tensor) -> Tensor:
        return self.norm(x)

    def merge(self, x: Tensor, y: Tensor) -> Tensor:
        return x + self.dropout(y)
