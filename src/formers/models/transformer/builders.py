"""Build the encoder-decoder Transformer from a :class:`TransformerConfig`, and named presets.

Presets (Vaswani et al. 2017, arXiv 1706.03762, Table 3), with a shared source/target
vocabulary, the paper's three-way tying and post-norm:

====================  ======  =====  ======  =====  =======  ======================================
preset                layers  d      d_ff    heads  dropout  parameters with a 37,000-token vocab
====================  ======  =====  ======  =====  =======  ======================================
``transformer_base``  6 + 6   512    2,048   8      0.1      63,082,496  (paper: 65M)
``transformer_big``   6 + 6   1,024  4,096   16     0.3      214,245,376 (paper: 213M)
``transformer_tiny``  4 + 4   128    256     4      0.1      (fairseq's ``transformer_tiny``)
====================  ======  =====  ======  =====  =======  ======================================

The counts are exact for this implementation (``tests/models/test_presets.py`` checks and
prints them): base is 18.9M shared embedding + 18.9M encoder + 25.2M decoder. The paper's 65M
and 213M are rounded, and the paper states neither its exact vocabulary size after BPE nor how it
counted (e.g. with or without the embedding); 2M parameters of base are about 3,900 vocabulary
rows. Our big model is within 0.6% of 213M.

Initialization: Xavier-uniform for projection matrices and zero biases (as the Annotated
Transformer and ``torch.nn.Transformer``); token embeddings ``N(0, d_model^-0.5)`` so that after
the ``sqrt(d_model)`` scaling they have unit variance, as in fairseq (the paper does not say).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from formers.models.config_base import preset_values
from formers.models.transformer.config import TransformerConfig
from formers.nn.attention import MultiHeadAttention
from formers.nn.embeddings import Embeddings
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.feed_forward import feed_forward
from formers.nn.layers import DecoderLayer, EncoderLayer
from formers.nn.norms import PostNormResidual, PreNormResidual, make_norm
from formers.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from formers.nn.stacks import Decoder, Encoder


def _residual(cfg: TransformerConfig) -> nn.Module:
    norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
    cls = PreNormResidual if cfg.norm_first else PostNormResidual
    return cls(norm, cfg.dropout)


def _rotary(cfg: TransformerConfig) -> RotaryEmbedding | None:
    """One per stack, shared by its layers' self-attention (it holds only cos/sin tables)."""
    if cfg.positions != "rotary":
        return None
    return RotaryEmbedding(cfg.head_dim, base=cfg.rope_base, max_len=cfg.max_positions)


def _attention(
    cfg: TransformerConfig, positions: RotaryEmbedding | None = None, *, cross: bool = False
) -> MultiHeadAttention:
    return MultiHeadAttention(
        cfg.d_model,
        cfg.num_heads,
        cfg.kv_heads,
        dropout=cfg.attention_dropout,
        bias=cfg.bias,
        kernel=cfg.kernel,
        positions=positions,
        cross=cross,
    )


def _ffn(cfg: TransformerConfig) -> nn.Module:
    return feed_forward(cfg.activation, cfg.d_model, cfg.d_ff, cfg.activation_dropout, cfg.bias)


def _positions(cfg: TransformerConfig) -> nn.Module | None:
    if cfg.positions in ("sinusoidal", "sinusoidal_halves"):
        interleave = cfg.positions == "sinusoidal"
        return SinusoidalPositionalEncoding(cfg.d_model, cfg.max_positions, interleave=interleave)
    if cfg.positions == "learned":
        return LearnedPositionalEmbedding(cfg.d_model, cfg.max_positions)
    return None  # rotary: positions enter inside attention


def _final_norm(cfg: TransformerConfig) -> nn.Module | None:
    return make_norm(cfg.norm, cfg.d_model, cfg.norm_eps) if cfg.norm_first else None


def build_encoder(cfg: TransformerConfig) -> Encoder:
    rotary = _rotary(cfg)
    layers = [
        EncoderLayer(_attention(cfg, rotary), _ffn(cfg), _residual(cfg), _residual(cfg))
        for _ in range(cfg.num_encoder_layers)
    ]
    return Encoder(layers, _final_norm(cfg))


def build_decoder(cfg: TransformerConfig) -> Decoder:
    rotary = _rotary(cfg)
    layers = [
        DecoderLayer(
            _attention(cfg, rotary),
            _attention(cfg, cross=True),
            _ffn(cfg),
            _residual(cfg),
            _residual(cfg),
            _residual(cfg),
        )
        for _ in range(cfg.num_decoder_layers)
    ]
    return Decoder(layers, _final_norm(cfg))


def _init_weights(model: EncoderDecoder, cfg: TransformerConfig) -> None:
    for name, p in model.named_parameters():
        if p.dim() > 1 and ".token." not in f".{name}" and "positions" not in name:
            nn.init.xavier_uniform_(p)
        elif name.endswith("bias") and p.dim() == 1 and "norm" not in name:
            nn.init.zeros_(p)
    std = cfg.d_model**-0.5 if cfg.scale_embeddings else 0.02
    for embed in {id(e.token): e.token for e in (model.src_embed, model.tgt_embed)}.values():
        nn.init.normal_(embed.weight, std=std)
        embed.weight.data[cfg.pad_id].zero_()


def build_transformer(config: TransformerConfig | dict[str, Any]) -> EncoderDecoder:
    """Construct an :class:`EncoderDecoder` from a config (or a dict of its fields)."""
    cfg = config if isinstance(config, TransformerConfig) else TransformerConfig.from_dict(config)
    src_token = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
    tgt_token = (
        src_token
        if cfg.share_embeddings
        else nn.Embedding(cfg.target_vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
    )
    scale = None if cfg.scale_embeddings else 1.0
    src_embed = Embeddings(src_token, _positions(cfg), cfg.dropout, scale)
    tgt_embed = Embeddings(tgt_token, _positions(cfg), cfg.dropout, scale)
    generator = nn.Linear(cfg.d_model, cfg.target_vocab_size, bias=cfg.output_bias)
    model = EncoderDecoder(
        build_encoder(cfg),
        build_decoder(cfg),
        src_embed,
        tgt_embed,
        generator,
        pad_id=cfg.pad_id,
        bos_id=cfg.bos_id,
        eos_id=cfg.eos_id,
    )
    _init_weights(model, cfg)
    if cfg.tie_output:
        generator.weight = tgt_token.weight
    model.config = cfg  # kept for checkpoints; modules never read it
    return model


PRESETS: dict[str, dict[str, Any]] = {
    "transformer_base": dict(
        d_model=512,
        d_ff=2048,
        num_heads=8,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.1,
    ),
    "transformer_big": dict(
        d_model=1024,
        d_ff=4096,
        num_heads=16,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.3,
    ),
    "transformer_tiny": dict(
        d_model=128,
        d_ff=256,
        num_heads=4,
        num_encoder_layers=4,
        num_decoder_layers=4,
        dropout=0.1,
    ),
}


def preset_config(name: str, **overrides: Any) -> TransformerConfig:
    """The config of a named preset with keyword overrides (``vocab_size`` is required)."""
    values = preset_values(PRESETS, name, overrides)
    if "vocab_size" not in values:
        raise TypeError(f"{name}() needs vocab_size=..., the size of the (shared) vocabulary")
    return TransformerConfig.from_dict(values)


def transformer_base(**overrides: Any) -> EncoderDecoder:
    """The paper's base model (65M parameters in the paper; 63.1M here with 37k vocabulary)."""
    return build_transformer(preset_config("transformer_base", **overrides))


def transformer_big(**overrides: Any) -> EncoderDecoder:
    """The paper's big model (213M parameters in the paper; 214.2M here with 37k vocabulary)."""
    return build_transformer(preset_config("transformer_big", **overrides))


def transformer_tiny(**overrides: Any) -> EncoderDecoder:
    """A 4+4-layer, 128-wide model (fairseq's ``transformer_tiny`` shape) for quick runs."""
    return build_transformer(preset_config("transformer_tiny", **overrides))
