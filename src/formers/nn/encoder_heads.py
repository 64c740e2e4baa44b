"""Task heads on an encoder-only model, and the models that pair a body with a head.

- :class:`MaskedLMHead`: BERT's masked language model output (Devlin et al. 2018,
  arXiv 1810.04805, section 3.1, Task #1; the transform is in its released code):
  ``LayerNorm(gelu(dense(h))) E^T + b``, with the decoder matrix ``E`` tied to the token
  embedding and a bias of its own per vocabulary entry.
- :class:`ClassificationHead`: ``linear(dropout(pooled))`` on the pooled [CLS] state, as BERT's
  sentence(-pair) classification fine-tuning (section 4.1).

The heads are separate modules so that one pre-trained body serves several tasks; the wrappers
:class:`EncoderForMaskedLM` and :class:`EncoderForClassification` (both an
:class:`EncoderWithHead`) keep the body as ``body`` and the head as ``head``.

Shapes: b batch, s length, d model width, V vocabulary, L labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.encoder_only import EncoderOnlyModel
from formers.nn.feed_forward import ACTIVATIONS


class MaskedLMHead(nn.Module):
    """Predict tokens from hidden states: ``norm(act(dense(h))) @ decoder_weight^T + bias``.

    Args:
        d_model: model width.
        vocab_size: vocabulary size ``V``.
        decoder_weight: the ``(V, d)`` output matrix; pass the token embedding's weight to tie
            them (as BERT does). ``None`` makes an untied matrix.
        eps: epsilon of the LayerNorm (BERT: 1e-12).
        activation: name of the transform's activation in
            :data:`formers.nn.feed_forward.ACTIVATIONS` (BERT: exact GELU).
    """

    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        decoder_weight: nn.Parameter | None = None,
        eps: float = 1e-12,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}"
            )
        if decoder_weight is None:
            decoder_weight = nn.Parameter(torch.empty(vocab_size, d_model))
            nn.init.normal_(decoder_weight, std=0.02)
        if tuple(decoder_weight.shape) != (vocab_size, d_model):
            raise ValueError(
                f"decoder_weight has shape {tuple(decoder_weight.shape)}, "
                f"expected ({vocab_size}, {d_model})"
            )
        self.dense = nn.Linear(d_model, d_model)
        self.activation = ACTIVATIONS[activation]
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.decoder_weight = decoder_weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        """``(b, s, d) -> (b, s, V)`` logits (or ``(n, d) -> (n, V)`` for selected positions)."""
        x = self.norm(self.activation(self.dense(hidden)))
        return F.linear(x, self.decoder_weight, self.bias)


class ClassificationHead(nn.Module):
    """``linear(dropout(pooled))``: logits of a sentence(-pair) classifier.

    Args:
        d_model: model width.
        num_labels: number of classes ``L``.
        dropout: dropout on the pooled state (BERT uses the model's dropout, 0.1).
    """

    def __init__(self, d_model: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(d_model, num_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        """``(b, d) -> (b, L)``."""
        return self.linear(self.dropout(pooled))


class EncoderWithHead(nn.Module):
    """An encoder-only body with a task head; subclasses choose what the head reads.

    Args:
        body: the encoder-only model.
        head: the task head.
    """

    def __init__(self, body: EncoderOnlyModel, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    @property
    def pad_id(self) -> int:
        return self.body.pad_id

    def head_input(self, states: Tensor) -> Tensor:
        """What the head reads, from the body's ``(b, s, d)`` states: here all of them."""
        return states

    def forward(
        self,
        ids: Tensor,
        segment_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        """``(b, s)`` ids (see :meth:`EncoderOnlyModel.forward`) -> the head's logits."""
        return self.head(self.head_input(self.body(ids, segment_ids, attention_mask)))


class EncoderForMaskedLM(EncoderWithHead):
    """An encoder-only body with a masked language model head: ``(b, s)`` ids -> ``(b, s, V)``
    logits.

    Args:
        body: the encoder-only model.
        head: the masked LM head (its decoder usually tied to ``body.embed.token``).
    """

    head: MaskedLMHead


class EncoderForClassification(EncoderWithHead):
    """An encoder-only body with a pooler and a classification head on the pooled output:
    ``(b, s)`` ids -> ``(b, L)`` logits.

    Args:
        body: the encoder-only model; it must have a pooler.
        head: the classification head.
    """

    head: ClassificationHead

    def __init__(self, body: EncoderOnlyModel, head: ClassificationHead) -> None:
        if body.pooler is None:
            raise ValueError(
                "a classification head reads the pooled output: give the body a pooler"
            )
        super().__init__(body, head)

    def head_input(self, states: Tensor) -> Tensor:
        """BERT's pooled ``(b, d)`` output (see :meth:`EncoderOnlyModel.pool`)."""
        return self.body.pool(states)
