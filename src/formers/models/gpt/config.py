"""Configuration of a decoder-only language model: GPT-2 (Radford et al. 2019) and LLaMA-style
variants (Touvron et al. 2023, arXiv 2302.13971).

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
    require_ids_in_vocabulary,
    require_positive,
    require_rates,
)
from formers.nn.feed_forward import FEED_FORWARD_KINDS
from formers.nn.kernels import KERNELS
from formers.nn.norms import NORMS

POSITIONS = ("learned", "rotary", "sinusoidal")


@dataclass(frozen=True)
class GPTConfig(DictConfig):
    """Hyperparameters of a decoder-only Transformer language model.

    The defaults are GPT-2 small (124M parameters with its 50,257-token vocabulary), except
    ``vocab_size``, which always comes from the tokenizer.

    Attributes:
        vocab_size: vocabulary size.
        d_model: model width. d_ff: feed-forward hidden width.
        num_layers: number of decoder layers.
        num_heads: attention heads; num_kv_heads: key/value heads (None = num_heads; fewer is
            GQA, Ainslie et al. 2023, arXiv 2305.13245; 1 is MQA).
        dropout: residual and embedding dropout (GPT-2's resid_pdrop and embd_pdrop).
        attention_dropout: dropout on attention probabilities (GPT-2's attn_pdrop).
        activation: feed-forward kind: relu, gelu, gelu_tanh (GPT-2's "gelu_new"), silu, glu,
            reglu, geglu, swiglu (LLaMA).
        norm: "layernorm" (GPT-2) or "rmsnorm" (LLaMA); norm_eps its epsilon.
        positions: "learned" (GPT-2), "rotary" (LLaMA) or "sinusoidal" (the Transformer paper).
        context_length: the longest input (and the number of learned positions).
        rope_base: rotary angle base (10,000 in RoPE and LLaMA 1/2; 500,000 in LLaMA 3).
        tie_output: the pre-softmax projection shares the token embedding's weight (GPT-2 does,
            LLaMA does not).
        bias: biases in the linear maps and LayerNorms (GPT-2 has them; LLaMA and nanoGPT's
            ``bias=False`` do not). RMSNorm never has one.
        kernel: attention kernel name ("sdpa" or "eager").
        pad_id, bos_id, eos_id: special token ids or None (GPT-2: no pad, 50256 for both).
    """

    vocab_size: int
    d_model: int = 768
    num_layers: int = 12
    num_heads: int = 12
    num_kv_heads: int | None = None
    d_ff: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu_tanh"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    positions: str = "learned"
    context_length: int = 1024
    rope_base: float = 10000.0
    tie_output: bool = True
    bias: bool = True
    kernel: str = "sdpa"
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(
            self, ("vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "context_length")
        )
        for name in ("norm_eps", "rope_base"):
            value = getattr(self, name)
            require(value > 0, f"{name} must be > 0, got {value!r}")
        require(
            self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        kv = self.kv_heads
        require(
            kv >= 1 and self.num_heads % kv == 0,
            f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv}); "
            "use None for one key/value head per query head",
        )
        require_rates(self, ("dropout", "attention_dropout"))
        require_choice("activation", self.activation, FEED_FORWARD_KINDS)
        require_choice("norm", self.norm, NORMS)
        require_choice("positions", self.positions, POSITIONS)
        require_choice("kernel", self.kernel, KERNELS)
        if self.positions == "sinusoidal":
            require(
                self.d_model % 2 == 0,
                f"sinusoidal positions need an even d_model, got {self.d_model}",
            )
        if self.positions == "rotary":
            require(
                self.head_dim % 2 == 0,
                f"rotary positions need an even head dim (d_model / num_heads), got "
                f"{self.head_dim}",
            )
        require_ids_in_vocabulary(self)

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads
