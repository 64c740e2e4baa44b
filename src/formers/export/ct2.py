"""Export to CTranslate2 (https://github.com/OpenNMT/CTranslate2): a model specification filled
with our weights, written by CTranslate2's own converter machinery.

Two kinds of checkpoint can be expressed:

- the encoder-decoder ``transformer`` family -> ``TransformerSpec`` (``ctranslate2.Translator``):
  the paper's post-norm model with sinusoidal positions and shared embeddings, pre-norm,
  LayerNorm or RMSNorm, every feed-forward kind (GELU, SiLU and the GLU family through
  ``ffn_glu``), learned or sinusoidal positions (the table is exported, whatever its layout),
  RoPE, grouped key/value heads, an output bias;
- the decoder-only ``gpt`` family -> ``TransformerDecoderModelSpec`` (``ctranslate2.Generator``).

What CTranslate2's specification cannot express is refused with an :class:`ExportError` naming
the option: another family (T5's and Transformer-XL's relative schemes, BERT's encoder-only
heads), or a vocabulary whose pieces are not distinct (CTranslate2 addresses tokens by string).

CTranslate2 takes tokens as strings: the exported vocabulary is the checkpoint tokenizer's
pieces in id order, and the tokenizer file is copied beside the model so that users can encode
text the same way (``Tokenizer.encode`` then ``pieces``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from formers.export.common import ExportError, require_module

# our activation -> CTranslate2's (common_spec.Activation member name)
_ACTIVATIONS = {"relu": "RELU", "gelu": "GELU", "gelu_tanh": "GELUTanh", "silu": "SWISH"}
# gated kinds -> the gate's activation
_GATED = {"glu": "Sigmoid", "reglu": "RELU", "geglu": "GELU", "swiglu": "SWISH"}


def _np(t: torch.Tensor) -> Any:
    # a copy: CTranslate2's optimize step rewrites its arrays in place (scaling, quantizing),
    # which must not reach the model's own weights
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _activation(ct2: Any, kind: str) -> tuple[Any, bool]:
    """``(CTranslate2 activation, gated)`` for one of our feed-forward kinds."""
    names = {**_ACTIVATIONS, **_GATED}
    if kind not in names:
        raise ExportError(f"activation={kind!r} cannot be exported to CTranslate2")
    return getattr(ct2.specs.common_spec.Activation, names[kind]), kind in _GATED


def _set_linear(spec: Any, linear: nn.Linear) -> None:
    spec.weight = _np(linear.weight)
    if linear.bias is not None:
        spec.bias = _np(linear.bias)


def _set_norm(spec: Any, norm: nn.Module) -> None:
    spec.gamma = _np(norm.weight)
    if hasattr(spec, "beta"):  # LayerNorm: a norm built without a bias has a zero one
        bias = getattr(norm, "bias", None)
        spec.beta = _np(bias) if bias is not None else _np(torch.zeros_like(norm.weight))


def _fuse(spec: Any, linears: list[nn.Linear]) -> None:
    """One CTranslate2 linear for several of ours, stacked along the outputs (QKV or KV), by
    CTranslate2's own ``fuse_linear`` (a missing bias becomes zeros)."""
    import ctranslate2

    parts = [ctranslate2.specs.common_spec.LinearSpec() for _ in linears]
    for part, linear in zip(parts, linears, strict=True):
        _set_linear(part, linear)
    ctranslate2.converters.utils.fuse_linear(spec, parts)


def _set_self_attention(spec: Any, attn: nn.Module, norm: nn.Module) -> None:
    _fuse(spec.linear[0], [attn.q_proj, attn.k_proj, attn.v_proj])
    _set_linear(spec.linear[1], attn.out_proj)
    _set_norm(spec.layer_norm, norm)


def _set_cross_attention(spec: Any, attn: nn.Module, norm: nn.Module) -> None:
    _set_linear(spec.linear[0], attn.q_proj)
    _fuse(spec.linear[1], [attn.k_proj, attn.v_proj])
    _set_linear(spec.linear[2], attn.out_proj)
    _set_norm(spec.layer_norm, norm)


def _set_ffn(spec: Any, ffn: nn.Module, norm: nn.Module) -> None:
    if hasattr(ffn, "gate"):  # act(gate(x)) * up(x): CTranslate2's linear_0 is activated
        _set_linear(spec.linear_0, ffn.gate)
        _set_linear(spec.linear_0_noact, ffn.up)
    else:
        _set_linear(spec.linear_0, ffn.up)
    _set_linear(spec.linear_1, ffn.down)
    _set_norm(spec.layer_norm, norm)


def _set_embeddings(spec: Any, embed: nn.Module, *, positioned: bool) -> None:
    """Token embedding, its scale and (for absolute positions) the position table."""
    # the encoder has a list of embeddings (source factors), the decoder one
    table = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    table.weight = _np(embed.token.weight)
    scale, sqrt_d = float(embed.scale), math.sqrt(embed.token.embedding_dim)
    if not (math.isclose(scale, 1.0) or math.isclose(scale, sqrt_d)):
        raise ExportError(f"an embedding scale of {scale} cannot be exported to CTranslate2")
    spec.scale_embeddings = math.isclose(scale, sqrt_d)  # CTranslate2 multiplies by sqrt(d)
    if positioned:
        spec.position_encodings.encodings = _np(_position_table(embed.positions))


def _position_table(positions: nn.Module) -> torch.Tensor:
    """The absolute position vectors, row p for position p: ``(max_len, d_model)``."""
    if hasattr(positions, "embedding"):  # learned
        return positions.embedding.weight
    return positions.table  # sinusoidal, in whichever layout the model uses


def _common_options(cfg: Any, ct2: Any) -> dict[str, Any]:
    """Spec arguments shared by both families, from a Transformer or GPT config."""
    activation, gated = _activation(ct2, cfg.activation)
    options: dict[str, Any] = dict(
        activation=activation, ffn_glu=gated, rms_norm=cfg.norm == "rmsnorm"
    )
    if cfg.kv_heads != cfg.num_heads:
        options["num_heads_kv"] = cfg.kv_heads
    if cfg.positions == "rotary":  # our RoPE rotates the two halves of each head
        options.update(rotary_dim=0, rotary_interleave=False, rotary_base=cfg.rope_base)
    return options


def _vocabulary(tokenizer: Any, size: int) -> list[str]:
    if tokenizer is None:
        raise ExportError("the checkpoint has no tokenizer: CTranslate2 needs the vocabulary")
    pieces = list(tokenizer.pieces(list(range(size))))
    seen: dict[str, int] = {}
    for i, piece in enumerate(pieces):
        if piece in seen:
            raise ExportError(
                f"tokens {seen[piece]} and {i} are both {piece!r}: CTranslate2 addresses tokens "
                "by string, so the vocabulary's pieces must be distinct"
            )
        seen[piece] = i
    return pieces


def _special(pieces: list[str], token_id: int | None, default: str) -> str:
    return pieces[token_id] if token_id is not None else default


def translation_spec(model: nn.Module, tokenizer: Any) -> Any:
    """A filled ``ctranslate2.specs.TransformerSpec`` for an encoder-decoder ``transformer``."""
    ct2 = require_module("ctranslate2", "export to CTranslate2")
    ts = ct2.specs.transformer_spec
    cfg = model.config
    pieces = _vocabulary(tokenizer, cfg.vocab_size)
    if cfg.target_vocab_size != cfg.vocab_size:
        raise ExportError(
            f"tgt_vocab_size={cfg.target_vocab_size} differs from vocab_size={cfg.vocab_size}, "
            "but the checkpoint has one tokenizer for both"
        )
    options = _common_options(cfg, ct2)
    pre = dict(pre_norm=cfg.norm_first, no_final_norm=not cfg.norm_first)
    encoder = ts.TransformerEncoderSpec(cfg.num_encoder_layers, cfg.num_heads, **pre, **options)
    decoder = ts.TransformerDecoderSpec(cfg.num_decoder_layers, cfg.num_heads, **pre, **options)
    spec = ts.TransformerSpec(encoder, decoder)
    absolute = cfg.positions != "rotary"
    _set_embeddings(encoder, model.src_embed, positioned=absolute)
    _set_embeddings(decoder, model.tgt_embed, positioned=absolute)
    for layer, ours in zip(encoder.layer, model.encoder.layers, strict=True):
        _set_self_attention(layer.self_attention, ours.self_attn, ours.attn_residual.norm)
        _set_ffn(layer.ffn, ours.feed_forward, ours.ff_residual.norm)
    _set_decoder_layers(decoder, model.decoder)
    if cfg.norm_first:
        _set_norm(encoder.layer_norm, model.encoder.final_norm)
    _set_linear(decoder.projection, model.generator)
    spec.config.layer_norm_epsilon = cfg.norm_eps
    spec.config.decoder_start_token = pieces[cfg.bos_id]
    spec.config.bos_token = pieces[cfg.bos_id]
    spec.config.eos_token = pieces[cfg.eos_id]
    spec.config.unk_token = _special(pieces, getattr(tokenizer, "unk_id", None), "<unk>")
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    return spec


def _set_decoder_layers(spec: Any, decoder: nn.Module) -> None:
    for layer, ours in zip(spec.layer, decoder.layers, strict=True):
        _set_self_attention(layer.self_attention, ours.self_attn, ours.self_residual.norm)
        if hasattr(layer, "attention"):
            _set_cross_attention(layer.attention, ours.cross_attn, ours.cross_residual.norm)
        _set_ffn(layer.ffn, ours.feed_forward, ours.ff_residual.norm)
    if hasattr(spec, "layer_norm"):
        _set_norm(spec.layer_norm, decoder.final_norm)


def language_model_spec(model: nn.Module, tokenizer: Any) -> Any:
    """A filled ``ctranslate2.specs.TransformerDecoderModelSpec`` for a decoder-only ``gpt``."""
    ct2 = require_module("ctranslate2", "export to CTranslate2")
    cfg = model.config
    pieces = _vocabulary(tokenizer, cfg.vocab_size)
    spec = ct2.specs.TransformerDecoderModelSpec.from_config(
        cfg.num_layers, cfg.num_heads, pre_norm=True, **_common_options(cfg, ct2)
    )
    decoder = spec.decoder
    _set_embeddings(decoder, model.embed, positioned=cfg.positions != "rotary")
    _set_decoder_layers(decoder, model.decoder)
    _set_linear(decoder.projection, model.generator)
    spec.config.layer_norm_epsilon = cfg.norm_eps
    # a character vocabulary has no special tokens: CTranslate2 then needs names it can keep
    spec.config.bos_token = _special(pieces, cfg.bos_id, "<s>")
    spec.config.eos_token = _special(pieces, cfg.eos_id, "</s>")
    spec.config.unk_token = _special(pieces, getattr(tokenizer, "unk_id", None), "<unk>")
    spec.register_vocabulary(pieces)
    return spec


SPECS = {"transformer": translation_spec, "gpt": language_model_spec}


def export_ct2(
    model: nn.Module,
    tokenizer: Any,
    architecture: str,
    out: str | Path,
    *,
    quantization: str | None = None,
) -> Path:
    """Write ``model`` as a CTranslate2 model into the directory ``out`` (empty or new).

    Args:
        model: a ``transformer`` or ``gpt`` model (its ``config`` attribute names its options).
        tokenizer: the checkpoint's tokenizer (its pieces become the vocabulary).
        architecture: the checkpoint's family name.
        out: the directory.
        quantization: CTranslate2's weight type (``int8``, ``int8_float32``, ``float16``, ...;
            ``None`` keeps float32).

    Raises:
        ExportError: a family or option CTranslate2 cannot express (named).
    """
    check_ct2(architecture)
    ct2 = require_module("ctranslate2", "export to CTranslate2")
    spec = SPECS[architecture](model, tokenizer)

    class _Filled(ct2.converters.Converter):  # CTranslate2's validate/optimize/save steps
        def _load(self) -> Any:
            return spec

    _Filled().convert(str(out), quantization=quantization, force=True)
    return Path(out)


def check_ct2(architecture: str) -> None:
    """Refuse, before loading anything, a family CTranslate2's specs cannot express."""
    if architecture not in SPECS:
        raise ExportError(
            f"architecture {architecture!r} cannot be exported to CTranslate2 (its spec has no "
            f"equivalent of its attention or heads); exportable: {', '.join(SPECS)}"
        )
