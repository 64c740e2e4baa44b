"""Build T5 (Raffel et al. 2020, arXiv 1910.10683) from a :class:`T5Config`, and named presets.

The parts of :mod:`formers.nn`, assembled as T5 does:

- one token embedding for encoder and decoder, not scaled, no absolute positions;
- pre-norm layers with RMS norms (T5's "layer norm" has no mean and no bias) and no biases in any
  projection; dropout on the embeddings, on every sublayer's output and after each stack's final
  norm;
- self-attention biased by :class:`~formers.nn.relative.T5RelativeBias`, one instance a stack,
  shared by its layers (bidirectional buckets in the encoder, causal in the decoder), and scores
  not scaled by ``1 / sqrt(d)``; cross-attention without position bias;
- ReLU (T5 1.0) or gated-GELU (T5 1.1) feed-forward networks;
- an output projection tied to the embedding, the decoder's output scaled by ``d_model ** -0.5``
  (T5 1.0), or its own, unscaled (T5 1.1).

Initialization follows Mesh TensorFlow's (and Hugging Face's ``T5PreTrainedModel``): embeddings
``N(0, 1)``, queries ``N(0, (d_model * d_kv)^-0.5)``, keys and values ``N(0, d_model^-0.5)``, the
output projections and second FFN layer by their fan-in.

====================  ======  =====  =====  =====  =====  ==========  =========================
preset                layers  d      d_ff   heads  d_kv   FFN         output
====================  ======  =====  =====  =====  =====  ==========  =========================
``t5_small``          6 + 6   512    2,048  8      64     ReLU        tied (T5 1.0)
``t5_v1_1_small``     8 + 8   512    1,024  6      64     gated-GELU  own ``lm_head`` (T5 1.1)
``t5_tiny``           4 + 4   128    256    4      32     gated-GELU  tied (a CPU budget)
====================  ======  =====  =====  =====  =====  ==========  =========================
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from formers.models.config_base import preset_values
from formers.models.t5.config import T5Config
from formers.nn.attention import MultiHeadAttention
from formers.nn.embeddings import Embeddings
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.feed_forward import FeedForward, GatedFeedForward
from formers.nn.layers import DecoderLayer, EncoderLayer
from formers.nn.norms import PreNormResidual
from formers.nn.relative import T5RelativeBias
from formers.nn.stacks import Decoder, Encoder

PRESETS: dict[str, dict[str, Any]] = {
    "t5_small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                     num_heads=8, feed_forward="relu", tie_embeddings=True),
    "t5_v1_1_small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8,
                          num_heads=6, feed_forward="gated-gelu", tie_embeddings=False,
                          scale_decoder_output=False),
    "t5_tiny": dict(d_model=128, d_kv=32, d_ff=256, num_layers=4, num_decoder_layers=4,
                    num_heads=4, feed_forward="gated-gelu", tie_embeddings=True),
}  # fmt: skip


def preset_config(name: str, **overrides: Any) -> T5Config:
    """A named preset (see :data:`PRESETS`) with ``overrides``; ``vocab_size`` is required."""
    return T5Config.from_dict(preset_values(PRESETS, name, overrides))


class ScaledOutput(nn.Linear):
    """The output projection, applied to the decoder's output times ``scale`` (T5 1.0's
    ``d_model ** -0.5`` when tied to the embedding; 1 otherwise)."""

    def __init__(self, d_model: int, vocab_size: int, scale: float) -> None:
        super().__init__(d_model, vocab_size, bias=False)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x * self.scale if self.scale != 1.0 else x)


class FinalNorm(nn.Module):
    """A stack's final RMS norm, then dropout (T5's ``final_layer_norm`` and ``dropout``)."""

    def __init__(self, d_model: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.norm(x))


def _attention(
    cfg: T5Config, positions: T5RelativeBias | None = None, cross: bool = False
) -> MultiHeadAttention:
    return MultiHeadAttention(
        cfg.d_model, cfg.num_heads, head_dim=cfg.d_kv, dropout=cfg.dropout, bias=False,
        kernel=cfg.kernel, positions=positions, scale=1.0, cross=cross,
    )  # fmt: skip


def _ffn(cfg: T5Config) -> nn.Module:
    if cfg.feed_forward == "relu":
        return FeedForward(cfg.d_model, cfg.d_ff, "relu", dropout=cfg.dropout, bias=False)
    return GatedFeedForward(cfg.d_model, cfg.d_ff, "gelu_tanh", dropout=cfg.dropout, bias=False)


def _residual(cfg: T5Config) -> PreNormResidual:
    return PreNormResidual(nn.RMSNorm(cfg.d_model, eps=cfg.layer_norm_eps), cfg.dropout)


def _bias(cfg: T5Config, bidirectional: bool) -> T5RelativeBias:
    return T5RelativeBias(
        cfg.num_heads, bidirectional=bidirectional,
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance,
    )  # fmt: skip


def build_t5(config: T5Config | dict[str, Any]) -> EncoderDecoder:
    """Construct T5 as an :class:`~formers.nn.EncoderDecoder` from a config (or a dict)."""
    cfg = config if isinstance(config, T5Config) else T5Config.from_dict(config)
    token = nn.Embedding(cfg.vocab_size, cfg.d_model)
    encoder_bias, decoder_bias = _bias(cfg, True), _bias(cfg, False)  # one a stack, shared
    encoder = Encoder(
        [EncoderLayer(_attention(cfg, encoder_bias), _ffn(cfg), _residual(cfg), _residual(cfg))
         for _ in range(cfg.num_layers)],
        FinalNorm(cfg.d_model, cfg.layer_norm_eps, cfg.dropout),
    )  # fmt: skip
    decoder = Decoder(
        [DecoderLayer(_attention(cfg, decoder_bias), _attention(cfg, cross=True), _ffn(cfg),
                      _residual(cfg), _residual(cfg), _residual(cfg))
         for _ in range(cfg.num_decoder_layers)],
        FinalNorm(cfg.d_model, cfg.layer_norm_eps, cfg.dropout),
    )  # fmt: skip
    scale = cfg.d_model**-0.5 if cfg.scale_decoder_output else 1.0
    generator = ScaledOutput(cfg.d_model, cfg.vocab_size, scale)
    model = EncoderDecoder(
        encoder, decoder, Embeddings(token, None, cfg.dropout, scale=1.0),
        Embeddings(token, None, cfg.dropout, scale=1.0), generator,
        pad_id=cfg.pad_id, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
    )  # fmt: skip
    _init_weights(model, cfg)
    if cfg.tie_embeddings:
        generator.weight = token.weight
    model.config = cfg  # kept for checkpoints and converters; modules never read it
    return model


@torch.no_grad()
def _init_weights(model: EncoderDecoder, cfg: T5Config) -> None:
    """Mesh TensorFlow's initialization (see the module docstring)."""
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    model.src_embed.token.weight.normal_(std=1.0)
    model.generator.weight.normal_(std=1.0)
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.q_proj.weight.normal_(std=(d * cfg.d_kv) ** -0.5)
            module.k_proj.weight.normal_(std=d**-0.5)
            module.v_proj.weight.normal_(std=d**-0.5)
            module.out_proj.weight.normal_(std=inner**-0.5)
        elif isinstance(module, FeedForward | GatedFeedForward):
            for first in (getattr(module, "up", None), getattr(module, "gate", None)):
                if first is not None:
                    first.weight.normal_(std=d**-0.5)
            module.down.weight.normal_(std=cfg.d_ff**-0.5)
        elif isinstance(module, T5RelativeBias):
            module.embedding.weight.normal_(std=d**-0.5)
