"""Configuration of T5 (Raffel et al. 2020, arXiv 1910.10683): the Transformer encoder-decoder
with relative position buckets, RMS-style norms before every sublayer, and no biases.

A frozen, validated dataclass; the names follow Hugging Face's ``T5Config`` where they mean the
same (``d_kv``, ``num_decoder_layers``, ``relative_attention_num_buckets``, ...), so that the
converter is a table. Builders read it; modules never see it.
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
from formers.nn.kernels import KERNELS

# T5 1.0: ReLU; T5 1.1 and later: the gated GELU (tanh approximation, Hugging Face's gelu_new)
FEED_FORWARD = ("relu", "gated-gelu")


@dataclass(frozen=True)
class T5Config(DictConfig):
    """Hyperparameters of T5. The defaults are T5-small 1.0 (60M parameters with its 32,128
    tokens), except ``vocab_size``, which comes from the tokenizer.

    Attributes:
        vocab_size: the shared vocabulary of encoder and decoder.
        d_model: model width; d_kv: width of each head (T5: 64, so that h * d_kv may differ
            from d_model); d_ff: feed-forward hidden width.
        num_layers: encoder layers; num_decoder_layers: decoder layers.
        num_heads: attention heads.
        relative_attention_num_buckets, relative_attention_max_distance: the relative bias's
            buckets (32) and the distance from which the last is used (128).
        dropout: on the embeddings, every sublayer's output and the stacks' outputs.
        layer_norm_eps: of the RMS norms.
        feed_forward: "relu" (T5 1.0) or "gated-gelu" (T5 1.1).
        tie_embeddings: the output projection shares the token embedding (T5 1.0); T5 1.1
            checkpoints have a separate ``lm_head``.
        scale_decoder_output: multiply the decoder's output by ``d_model ** -0.5`` before the
            output projection (T5 1.0; not 1.1).
        kernel: attention kernel name ("sdpa" or "eager").
        pad_id, eos_id: special ids (T5: 0 and 1); bos_id: the token the decoder starts from
            (T5: the padding token, 0).
    """

    vocab_size: int
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    feed_forward: str = "relu"
    tie_embeddings: bool = True
    scale_decoder_output: bool = True
    kernel: str = "sdpa"
    pad_id: int = 0
    bos_id: int = 0
    eos_id: int = 1

    def __post_init__(self) -> None:
        check_types(self)
        require_positive(self, ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                                "num_decoder_layers", "num_heads", "relative_attention_num_buckets",
                                "relative_attention_max_distance"))  # fmt: skip
        require_rates(self, ("dropout",))
        require(self.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        require_choice("feed_forward", self.feed_forward, FEED_FORWARD)
        require_choice("kernel", self.kernel, KERNELS)
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            require(
                0 <= value < self.vocab_size,
                f"{name}={value} is outside the vocabulary [0, {self.vocab_size})",
            )
