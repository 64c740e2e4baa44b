"""Configuration of Transformer-XL (Dai et al. 2019, arXiv 1901.02860).

A frozen, validated dataclass; the names follow the official code where they mean the same
(``n_layer`` is ``num_layers``, ``d_inner`` is ``d_ff``, ``tgt_len`` is ``segment_length``,
``mem_len`` is ``memory_length``, ``dropatt`` is ``attention_dropout``, ``pre_lnorm`` is
``pre_norm``). Builders read it; modules never see it.
"""

from __future__ import annotations

from dataclasses import dataclass

from formers.models.config_base import (
    DictConfig,
    check_types,
    require,
    require_choice,
    require_ids_in_vocabulary,
    require_positive,
    require_rates,
)
from formers.nn.feed_forward import FEED_FORWARD_KINDS
from formers.nn.kernels import KERNELS
from formers.nn.norms import NORMS


@dataclass(frozen=True)
class TransformerXLConfig(DictConfig):
    """Hyperparameters of a Transformer-XL language model. The defaults are the paper's
    WikiText-103 base model (16 layers, 410 wide, 10 heads of 41, d_ff 2,100, segments and
    memory of 150), except ``vocab_size``, which comes from the tokenizer.

    Attributes:
        vocab_size: vocabulary size.
        d_model: model width; head_dim: width of each head (None: d_model / num_heads);
            d_ff: feed-forward hidden width.
        num_layers, num_heads: layers and attention heads.
        segment_length: the length of a training segment (tgt_len).
        memory_length: how many earlier positions each layer remembers (mem_len; 0: none). An
            evaluation or generation may use another.
        dropout: on the embeddings, every sublayer's output and the last hidden states.
        attention_dropout: on the attention probabilities (dropatt).
        activation: feed-forward kind (the paper's is relu).
        norm: "layernorm" or "rmsnorm"; norm_eps its epsilon.
        pre_norm: norms before each sublayer and at the end (the official code's pre_lnorm);
            False is the paper's post-norm.
        bias: biases in the feed-forward network and the norms (the attention's projections
            have none, as in the official code).
        tie_output: the output projection shares the token embedding.
        kernel: attention kernel name ("sdpa" or "eager").
        pad_id, bos_id, eos_id: special token ids or None.
    """

    vocab_size: int
    d_model: int = 410
    head_dim: int | None = None
    d_ff: int = 2100
    num_layers: int = 16
    num_heads: int = 10
    segment_length: int = 150
    memory_length: int = 150
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = False
    bias: bool = True
    tie_output: bool = True
    kernel: str = "sdpa"
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(
            self, ("vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "segment_length")
        )
        require(
            self.memory_length >= 0,
            f"memory_length must be >= 0 (0: no memory), got {self.memory_length}",
        )
        require(self.norm_eps > 0, f"norm_eps must be > 0, got {self.norm_eps!r}")
        if self.head_dim is None:
            require(
                self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads}), "
                "or give head_dim",
            )
        else:
            require(self.head_dim > 0, f"head_dim must be a positive int, got {self.head_dim}")
        require(self.d_model % 2 == 0, f"XL's sinusoids need an even d_model, got {self.d_model}")
        require_rates(self, ("dropout", "attention_dropout"))
        require_choice("activation", self.activation, FEED_FORWARD_KINDS)
        require_choice("norm", self.norm, NORMS)
        require_choice("kernel", self.kernel, KERNELS)
        require_ids_in_vocabulary(self)

    @property
    def dim_per_head(self) -> int:
        return self.d_model // self.num_heads if self.head_dim is None else self.head_dim
