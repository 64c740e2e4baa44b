"""The input embeddings of BERT (Devlin et al. 2018, arXiv 1810.04805, section 3, Figure 2).

The input representation of a token is the sum of its token embedding, a learned embedding of
its absolute position and a learned segment ("token type") embedding telling sentence A from
sentence B; the sum is layer-normalized and dropped out. Unlike the Transformer paper
(arXiv 1706.03762, section 3.4), token embeddings are not scaled by ``sqrt(d_model)``.

Shapes: b batch, s length, d model width.
"""

from __future__ import annotations

from torch import Tensor, nn

from formers.nn.positional import LearnedPositionalEmbedding


class EncoderEmbeddings(nn.Module):
    """``dropout(norm(token(ids) + position + segment(segment_ids)))``.

    Args:
        token: the token embedding (the builder may tie an output layer to its weight).
        positions: learned absolute positions, called as ``positions(length, offset)``.
        segments: the segment embedding, or ``None`` for a model without segments
            (then ``segment_ids`` must not be passed).
        norm: normalization of the sum (BERT: LayerNorm with eps 1e-12).
        dropout: dropout on the normalized sum.
    """

    def __init__(
        self,
        token: nn.Embedding,
        positions: LearnedPositionalEmbedding,
        segments: nn.Embedding | None,
        norm: nn.Module,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.positions = positions
        self.segments = segments
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: Tensor, segment_ids: Tensor | None = None) -> Tensor:
        """Embed token ids.

        Args:
            ids: ``(b, s)`` token ids.
            segment_ids: ``(b, s)`` segment ids (0 for sentence A, 1 for sentence B); ``None``
                means segment 0 everywhere, as for a single sentence.

        Returns:
            ``(b, s, d)`` embeddings.
        """
        x = self.token(ids) + self.positions(ids.size(1))  # (b, s, d) + (s, d)
        if self.segments is not None:
            if segment_ids is None:
                x = x + self.segments.weight[0]  # (d,): every token in segment 0
            else:
                x = x + self.segments(segment_ids)
        elif segment_ids is not None:
            raise ValueError(
                "this model has no segment embedding (type_vocab_size=0); do not pass segment_ids"
            )
        return self.dropout(self.norm(x))
