"""Configuration of BERT, the encoder-only Transformer (Devlin et al. 2018, arXiv 1810.04805).

A frozen, validated dataclass. Builders read it and construct modules with plain arguments;
modules never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

from formers.models.config_base import (
    DictConfig,
    check_types,
    require,
    require_choice,
    require_positive,
    require_rates,
)
from formers.nn.feed_forward import ACTIVATIONS
from formers.nn.kernels import KERNELS

# Ids of the special tokens in the original BERT WordPiece vocabularies (uncased and cased).
BERT_VOCAB_IDS = {"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102, "mask_id": 103}


@dataclass(frozen=True)
class BertConfig(DictConfig):
    """Hyperparameters of a BERT model and which head it carries.

    The defaults are BERT-base (section 3: L=12, H=768, A=12, 4H feed-forward) with its
    30,522-token uncased vocabulary; the layers are post-norm with GELU, as in BERT.

    Attributes:
        vocab_size: WordPiece vocabulary size.
        d_model: model width (H). d_ff: feed-forward hidden width (4H in BERT).
        num_layers: encoder layers (L). num_heads: attention heads (A).
        dropout: dropout on the embeddings and on each sublayer output (BERT: 0.1).
        attention_dropout: dropout on the attention probabilities (BERT: 0.1).
        activation: feed-forward (and MLM transform) activation: relu, gelu, gelu_tanh, silu.
        norm_eps: LayerNorm epsilon (BERT: 1e-12).
        max_positions: number of learned positions, the longest input (BERT: 512).
        type_vocab_size: number of segments (BERT: 2); 0 = no segment embedding.
        pooler: include the first-token pooler (``tanh(dense(h_[CLS]))``).
        num_labels: classes of a sentence classification head on the pooled output; 0 = none.
        mlm_head: include the masked language model head (tied to the token embedding).
        pad_id: padding id; the default attention mask is ``ids != pad_id``.
        cls_id, sep_id, mask_id, unk_id: special ids of the tokenizer, kept with the model for
            pre-training and inference (``None`` when unknown); they do not change ``forward``.
        kernel: attention kernel name ("sdpa" or "eager").
    """

    vocab_size: int = 30522
    d_model: int = 768
    num_layers: int = 12
    num_heads: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    norm_eps: float = 1e-12
    max_positions: int = 512
    type_vocab_size: int = 2
    pooler: bool = True
    num_labels: int = 0
    mlm_head: bool = False
    pad_id: int = 0
    cls_id: int | None = 101
    sep_id: int | None = 102
    mask_id: int | None = 103
    unk_id: int | None = 100
    kernel: str = "sdpa"

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(
            self, ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_positions")
        )
        require(
            self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        require_rates(self, ("dropout", "attention_dropout"))
        require(self.norm_eps > 0, f"norm_eps must be > 0, got {self.norm_eps!r}")
        require(
            self.type_vocab_size >= 0,
            f"type_vocab_size must be >= 0 (0 = no segment embedding), got {self.type_vocab_size}",
        )
        require(
            self.num_labels >= 0,
            f"num_labels must be >= 0 (0 = no classification head), got {self.num_labels}",
        )
        require_choice("activation", self.activation, ACTIVATIONS)
        require_choice("kernel", self.kernel, KERNELS)
        require(
            not (self.mlm_head and self.num_labels),
            f"a BERT model carries one head: mlm_head=True and num_labels={self.num_labels} "
            "were both asked for; build two models that share the body instead",
        )
        require(
            self.pooler or not self.num_labels,
            f"num_labels={self.num_labels} needs pooler=True: the classifier reads the pooled "
            "[CLS] state",
        )
        ids = {name: getattr(self, name) for name in BERT_VOCAB_IDS}
        for name, value in ids.items():
            require(
                value is None or 0 <= value < self.vocab_size,
                f"{name}={value} is outside the vocabulary [0, {self.vocab_size}); set it from "
                "the tokenizer (or to None for ids other than pad_id)",
            )
        given = [value for value in ids.values() if value is not None]
        require(len(set(given)) == len(given), f"special ids must differ, got {ids}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads
