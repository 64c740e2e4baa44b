"""Build a Transformer-XL language model from a :class:`TransformerXLConfig`, and named presets.

Each layer is XL's: self-attention over memory + segment with the relative terms of
:class:`~formers.nn.relative.XLRelativePosition` (``u``, ``v`` and ``W_R`` per layer, the official
code's ``untie_r``), projections without biases, then the feed-forward network; post-norm (the
paper) or pre-norm. Token embeddings are multiplied by ``sqrt(d_model)`` (the official code's
``emb_scale``); there are no absolute positions.

==================== ====== ===== ===== ======= ======= ====== ==================================
preset               layers d     heads d_ff    segment memory what
==================== ====== ===== ===== ======= ======= ====== ==================================
``xl_wt103_base``    16     410   10    2,100   150     150    the paper's WikiText-103 base
                                                               (without its adaptive softmax)
``xl_char_cpu``      4      128   4     512     64      64     the size of ``nanogpt_char_cpu``
==================== ====== ===== ===== ======= ======= ====== ==================================

``xl_char_cpu`` matches the GPT preset it is compared with everywhere but attention: exact GELU,
pre-norm, LayerNorm and feed-forward without biases, no dropout, tied output.

Initialization (the official code's ``init = "normal"``): every weight matrix, embedding and the
``u``, ``v`` biases ``N(0, 0.02)``; biases zero; norm gains one.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from formers.models.config_base import preset_values
from formers.models.transformer_xl.config import TransformerXLConfig
from formers.nn.attention import MultiHeadAttention
from formers.nn.embeddings import Embeddings
from formers.nn.feed_forward import feed_forward
from formers.nn.norms import PostNormResidual, PreNormResidual, make_norm
from formers.nn.recurrent_lm import MemoryLayer, RecurrentLM
from formers.nn.relative import XLRelativePosition
from formers.nn.stacks import Decoder

INIT_STD = 0.02


def _layer(cfg: TransformerXLConfig) -> MemoryLayer:
    d, h, dh = cfg.d_model, cfg.num_heads, cfg.dim_per_head
    attention = MultiHeadAttention(
        d, h, head_dim=dh, dropout=cfg.attention_dropout, bias=False, kernel=cfg.kernel,
        positions=XLRelativePosition(d, h, dh),
    )  # fmt: skip
    ffn = feed_forward(cfg.activation, d, cfg.d_ff, cfg.dropout, cfg.bias)
    residual = PreNormResidual if cfg.pre_norm else PostNormResidual

    def norm() -> nn.Module:
        return make_norm(cfg.norm, d, cfg.norm_eps, bias=cfg.bias)

    return MemoryLayer(attention, ffn, residual(norm(), cfg.dropout), residual(norm(), cfg.dropout))


def _init_weights(model: RecurrentLM) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, XLRelativePosition):
            nn.init.normal_(module.u, std=INIT_STD)
            nn.init.normal_(module.v, std=INIT_STD)


def build_transformer_xl(config: TransformerXLConfig | dict[str, Any]) -> RecurrentLM:
    """Construct a :class:`~formers.nn.recurrent_lm.RecurrentLM` from a config (or a dict)."""
    cfg = (
        config if isinstance(config, TransformerXLConfig) else TransformerXLConfig.from_dict(config)
    )
    token = nn.Embedding(cfg.vocab_size, cfg.d_model)
    embed = Embeddings(token, None, cfg.dropout, scale=math.sqrt(cfg.d_model))
    final_norm = (
        make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, bias=cfg.bias) if cfg.pre_norm else None
    )
    decoder = Decoder([_layer(cfg) for _ in range(cfg.num_layers)], final_norm)
    generator = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    model = RecurrentLM(
        embed, decoder, generator, segment_length=cfg.segment_length,
        memory_length=cfg.memory_length, output_dropout=cfg.dropout, pad_id=cfg.pad_id,
        bos_id=cfg.bos_id, eos_id=cfg.eos_id,
    )  # fmt: skip
    _init_weights(model)
    if cfg.tie_output:
        generator.weight = token.weight
    model.config = cfg  # kept for checkpoints; modules never read it
    return model


PRESETS: dict[str, dict[str, Any]] = {
    "xl_wt103_base": dict(
        d_model=410, head_dim=41, d_ff=2100, num_layers=16, num_heads=10, segment_length=150,
        memory_length=150, dropout=0.1, attention_dropout=0.0, activation="relu",
        pre_norm=False,
    ),
    "xl_char_cpu": dict(
        d_model=128, d_ff=512, num_layers=4, num_heads=4, segment_length=64, memory_length=64,
        dropout=0.0, attention_dropout=0.0, activation="gelu", pre_norm=True, bias=False,
    ),
}  # fmt: skip


def preset_config(name: str, **overrides: Any) -> TransformerXLConfig:
    """The config of a named preset with keyword overrides (``vocab_size`` is required)."""
    values = preset_values(PRESETS, name, overrides)
    if "vocab_size" not in values:
        raise TypeError(f"preset {name!r} needs vocab_size=..., the size of the vocabulary")
    return TransformerXLConfig.from_dict(values)
