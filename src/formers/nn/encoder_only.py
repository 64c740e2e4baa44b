"""The encoder-only model: BERT's body (Devlin et al. 2018, arXiv 1810.04805, section 3).

Embeddings (token + position + segment, normalized) feed the Transformer encoder stack of
Vaswani et al. (arXiv 1706.03762) with post-norm layers and GELU feed-forward networks; every
position attends to every other (no causal mask), padding keys are masked out. What to do with
the hidden states is a separate matter:

- :meth:`EncoderOnlyModel.pool`: BERT's pooler, ``tanh(W h_[CLS] + b)`` on the first token,
  pre-trained with next-sentence prediction and used by sentence classification heads;
- :func:`mean_pool` and :func:`sentence_embeddings`: the mean of the token states over the real
  tokens, L2-normalized, as Sentence-BERT (Reimers and Gurevych 2019, arXiv 1908.10084) and the
  sentence-transformers models such as all-MiniLM-L6-v2 do;
- the task heads of :mod:`formers.nn.encoder_heads` (masked LM, classification).

Shapes: b batch, s length, d model width, h heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.encoder_embeddings import EncoderEmbeddings
from formers.nn.recorder import AttentionRecorder
from formers.nn.stacks import Encoder


class Pooler(nn.Module):
    """BERT's pooler: ``tanh(dense(hidden[:, 0]))``, the first ([CLS]) token's state.

    Args:
        d_model: model width.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: Tensor) -> Tensor:
        """``(b, s, d) -> (b, d)``."""
        return torch.tanh(self.dense(hidden[:, 0]))


class EncoderOnlyModel(nn.Module):
    """Embeddings, a bidirectional encoder stack and an optional pooler.

    Args:
        embed: token, position and segment embeddings.
        encoder: the stack of encoder layers.
        pooler: the first-token pooler, or ``None`` for a model without one.
        pad_id: the padding id, from which the default attention mask is made.
    """

    def __init__(
        self,
        embed: EncoderEmbeddings,
        encoder: Encoder,
        pooler: nn.Module | None = None,
        *,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.encoder = encoder
        self.pooler = pooler
        self.pad_id = pad_id

    def attention_mask(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The ``(b, s)`` boolean mask of real tokens: ``attention_mask`` (bool, or 0/1 as in
        Hugging Face) if given, else ``ids != pad_id``."""
        if attention_mask is None:
            return ids != self.pad_id
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected that of the "
                f"ids {tuple(ids.shape)}"
            )
        return attention_mask.bool()

    def _run(
        self, ids: Tensor, segment_ids: Tensor | None, attention_mask: Tensor | None
    ) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, length), got shape {tuple(ids.shape)}")
        keys = self.attention_mask(ids, attention_mask)[:, None, None, :]  # (b, 1, 1, s)
        return self.encoder(self.embed(ids, segment_ids), keys)

    def forward(
        self,
        ids: Tensor,
        segment_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Contextual token states.

        Args:
            ids: ``(b, s)`` token ids.
            segment_ids: ``(b, s)`` segment ids, or ``None`` (segment 0 everywhere).
            attention_mask: ``(b, s)``, True (or 1) at real tokens; defaults to ``ids != pad_id``.
                Padding positions are never attended to; their own states are computed but
                meaningless.

        Returns:
            ``(b, s, d)`` hidden states.
        """
        return self._run(ids, segment_ids, attention_mask)

    def forward_with_attention(
        self,
        ids: Tensor,
        segment_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Like :meth:`forward`, also returning each layer's ``(b, h, s, s)`` attention
        probabilities, as an :class:`~formers.nn.recorder.AttentionRecorder` records them."""
        with AttentionRecorder(self) as recorder:
            hidden = self._run(ids, segment_ids, attention_mask)
        return hidden, recorder.per_step(layer.self_attn for layer in self.encoder.layers.steps())

    def pool(self, hidden: Tensor) -> Tensor:
        """BERT's pooled output ``(b, d)`` from the hidden states ``(b, s, d)``."""
        if self.pooler is None:
            raise ValueError("this model has no pooler; build it with pooler=True")
        return self.pooler(hidden)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The mean of the states of the real tokens.

    Args:
        hidden: ``(b, s, d)`` token states.
        mask: ``(b, s)``, True (or 1) at real tokens.

    Returns:
        ``(b, d)``; a row without any real token is zero.
    """
    weights = mask.to(hidden.dtype)[:, :, None]  # (b, s, 1)
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (b, 1); sentence-transformers' clamp
    return (hidden * weights).sum(dim=1) / counts


@torch.no_grad()
def sentence_embeddings(
    model: EncoderOnlyModel,
    ids: Tensor,
    segment_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    *,
    normalize: bool = True,
) -> Tensor:
    """Sentence embeddings as sentence-transformers computes them for mean-pooling models
    (all-MiniLM-L6-v2): mean of the token states over real tokens, then L2 normalization.
    Computed without gradients (use :func:`mean_pool` on the model's output to train).

    Args:
        model: the encoder (in eval mode for deterministic embeddings).
        ids: ``(b, s)`` token ids, with the model's [CLS]/[SEP] specials.
        segment_ids: ``(b, s)`` segment ids or ``None``.
        attention_mask: ``(b, s)`` real-token mask; defaults to ``ids != pad_id``.
        normalize: divide each embedding by its L2 norm (the ``Normalize`` module).

    Returns:
        ``(b, d)`` embeddings; with ``normalize``, the dot product is the cosine similarity.
    """
    mask = model.attention_mask(ids, attention_mask)
    pooled = mean_pool(model(ids, segment_ids, mask), mask)
    return F.normalize(pooled, p=2, dim=1) if normalize else pooled
