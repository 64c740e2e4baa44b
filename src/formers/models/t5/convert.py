"""Hugging Face ``T5ForConditionalGeneration`` <-> formers' T5.

T5 1.0 (``feed_forward_proj="relu"``, tied embeddings) and 1.1 (``"gated-gelu"``, a separate
``lm_head``) convert both ways; what our T5 cannot express is refused with the option named:
another feed-forward activation, a model that is not an encoder-decoder, a head width other than
``d_kv``, a decoder start other than the padding token.

Tensor names: our module -> Hugging Face's, per layer (``encoder.block.{i}.layer.{j}``):
self-attention ``q, k, v, o`` -> ``self_attn.{q,k,v,out}_proj``; its ``layer_norm`` -> the
residual's norm; ``DenseReluDense.wi, wo`` (ReLU) or ``wi_0, wi_1, wo`` (gated: gate, up) ->
``feed_forward``; the decoder's ``EncDecAttention`` -> ``cross_attn``. Each stack's
``relative_attention_bias`` lives in its first block in Hugging Face and is shared by all layers
here (one :class:`~formers.nn.relative.T5RelativeBias` a stack). ``shared.weight`` is the token
embedding; ``encoder.embed_tokens`` / ``decoder.embed_tokens`` (and ``lm_head`` when tied) are
Hugging Face's copies of it and may be absent.

Decoding a converted model with :func:`formers.decoding.beam_search` gives ``generate``'s outputs
with ``length_penalty=lambda n: n ** alpha`` and ``forced_eos_log_prob=0.0``, as for Marian.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.models.hf_common import (
    ConversionError,
    check_state_dict,
    read_hf_directory,
    require_transformers,
)
from formers.models.t5.builders import build_t5
from formers.models.t5.config import T5Config
from formers.nn.encoder_decoder import EncoderDecoder

SUPPORTED_MODEL_TYPES = ("t5",)
_FEED_FORWARD = {"relu": ("wi",), "gated-gelu": ("wi_0", "wi_1")}  # theirs, first layers


def config_from_hf(values: Any) -> T5Config:
    """Our config of a Hugging Face ``T5Config`` (object or ``config.json`` dict).

    Raises:
        ConversionError: another model type, or an option our T5 cannot express (named).
    """
    get = values.get if isinstance(values, Mapping) else lambda k, d=None: getattr(values, k, d)
    model_type = get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConversionError(
            f"model_type {model_type!r} is not T5; this converter reads "
            f"{list(SUPPORTED_MODEL_TYPES)}"
        )
    proj = get("feed_forward_proj", "relu")
    if proj not in _FEED_FORWARD:
        raise ConversionError(
            f"feed_forward_proj={proj!r} is not supported; formers' T5 has "
            f"{list(_FEED_FORWARD)} (T5 1.0 and 1.1)"
        )
    if get("is_encoder_decoder", True) is not True:
        raise ConversionError("is_encoder_decoder=False (an encoder-only T5) is not supported")
    pad, start = get("pad_token_id", 0), get("decoder_start_token_id", 0)
    # transformers 5 always ties lm_head to the embedding and says whether to scale the decoder's
    # output apart (scale_decoder_outputs); before, and in T5 1.1 files, untied meant unscaled
    tie = bool(get("tie_word_embeddings", True))
    if start != pad:
        raise ConversionError(
            f"decoder_start_token_id={start} differs from pad_token_id={pad}; formers' T5 starts "
            "decoding from the padding token"
        )
    try:
        return T5Config(
            vocab_size=get("vocab_size"), d_model=get("d_model"), d_kv=get("d_kv"),
            d_ff=get("d_ff"), num_layers=get("num_layers"),
            num_decoder_layers=get("num_decoder_layers") or get("num_layers"),
            num_heads=get("num_heads"),
            relative_attention_num_buckets=get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=get("relative_attention_max_distance", 128),
            dropout=float(get("dropout_rate", 0.1)),
            layer_norm_eps=float(get("layer_norm_epsilon", 1e-6)),
            feed_forward=proj, tie_embeddings=tie,
            scale_decoder_output=bool(get("scale_decoder_outputs", tie)),
            pad_id=pad, bos_id=start, eos_id=get("eos_token_id", 1),
        )  # fmt: skip
    except ValueError as error:
        raise ConversionError(f"the T5 config does not fit formers' T5Config: {error}") from None


def config_to_hf(cfg: T5Config) -> Any:
    """The Hugging Face ``T5Config`` of our config.

    Raises:
        ConversionError: the installed ``transformers`` cannot express it (transformers 5 ties
            T5's ``lm_head`` to its embedding: an untied model cannot be exported there).
    """
    transformers = require_transformers()
    hf = transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
        num_layers=cfg.num_layers, num_decoder_layers=cfg.num_decoder_layers,
        num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        dropout_rate=cfg.dropout, layer_norm_epsilon=cfg.layer_norm_eps,
        feed_forward_proj=cfg.feed_forward, tie_word_embeddings=cfg.scale_decoder_output,
        pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id, decoder_start_token_id=cfg.bos_id,
    )  # fmt: skip
    tied = hf.tie_word_embeddings
    scaled = getattr(hf, "scale_decoder_outputs", tied)
    if (tied, scaled) != (cfg.tie_embeddings, cfg.scale_decoder_output):
        raise ConversionError(
            f"transformers {transformers.__version__}'s T5 cannot express tie_embeddings="
            f"{cfg.tie_embeddings} with scale_decoder_output={cfg.scale_decoder_output} (it makes "
            f"tie_word_embeddings={tied}, scaling {scaled})"
        )
    return hf


def _layer_names(cfg: T5Config) -> list[tuple[str, str]]:
    """``(our name, Hugging Face name)`` of every tensor but the embeddings and output."""
    ffn, theirs_ffn = ["feed_forward.up", "feed_forward.down"], ["wi", "wo"]
    if cfg.feed_forward == "gated-gelu":  # wi_0 is activated (our gate), wi_1 linear (up)
        ffn, theirs_ffn = ["feed_forward.gate", *ffn], ["wi_0", "wi_1", "wo"]
    theirs_ffn = [f"DenseReluDense.{name}" for name in theirs_ffn]
    attention = ("q_proj", "k_proj", "v_proj", "out_proj"), ("q", "k", "v", "o")
    names = []
    for stack, depth in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers)):
        sublayers = [("self_attn", "attn_residual" if stack == "encoder" else "self_residual",
                      "SelfAttention")]  # fmt: skip
        if stack == "decoder":
            sublayers.append(("cross_attn", "cross_residual", "EncDecAttention"))
        for i in range(depth):
            ours, theirs = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            for j, (attn, residual, hf_attn) in enumerate(sublayers):
                for mine, hf in zip(*attention, strict=True):
                    names.append(
                        (f"{ours}.{attn}.{mine}.weight", f"{theirs}.{j}.{hf_attn}.{hf}.weight")
                    )
                names.append((f"{ours}.{residual}.norm.weight", f"{theirs}.{j}.layer_norm.weight"))
            j = len(sublayers)
            for mine, hf in zip(ffn, theirs_ffn, strict=True):
                names.append((f"{ours}.{mine}.weight", f"{theirs}.{j}.{hf}.weight"))
            names.append((f"{ours}.ff_residual.norm.weight", f"{theirs}.{j}.layer_norm.weight"))
        names.append((f"{stack}.final_norm.norm.weight", f"{stack}.final_layer_norm.weight"))
        names.append(
            (
                f"{stack}.layers.0.self_attn.positions.embedding.weight",
                f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            )
        )
    return names  # fmt: skip


def state_dict_from_hf(
    state: Mapping[str, Tensor], cfg: T5Config, where: str = "the T5 state dict"
) -> dict[str, Tensor]:
    """Rename a ``T5ForConditionalGeneration`` state dict into ours for ``cfg``.

    Raises:
        ConversionError: naming missing, unexpected and mis-shaped tensors.
    """
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in build_t5(cfg).state_dict().items()}
    pairs = _layer_names(cfg)
    expected = {theirs: shapes[ours] for ours, theirs in pairs}
    embedding = (cfg.vocab_size, cfg.d_model)
    expected["shared.weight"] = embedding
    for copy in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        if copy in state:
            expected[copy] = embedding
    if not cfg.tie_embeddings or "lm_head.weight" in state:
        expected["lm_head.weight"] = embedding
    check_state_dict(expected, state, where)
    ours = {mine: state[theirs] for mine, theirs in pairs}
    for stack, depth in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers)):
        shared = ours[f"{stack}.layers.0.self_attn.positions.embedding.weight"]
        for i in range(1, depth):  # one bias a stack: the same tensor under every layer's name
            ours[f"{stack}.layers.{i}.self_attn.positions.embedding.weight"] = shared
    ours["src_embed.token.weight"] = ours["tgt_embed.token.weight"] = state["shared.weight"]
    ours["generator.weight"] = state["shared.weight" if cfg.tie_embeddings else "lm_head.weight"]
    return ours


def state_dict_to_hf(model: EncoderDecoder) -> dict[str, Tensor]:
    """Our T5's tensors under ``T5ForConditionalGeneration`` names (tied copies included)."""
    cfg = _config_of(model)
    mine = model.state_dict()
    state = {theirs: mine[ours] for ours, theirs in _layer_names(cfg)}
    token = mine["src_embed.token.weight"]
    for name in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        state[name] = token
    state["lm_head.weight"] = mine["generator.weight"]
    return state


def _config_of(model: EncoderDecoder) -> T5Config:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, T5Config):
        raise ConversionError(
            "the model has no T5Config in .config; build it with build_t5() or load_hf()"
        )
    return cfg


def load_hf(source: str | os.PathLike | Any) -> EncoderDecoder:
    """Import a T5 model (a local directory in safetensors, or a ``T5ForConditionalGeneration``)
    into our T5, in eval mode.

    Raises:
        ConversionError: an unsupported option (named), or tensors that do not fit.
    """
    if isinstance(source, (str, os.PathLike)):
        values, state = read_hf_directory(source)
        where = str(source)
    elif hasattr(source, "config") and hasattr(source, "state_dict"):
        values, state, where = source.config, source.state_dict(), type(source).__name__
    else:
        raise ConversionError(f"expected a model directory or a T5 model, got {type(source)}")
    cfg = config_from_hf(values)
    model = build_t5(cfg)
    model.load_state_dict(state_dict_from_hf(state, cfg, where), strict=True)
    return model.eval()


def to_hf(model: EncoderDecoder) -> Any:
    """Export our T5 as a ``transformers.T5ForConditionalGeneration`` (in eval mode)."""
    transformers = require_transformers()
    hf = transformers.T5ForConditionalGeneration(config_to_hf(_config_of(model)))
    state = {name: t.detach().clone() for name, t in state_dict_to_hf(model).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConversionError(f"exporting to T5: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def save_hf(model: EncoderDecoder, out_dir: str | os.PathLike) -> Path:
    """Write our T5 as a Hugging Face directory (``config.json``, ``model.safetensors``)."""
    out = Path(out_dir)
    to_hf(model).save_pretrained(out)
    return out
