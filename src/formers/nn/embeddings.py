"""Input embeddings (Vaswani et al. 2017, arXiv 1706.03762, sections 3.4 and 3.5).

Token embeddings are multiplied by ``sqrt(d_model)`` and summed with positional encodings, then
dropout is applied. The paper shares one weight matrix between the source embedding, the target
embedding and the pre-softmax projection; here that sharing is done by the builder, which passes
the same :class:`torch.nn.Embedding` to both :class:`Embeddings` and ties the output projection.

Shapes: b batch, t length, d model width, V vocabulary.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class Embeddings(nn.Module):
    """``dropout(scale * token(x) + position(x))``.

    Args:
        token: the token embedding (possibly shared with another :class:`Embeddings`).
        positions: a module mapping ``(length, offset)`` to ``(t, d)`` encodings, or ``None``
            (no absolute positions, e.g. with rotary attention).
        dropout: dropout on the sum (the paper uses the model dropout here).
        scale: multiplier of the token embeddings; the paper's is ``sqrt(d_model)``.
    """

    def __init__(
        self,
        token: nn.Embedding,
        positions: nn.Module | None = None,
        dropout: float = 0.0,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.positions = positions
        self.scale = math.sqrt(token.embedding_dim) if scale is None else scale
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: Tensor, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """``(b, t)`` token ids whose positions start at ``offset`` (or are ``positions``,
        ``(b, t)``: each row's own, for padded batches) -> ``(b, t, d)``."""
        x = self.token(tokens)
        if self.scale != 1.0:
            x = x * self.scale
        if self.positions is not None:
            if positions is None:
                x = x + self.positions(tokens.size(1), offset)  # (t, d) broadcast over b
            else:
                x = x + self.positions.at(positions)  # (b, t, d)
        return self.dropout(x)
