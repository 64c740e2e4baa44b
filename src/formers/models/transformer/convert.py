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

Configs are translated by :func:`config_from_hf` / :func:`config_to_hf` (in
:mod:`formers.models.transformer.convert_config`, re-exported here). Tensor names are mapped in
``_ENCODER_LAYER`` / ``_DECODER_LAYER`` below; on import the prefix ``model.`` is optional, and
Hugging Face's tied copies of the shared embedding, ``lm_head.weight`` when tied, and the position
tables may be absent. ``final_logits_bias`` ``(1, V)`` is our ``generator.bias`` ``(V,)``.
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
from formers.models.transformer.builders import build_transformer
from formers.models.transformer.config import TransformerConfig
from formers.models.transformer.convert_config import (
    ACTIVATIONS,
    SUPPORTED_MODEL_TYPES,
    config_from_hf,
    config_to_hf,
)
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.positional import sinusoidal_table

__all__ = [
    "ACTIVATIONS",
    "SUPPORTED_MODEL_TYPES",
    "config_from_hf",
    "config_to_hf",
    "load_hf",
    "save_hf",
    "state_dict_from_hf",
    "state_dict_to_hf",
    "to_hf",
]


# --- tensor names -----------------------------------------------------------------------------


def _attention_block(ours: str, residual: str, theirs: str) -> dict[str, str]:
    """An attention sublayer's modules: its projections and its residual's norm."""
    names = {f"{ours}.{p}": f"{theirs}.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
    return {**names, f"{residual}.norm": f"{theirs}_layer_norm"}


_FEED_FORWARD_BLOCK = {
    "feed_forward.up": "fc1",
    "feed_forward.down": "fc2",
    "ff_residual.norm": "final_layer_norm",
}
# per layer: our module -> Hugging Face's (each has a .weight and a .bias)
_ENCODER_LAYER = {
    **_attention_block("self_attn", "attn_residual", "self_attn"),
    **_FEED_FORWARD_BLOCK,
}
_DECODER_LAYER = {
    **_attention_block("self_attn", "self_residual", "self_attn"),
    **_attention_block("cross_attn", "cross_residual", "encoder_attn"),
    **_FEED_FORWARD_BLOCK,
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
        values, state = source.config, source.state_dict()
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
