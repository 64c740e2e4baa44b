"""Configuration of the encoder-decoder Transformer (arXiv 1706.03762).

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
from formers.nn.feed_forward import FEED_FORWARD_KINDS
from formers.nn.kernels import KERNELS
from formers.nn.norms import NORMS

POSITIONS = ("sinusoidal", "sinusoidal_halves", "learned", "rotary")


@dataclass(frozen=True)
class TransformerConfig(DictConfig):
    """Hyperparameters of an encoder-decoder Transformer.

    The defaults are the paper's base model (Table 3); ``dropout`` is the paper's ``P_drop``,
    applied to each sublayer output and to the embedding sums.

    Attributes:
        vocab_size: source vocabulary size (also the target's when ``tgt_vocab_size`` is None).
        tgt_vocab_size: target vocabulary size, if different from the source's.
        d_model: model width. d_ff: feed-forward hidden width.
        num_heads: attention heads; num_kv_heads: key/value heads (None = num_heads; GQA/MQA).
        num_encoder_layers, num_decoder_layers: stack depths (N in the paper).
        dropout: residual and embedding dropout (P_drop).
        attention_dropout: dropout on attention probabilities (not used in the paper).
        activation_dropout: dropout inside the feed-forward network (not used in the paper).
        activation: feed-forward kind: relu, gelu, gelu_tanh, silu, glu, reglu, geglu, swiglu.
        norm: "layernorm" or "rmsnorm"; norm_eps its epsilon.
        norm_first: pre-norm (True) or the paper's post-norm (False).
        positions: "sinusoidal" (the paper), "sinusoidal_halves" (the same sinusoid laid out as
            ``[sin | cos]`` halves, as in Marian), "learned" or "rotary".
        max_positions: positions precomputed (sinusoidal/rotary) or learned (the limit).
        rope_base: rotary angle base.
        share_embeddings: one token embedding for source and target (needs one vocabulary).
        tie_output: the pre-softmax projection shares the target embedding's weight.
        output_bias: the pre-softmax projection has a bias (Marian's ``final_logits_bias``;
            the paper has none).
        scale_embeddings: multiply token embeddings by sqrt(d_model) (the paper does).
        bias: biases in the attention and feed-forward projections.
        kernel: attention kernel name ("sdpa" or "eager").
        pad_id, bos_id, eos_id: special token ids. ``bos_id`` (the decoder's start token) may
            equal ``pad_id``, as in Marian; EOS must differ from both.
    """

    vocab_size: int
    tgt_vocab_size: int | None = None
    d_model: int = 512
    d_ff: int = 2048
    num_heads: int = 8
    num_kv_heads: int | None = None
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = False
    positions: str = "sinusoidal"
    max_positions: int = 1024
    rope_base: float = 10000.0
    share_embeddings: bool = True
    tie_output: bool = True
    output_bias: bool = False
    scale_embeddings: bool = True
    bias: bool = True
    kernel: str = "sdpa"
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, ("vocab_size", "d_model", "d_ff", "num_heads", "max_positions"))
        require(
            self.tgt_vocab_size is None or self.tgt_vocab_size > 0,
            f"tgt_vocab_size must be a positive int or None, got {self.tgt_vocab_size!r}",
        )
        for name in ("norm_eps", "rope_base"):
            value = getattr(self, name)
            require(value > 0, f"{name} must be > 0, got {value!r}")
        for name in ("num_encoder_layers", "num_decoder_layers"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"{name} must be >= 1, got {value!r}")
        require(
            self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        kv = self.kv_heads
        require(
            kv >= 1 and self.num_heads % kv == 0,
            f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})",
        )
        require_rates(self, ("dropout", "attention_dropout", "activation_dropout"))
        require_choice("activation", self.activation, FEED_FORWARD_KINDS)
        require_choice("norm", self.norm, NORMS)
        require_choice("positions", self.positions, POSITIONS)
        require_choice("kernel", self.kernel, KERNELS)
        if self.positions in ("sinusoidal", "sinusoidal_halves"):
            require(
                self.d_model % 2 == 0,
                f"sinusoidal positions need an even d_model, got {self.d_model}",
            )
        if self.positions == "rotary":
            require(
                self.head_dim % 2 == 0,
                f"rotary positions need an even head dim, got {self.head_dim}",
            )
        if self.share_embeddings:
            require(
                self.tgt_vocab_size in (None, self.vocab_size),
                f"share_embeddings needs one vocabulary, but vocab_size={self.vocab_size} and "
                f"tgt_vocab_size={self.tgt_vocab_size}; set share_embeddings=false",
            )
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in ids.items():
            smallest = min(self.vocab_size, self.target_vocab_size)
            require(
                0 <= value < smallest, f"{name}={value} is outside the vocabulary [0, {smallest})"
            )
        # the start token may be the padding token (Marian); nothing may be confused with EOS
        require(
            self.eos_id not in (self.pad_id, self.bos_id),
            f"eos_id must differ from pad_id and bos_id (bos_id may equal pad_id), got {ids}",
        )

    @property
    def target_vocab_size(self) -> int:
        return self.vocab_size if self.tgt_vocab_size is None else self.tgt_vocab_size

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads
