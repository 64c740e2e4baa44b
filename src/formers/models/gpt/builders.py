"""Build a decoder-only language model from a :class:`GPTConfig`, and named presets.

Every model is pre-norm (GPT-2, Radford et al. 2019, section 2.3; LLaMA, arXiv 2302.13971): each
sublayer reads ``norm(x)`` and adds its output to the residual stream, and the stack ends with a
final norm. Token embeddings are *not* multiplied by ``sqrt(d_model)`` (unlike the Transformer
paper, arXiv 1706.03762, section 3.4).

==================== ====== ===== ===== ======== ======= ======= ==================================
preset               layers d     heads kv heads d_ff    context what
==================== ====== ===== ===== ======== ======= ======= ==================================
``gpt2_small``       12     768   12    12       3,072   1,024   GPT-2 small: 124,439,808 params
                                                                 with its 50,257-token vocabulary
``llama_small``      12     768   12    4        2,048   2,048   LLaMA shape: RMSNorm, SwiGLU,
                                                                 RoPE, GQA, no biases, untied
``nanogpt_char``     6      384   6     6        1,536   256     nanoGPT ``shakespeare_char``
``nanogpt_char_cpu`` 4      128   4     4        512     64      its CPU-sized variant
==================== ====== ===== ===== ======== ======= ======= ==================================

``gpt2_small`` uses GELU (tanh approximation), LayerNorm (eps 1e-5), learned positions, a tied
output projection, biases and dropout 0.1. The nanoGPT presets follow ``config/train_shakespeare_
char.py`` of nanoGPT: exact GELU, LayerNorm and linear maps without biases, dropout 0.2 (0.0 on
CPU). Every preset but ``gpt2_small`` needs ``vocab_size``, which comes from the tokenizer.

Initialization (GPT-2 / nanoGPT): every weight matrix and embedding ``N(0, 0.02)``; the output
projections of each residual branch (attention ``out_proj`` and the feed-forward ``down``)
``N(0, 0.02 / sqrt(2 * num_layers))``, so that the residual stream's variance does not grow with
depth (GPT-2, section 2.3); biases zero; norm gains one.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from formers.models.config_base import preset_values
from formers.models.gpt.config import GPTConfig
from formers.nn.attention import MultiHeadAttention
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.embeddings import Embeddings
from formers.nn.feed_forward import feed_forward
from formers.nn.layers import DecoderLayer
from formers.nn.norms import PreNormResidual, make_norm
from formers.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from formers.nn.stacks import Decoder

INIT_STD = 0.02


def _norm(cfg: GPTConfig) -> nn.Module:
    return make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, bias=cfg.bias)


def _layer(cfg: GPTConfig, rotary: RotaryEmbedding | None) -> DecoderLayer:
    attention = MultiHeadAttention(
        cfg.d_model,
        cfg.num_heads,
        cfg.kv_heads,
        dropout=cfg.attention_dropout,
        bias=cfg.bias,
        kernel=cfg.kernel,
        positions=rotary,
    )
    # GPT-2 and nanoGPT drop out only the branch output (the residual wrapper), not inside it.
    ffn = feed_forward(cfg.activation, cfg.d_model, cfg.d_ff, 0.0, cfg.bias)
    return DecoderLayer(
        attention,
        None,
        ffn,
        PreNormResidual(_norm(cfg), cfg.dropout),
        None,
        PreNormResidual(_norm(cfg), cfg.dropout),
    )


def _positions(cfg: GPTConfig) -> nn.Module | None:
    if cfg.positions == "learned":
        return LearnedPositionalEmbedding(cfg.d_model, cfg.context_length)
    if cfg.positions == "sinusoidal":
        return SinusoidalPositionalEncoding(cfg.d_model, cfg.context_length)
    return None  # rotary: positions enter inside attention


def _init_weights(model: DecoderOnlyLM, num_layers: int) -> None:
    """GPT-2's initialization (see the module docstring)."""
    residual_std = INIT_STD / math.sqrt(2 * num_layers)
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
    for layer in model.decoder.layers:
        nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
        nn.init.normal_(layer.feed_forward.down.weight, std=residual_std)


def build_gpt(config: GPTConfig | dict[str, Any]) -> DecoderOnlyLM:
    """Construct a :class:`DecoderOnlyLM` from a config (or a dict of its fields)."""
    cfg = config if isinstance(config, GPTConfig) else GPTConfig.from_dict(config)
    token = nn.Embedding(cfg.vocab_size, cfg.d_model)
    embed = Embeddings(token, _positions(cfg), cfg.dropout, scale=1.0)
    # One rotary module serves every layer: it holds only non-persistent cos/sin tables.
    rotary = (
        RotaryEmbedding(cfg.head_dim, base=cfg.rope_base, max_len=cfg.context_length)
        if cfg.positions == "rotary"
        else None
    )
    decoder = Decoder([_layer(cfg, rotary) for _ in range(cfg.num_layers)], _norm(cfg))
    generator = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    model = DecoderOnlyLM(
        embed,
        decoder,
        generator,
        context_length=cfg.context_length,
        pad_id=cfg.pad_id,
        bos_id=cfg.bos_id,
        eos_id=cfg.eos_id,
    )
    _init_weights(model, cfg.num_layers)
    if cfg.tie_output:
        generator.weight = token.weight
    model.config = cfg  # kept for checkpoints and converters; modules never read it
    return model


_NANOGPT_CHAR = dict(
    d_model=384,
    num_layers=6,
    num_heads=6,
    d_ff=1536,
    context_length=256,
    dropout=0.2,
    attention_dropout=0.2,
    activation="gelu",
    norm="layernorm",
    positions="learned",
    tie_output=True,
    bias=False,
)

PRESETS: dict[str, dict[str, Any]] = {
    "gpt2_small": dict(
        vocab_size=50257,
        d_model=768,
        num_layers=12,
        num_heads=12,
        d_ff=3072,
        context_length=1024,
        dropout=0.1,
        attention_dropout=0.1,
        activation="gelu_tanh",
        norm="layernorm",
        norm_eps=1e-5,
        positions="learned",
        tie_output=True,
        bias=True,
        bos_id=50256,
        eos_id=50256,
    ),
    "llama_small": dict(
        d_model=768,
        num_layers=12,
        num_heads=12,
        num_kv_heads=4,
        d_ff=2048,
        context_length=2048,
        dropout=0.0,
        attention_dropout=0.0,
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=1e-5,
        positions="rotary",
        rope_base=10000.0,
        tie_output=False,
        bias=False,
    ),
    "nanogpt_char": _NANOGPT_CHAR,
    "nanogpt_char_cpu": {
        **_NANOGPT_CHAR,
        "d_model": 128,
        "num_layers": 4,
        "num_heads": 4,
        "d_ff": 512,
        "context_length": 64,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    },
}


def preset_config(name: str, **overrides: Any) -> GPTConfig:
    """The config of a named preset with keyword overrides.

    ``vocab_size`` is required for every preset but ``gpt2_small`` (it comes from the tokenizer).
    """
    values = preset_values(PRESETS, name, overrides)
    if "vocab_size" not in values:
        raise TypeError(f"preset {name!r} needs vocab_size=..., the size of the vocabulary")
    return GPTConfig.from_dict(values)
