"""Position-wise feed-forward networks.

- :class:`FeedForward`: ``FFN(x) = act(x W_1 + b_1) W_2 + b_2`` (Vaswani et al. 2017,
  arXiv 1706.03762, eq. 2) with ReLU as in the paper, or GELU (Hendrycks & Gimpel 2016,
  arXiv 1606.08415) as in BERT and GPT.
- :class:`GatedFeedForward`: the GLU family, ``FFN(x) = (act(x W) * (x V)) W_2``
  (Shazeer 2020, arXiv 2002.05202): GLU (sigmoid), ReGLU (ReLU), GeGLU (GELU), SwiGLU (SiLU,
  LLaMA). Use a ``d_ff`` of about 2/3 of the ungated one to keep the parameter count.

Use :func:`feed_forward` to build one by activation name.

Shapes: b batch, t length, d model width, f hidden width (d_ff).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}

# gated variant name -> activation applied to the gate
GATED: dict[str, str | None] = {"glu": None, "reglu": "relu", "geglu": "gelu", "swiglu": "silu"}

FEED_FORWARD_KINDS = sorted([*ACTIVATIONS, *GATED])


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Two linear maps with an activation between them.

    Args:
        d_model: input/output width.
        d_ff: hidden width.
        activation: one of :data:`ACTIVATIONS`.
        dropout: dropout on the hidden activations (0 in the paper's description).
        bias: whether the linear maps have biases.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.activation_name = activation
        self.activation = _activation(activation)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, d) -> (b, t, d)``."""
        return self.down(self.dropout(self.activation(self.up(x))))


class GatedFeedForward(nn.Module):
    """A gated linear unit feed-forward: ``down(act(gate(x)) * up(x))``.

    Args:
        d_model: input/output width.
        d_ff: hidden width.
        activation: gate activation name, or ``None`` for sigmoid (the original GLU).
        dropout: dropout on the gated hidden activations.
        bias: whether the linear maps have biases (LLaMA has none).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str | None = "silu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.activation_name = activation or "sigmoid"
        self.activation = F.sigmoid if activation is None else _activation(activation)
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, d) -> (b, t, d)``."""
        return self.down(self.dropout(self.activation(self.gate(x)) * self.up(x)))


def feed_forward(
    kind: str, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True
) -> FeedForward | GatedFeedForward:
    """Build a feed-forward block by name: one of :data:`FEED_FORWARD_KINDS`."""
    if kind in GATED:
        return GatedFeedForward(d_model, d_ff, GATED[kind], dropout=dropout, bias=bias)
    if kind in ACTIVATIONS:
        return FeedForward(d_model, d_ff, kind, dropout=dropout, bias=bias)
    raise ValueError(f"unknown feed-forward kind {kind!r}; choose one of {FEED_FORWARD_KINDS}")
