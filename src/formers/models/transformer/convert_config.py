"""Hugging Face ``MarianConfig`` <-> our :class:`TransformerConfig`: the config half of
:mod:`formers.models.transformer.convert` (whose docstring lists how Marian differs from the
paper's Transformer and which of our options express each difference).

Import from :mod:`formers.models.transformer.convert`, which re-exports everything public here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from formers.models.config_base import ConfigError
from formers.models.hf_common import ConversionError, require_transformers
from formers.models.transformer.config import TransformerConfig

SUPPORTED_MODEL_TYPES = ("marian",)

# Hugging Face activation name -> ours (non-gated feed-forward kinds)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "silu", "silu": "silu",
               "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}  # fmt: skip
_EXPORT_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "silu": "swish",
                       "gelu_tanh": "gelu_pytorch_tanh"}  # fmt: skip

# MarianConfig's defaults (transformers 5), for config.json files that leave keys out
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 58101,
    "decoder_vocab_size": None,
    "max_position_embeddings": 1024,
    "encoder_layers": 12,
    "encoder_ffn_dim": 4096,
    "encoder_attention_heads": 16,
    "decoder_layers": 12,
    "decoder_ffn_dim": 4096,
    "decoder_attention_heads": 16,
    "activation_function": "gelu",
    "d_model": 1024,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "decoder_start_token_id": 58100,
    "scale_embedding": False,
    "pad_token_id": 58100,
    "eos_token_id": 0,
    "share_encoder_decoder_embeddings": True,
    "tie_word_embeddings": True,
}

# options of related Hugging Face configs (BART, FSMT) that MarianMTModel does not have
_UNSUPPORTED_FLAGS = {
    "normalize_before": "pre-norm layers",
    "add_final_layer_norm": "final stack norms",
    "normalize_embedding": "a LayerNorm on the embeddings",
    "layernorm_embedding": "a LayerNorm on the embeddings",
}


def _as_dict(hf: Mapping[str, Any] | Any) -> dict[str, Any]:
    if isinstance(hf, Mapping):
        return dict(hf)
    if hasattr(hf, "to_dict"):
        return hf.to_dict()
    raise ConversionError(f"expected a config dict or a transformers MarianConfig, got {type(hf)}")


def config_from_hf(hf: Mapping[str, Any] | Any) -> TransformerConfig:
    """Our config for a Hugging Face Marian config (a ``config.json`` dict or a ``MarianConfig``).

    Raises:
        ConversionError: another ``model_type``, or a feature our model cannot express (different
            encoder and decoder widths or head counts, an unknown activation, several EOS ids).
    """
    values = _as_dict(hf)
    model_type = values.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConversionError(
            f"model_type {model_type!r} is not supported by the encoder-decoder converter; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )

    def get(key: str) -> Any:
        return values.get(key, _DEFAULTS.get(key))

    for key, what in _UNSUPPORTED_FLAGS.items():
        if values.get(key):
            raise ConversionError(f"{key}=true ({what}) is not supported: Marian has none")
    for what in ("attention_heads", "ffn_dim"):
        enc, dec = get(f"encoder_{what}"), get(f"decoder_{what}")
        if enc != dec:
            raise ConversionError(
                f"encoder_{what}={enc} differs from decoder_{what}={dec}; formers' "
                "encoder-decoder uses one value for both stacks"
            )
    activation = get("activation_function")
    if activation not in ACTIVATIONS:
        raise ConversionError(
            f"activation_function {activation!r} is not supported; supported: {sorted(ACTIVATIONS)}"
        )
    eos = get("eos_token_id")
    if isinstance(eos, list):
        if len(eos) != 1:
            raise ConversionError(f"several eos_token_id {eos} are not supported; give one")
        eos = eos[0]
    pad = get("pad_token_id")
    if pad is None:
        raise ConversionError("pad_token_id is null; Marian models need a padding token")
    start = get("decoder_start_token_id")
    start = pad if start is None else start
    tie = bool(get("tie_word_embeddings"))
    # with tie_word_embeddings=false Hugging Face ties nothing, not even encoder to decoder
    share = bool(get("share_encoder_decoder_embeddings")) and tie
    vocab = get("vocab_size")
    tgt_vocab = None if share else get("decoder_vocab_size") or vocab
    try:
        return TransformerConfig(
            vocab_size=vocab,
            tgt_vocab_size=tgt_vocab,
            d_model=get("d_model"),
            d_ff=get("encoder_ffn_dim"),
            num_heads=get("encoder_attention_heads"),
            num_encoder_layers=get("encoder_layers"),
            num_decoder_layers=get("decoder_layers"),
            dropout=float(get("dropout")),
            attention_dropout=float(get("attention_dropout")),
            activation_dropout=float(get("activation_dropout")),
            activation=ACTIVATIONS[activation],
            norm="layernorm",
            norm_eps=1e-5,
            norm_first=False,
            positions="sinusoidal_halves",
            max_positions=get("max_position_embeddings"),
            share_embeddings=share,
            tie_output=tie,
            output_bias=True,
            scale_embeddings=bool(get("scale_embedding")),
            bias=True,
            pad_id=pad,
            bos_id=start,
            eos_id=eos,
        )
    except ConfigError as error:
        raise ConversionError(f"the Marian config cannot be expressed: {error}") from None


def config_to_hf(cfg: TransformerConfig) -> Any:
    """A ``transformers.MarianConfig`` for our config, if Marian can express it.

    Raises:
        ConversionError: naming each option Marian lacks (pre-norm, RMSNorm, rotary, learned or
            interleaved sinusoidal positions, GQA, gated feed-forwards, no biases, ...).
    """
    transformers = require_transformers()
    problems = []
    if cfg.norm_first:
        problems.append("norm_first=True (Marian is post-norm)")
    if cfg.norm != "layernorm" or cfg.norm_eps != 1e-5:
        problems.append(f"norm={cfg.norm!r}, norm_eps={cfg.norm_eps} (Marian: LayerNorm, 1e-5)")
    if cfg.positions != "sinusoidal_halves":
        problems.append(
            f"positions={cfg.positions!r} (Marian's sinusoid is 'sinusoidal_halves': [sin | cos])"
        )
    if cfg.kv_heads != cfg.num_heads:
        problems.append(f"num_kv_heads={cfg.kv_heads} (Marian has no GQA/MQA)")
    if cfg.activation not in _EXPORT_ACTIVATIONS:
        problems.append(f"activation={cfg.activation!r} (Marian: {sorted(_EXPORT_ACTIVATIONS)})")
    if not cfg.bias:
        problems.append("bias=False (Marian's projections have biases)")
    if problems:
        raise ConversionError("this model cannot be written as Marian: " + "; ".join(problems))
    return transformers.MarianConfig(
        vocab_size=cfg.vocab_size,
        decoder_vocab_size=cfg.target_vocab_size,
        max_position_embeddings=cfg.max_positions,
        encoder_layers=cfg.num_encoder_layers,
        decoder_layers=cfg.num_decoder_layers,
        encoder_ffn_dim=cfg.d_ff,
        decoder_ffn_dim=cfg.d_ff,
        encoder_attention_heads=cfg.num_heads,
        decoder_attention_heads=cfg.num_heads,
        activation_function=_EXPORT_ACTIVATIONS[cfg.activation],
        d_model=cfg.d_model,
        dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        scale_embedding=cfg.scale_embeddings,
        pad_token_id=cfg.pad_id,
        eos_token_id=cfg.eos_id,
        forced_eos_token_id=cfg.eos_id,
        decoder_start_token_id=cfg.bos_id,
        bos_token_id=None,
        share_encoder_decoder_embeddings=cfg.share_embeddings,
        tie_word_embeddings=cfg.tie_output,
    )
