"""Hugging Face Marian (``MarianMTModel``) <-> formers' encoder-decoder Transformer.

Marian (Junczys-Dowmunt et al. 2018, arXiv 1804.00344; the OPUS-MT models, Tiedemann & Thottingal
2020) is the paper's post-norm Transformer (arXiv 1706.03762) with four differences, each of which
our config expresses:

- the sinusoid is laid out as ``[sin | cos]`` halves instead of interleaved:
  ``positions="sinusoidal_halves"``. It is computed, not stored (Hugging Face does not save it
  either), and, like Hugging Face's table, covers ``max_position_embeddings`` positions (ours
  extends beyond them on demand; Hugging Face's cannot);
- a bias on the output logits (``final_logits_bias``, a frozen buffer in Hugging Face):
  ``output_bias=True`` (a trainable parameter here, as in Marian itself);
- the decoder starts from the padding token (``decoder_start_token_id == pad_token_id``):
  ``bos_id = pad_id``. Our searches never emit ``pad_id`` or ``bos_id``, as Marian checkpoints'
  ``bad_words_ids = [[pad]]`` forbids; :func:`to_hf` sets that generation option too;
- the feed-forward activation is often ``swish``: ``activation="silu"`` (plain, not gated).

Embedding scaling by ``sqrt(d_model)`` (``scale_embedding``), attention scaling, LayerNorm
(``eps = 1e-5``) after every sublayer and no final stack norms are ours already.
``encoder_layerdrop``/``decoder_layerdrop`` are training-time options that we ignore.

Use :func:`load_hf` to import (a directory written by ``save_pretrained``, in safetensors, or a
``MarianMTModel`` object) and :func:`to_hf` / :func:`save_hf` to export. Decoding a converted
model with :func:`formers.decoding.beam_search` gives ``generate``'s outputs with
``length_penalty=lambda n: n ** alpha`` and ``forced_eos_log_prob=0.0`` (see its docstring).

Tensor names are mapped in ``_ENCODER_LAYER`` / ``_DECODER_LAYER`` below; on import the prefix
``model.`` is optional, and Hugging Face's tied copies of the shared embedding, ``lm_head.weight``
when tied, and the position tables may be absent. ``final_logits_bias`` ``(1, V)`` is our
``generator.bias`` ``(V,)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from formers.models.config_base import ConfigError
from formers.models.hf_common import (
    ConversionError,
    check_state_dict,
    read_hf_directory,
    require_transformers,
)
from formers.models.transformer.builders import build_transformer
from formers.models.transformer.config import TransformerConfig
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.positional import sinusoidal_table

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

_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")


# --- configs ----------------------------------------------------------------------------------


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


# --- tensor names -----------------------------------------------------------------------------

# per layer: our module -> Hugging Face's (each has a .weight and a .bias)
_ENCODER_LAYER = {
    **{f"self_attn.{p}": f"self_attn.{p}" for p in _ATTENTION},
    "attn_residual.norm": "self_attn_layer_norm",
    "feed_forward.up": "fc1",
    "feed_forward.down": "fc2",
    "ff_residual.norm": "final_layer_norm",
}
_DECODER_LAYER = {
    **{f"self_attn.{p}": f"self_attn.{p}" for p in _ATTENTION},
    "self_residual.norm": "self_attn_layer_norm",
    **{f"cross_attn.{p}": f"encoder_attn.{p}" for p in _ATTENTION},
    "cross_residual.norm": "encoder_attn_layer_norm",
    "feed_forward.up": "fc1",
    "feed_forward.down": "fc2",
    "ff_residual.norm": "final_layer_norm",
}


def _layer_names(cfg: TransformerConfig) -> list[tuple[str, str]]:
    """``(our name, Hugging Face name without "model.")`` of every layer tensor."""
    names = []
    for stack, depth, table in (
        ("encoder", cfg.num_encoder_layers, _ENCODER_LAYER),
        ("decoder", cfg.num_decoder_layers, _DECODER_LAYER),
    ):
        for i in range(depth):
            for ours, theirs in table.items():
                for kind in ("weight", "bias"):
                    names.append(
                        (f"{stack}.layers.{i}.{ours}.{kind}", f"{stack}.layers.{i}.{theirs}.{kind}")
                    )
    return names


def _shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Our tensor name -> shape, from a model built without memory (on the meta device)."""
    with torch.device("meta"):
        model = build_transformer(cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _strip_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name.removeprefix("model."): tensor for name, tensor in state.items()}


def state_dict_from_hf(
    state: Mapping[str, Tensor], cfg: TransformerConfig, where: str = "the Marian state dict"
) -> dict[str, Tensor]:
    """Rename a ``MarianMTModel`` state dict into ours for ``cfg`` (from :func:`config_from_hf`).

    Args:
        state: Hugging Face tensors, named with or without the ``model.`` prefix.
        cfg: our config of the same model.
        where: what is being read, for error messages (e.g. a directory).

    Returns:
        A state dict for ``build_transformer(cfg)`` (tied weights under each of their names).

    Raises:
        ConversionError: naming missing, unexpected and mis-shaped tensors.
    """
    state = _strip_prefix(state)
    d, src_vocab, tgt_vocab = cfg.d_model, cfg.vocab_size, cfg.target_vocab_size
    shapes = _shapes(cfg)
    expected = {theirs: shapes[ours] for ours, theirs in _layer_names(cfg)}
    expected["final_logits_bias"] = (1, tgt_vocab)
    optional: dict[str, tuple[int, ...]] = {}
    if cfg.share_embeddings:
        copies = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
        present = [name for name in copies if name in state]
        # one copy is needed; Hugging Face's tied duplicates may be there too
        for name in present or copies[:1]:
            expected[name] = (src_vocab, d)
        src_name = tgt_name = present[0] if present else copies[0]
    else:
        src_name, tgt_name = "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"
        expected[src_name], expected[tgt_name] = (src_vocab, d), (tgt_vocab, d)
        optional["shared.weight"] = (src_vocab, d)  # unused by the model when not shared
    if cfg.tie_output:
        optional["lm_head.weight"] = (tgt_vocab, d)
    else:
        expected["lm_head.weight"] = (tgt_vocab, d)
    expected.update({name: shape for name, shape in optional.items() if name in state})
    ignore = ("embed_positions.weight",)
    check_state_dict(expected, state, where, ignore=ignore)
    if cfg.share_embeddings:
        _check_copies(state, [n for n in copies if n in state], where)
    if cfg.tie_output and "lm_head.weight" in state:
        _check_copies(state, [tgt_name, "lm_head.weight"], where)
    _check_positions(state, cfg, where)

    ours = {mine: state[theirs] for mine, theirs in _layer_names(cfg)}
    ours["src_embed.token.weight"] = state[src_name]
    ours["tgt_embed.token.weight"] = state[tgt_name]
    ours["generator.weight"] = state[tgt_name if cfg.tie_output else "lm_head.weight"]
    ours["generator.bias"] = state["final_logits_bias"].reshape(tgt_vocab)
    return ours


def _check_copies(state: Mapping[str, Tensor], names: list[str], where: str) -> None:
    for name in names[1:]:
        if not torch.equal(state[names[0]], state[name]):
            raise ConversionError(
                f"{where}: {name} differs from {names[0]}, but the config ties them "
                "(share_encoder_decoder_embeddings / tie_word_embeddings)"
            )


def _check_positions(state: Mapping[str, Tensor], cfg: TransformerConfig, where: str) -> None:
    """Position tables, where present, must be Marian's sinusoid (we compute ours)."""
    for side in ("encoder", "decoder"):
        table = state.get(f"{side}.embed_positions.weight")
        if table is None:
            continue
        n = table.size(0)
        expected = sinusoidal_table(torch.arange(n), cfg.d_model, interleave=False)
        # ours is computed in float32: the angle pos * w is off by up to pos * 2^-23
        tolerance = 1e-5 + n * 2.0**-21
        if table.shape != expected.shape or (table.float() - expected).abs().max() > tolerance:
            raise ConversionError(
                f"{where}: {side}.embed_positions.weight {tuple(table.shape)} is not Marian's "
                f"[sin | cos] sinusoid for d_model={cfg.d_model}; learned or other position "
                "tables are not supported"
            )


def state_dict_to_hf(model: EncoderDecoder) -> dict[str, Tensor]:
    """Our model's tensors under ``MarianMTModel`` names (with the ``model.`` prefix).

    Shared and tied embeddings appear under each Hugging Face name (as in its ``state_dict()``);
    position tables are left out (Hugging Face computes them). A model without an output bias
    gets a zero ``final_logits_bias``.
    """
    cfg = _config_of(model)
    mine = model.state_dict()
    state = {f"model.{theirs}": mine[ours] for ours, theirs in _layer_names(cfg)}
    src, tgt = mine["src_embed.token.weight"], mine["tgt_embed.token.weight"]
    state["model.encoder.embed_tokens.weight"] = src
    state["model.decoder.embed_tokens.weight"] = tgt
    if cfg.share_embeddings:
        state["model.shared.weight"] = src
    state["lm_head.weight"] = mine["generator.weight"]
    bias = mine.get("generator.bias")
    if bias is None:
        bias = torch.zeros(cfg.target_vocab_size, dtype=src.dtype, device=src.device)
    state["final_logits_bias"] = bias.reshape(1, -1)
    return state


def _config_of(model: EncoderDecoder) -> TransformerConfig:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, TransformerConfig):
        raise ConversionError(
            "the model has no TransformerConfig in .config; build it with build_transformer() "
            "or load it with load_hf()"
        )
    return cfg


# --- whole models -----------------------------------------------------------------------------


def load_hf(source: str | os.PathLike | Any) -> EncoderDecoder:
    """Import a Marian model into an :class:`EncoderDecoder` (in eval mode).

    Args:
        source: a local Hugging Face model directory (``config.json`` + safetensors weights;
            needs only ``safetensors``), or a ``transformers`` ``MarianMTModel``.

    Raises:
        ConversionError: an unsupported architecture, or tensors that do not fit the config.
    """
    if isinstance(source, (str, os.PathLike)):
        values, state = read_hf_directory(source)
        where = str(source)
    elif hasattr(source, "config") and hasattr(source, "state_dict"):
        values, state = _as_dict(source.config), source.state_dict()
        where = type(source).__name__
    else:
        raise ConversionError(
            f"expected a model directory or a transformers MarianMTModel, got {type(source)}"
        )
    cfg = config_from_hf(values)
    model = build_transformer(cfg)
    model.load_state_dict(state_dict_from_hf(state, cfg, where), strict=True)
    return model.eval()


def to_hf(model: EncoderDecoder) -> Any:
    """Export our model as a ``transformers.MarianMTModel`` (in eval mode), where Marian can
    express its architecture (see :func:`config_to_hf`).

    Its generation config forbids the padding token (``bad_words_ids``), as Marian checkpoints do
    and as our searches do.
    """
    transformers = require_transformers()
    cfg = _config_of(model)
    hf_config = config_to_hf(cfg)
    hf = transformers.MarianMTModel(hf_config)
    state = {name: t.detach().clone() for name, t in state_dict_to_hf(model).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise ConversionError(
            f"exporting to MarianMTModel: missing {missing}, unexpected {unexpected}"
        )
    hf.generation_config.bad_words_ids = [[cfg.pad_id]]
    return hf.eval()


def save_hf(model: EncoderDecoder, out_dir: str | os.PathLike) -> Path:
    """Write our model as a Hugging Face Marian directory (``config.json``,
    ``generation_config.json``, ``model.safetensors``); returns the directory."""
    out = Path(out_dir)
    to_hf(model).save_pretrained(out)
    return out
