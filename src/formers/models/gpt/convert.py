"""Hugging Face GPT-2 and LLaMA checkpoints <-> our :class:`DecoderOnlyLM`.

The checkpoint names of GPT-2 (Radford et al. 2019) and LLaMA (arXiv 2302.13971) live here and
nowhere else. What the conversion does:

- GPT-2 stores its linear maps as ``Conv1D`` with ``(in, out)`` weights: they are transposed.
  Its fused ``c_attn`` is split into our query, key and value projections (in that order).
  Buffers saved by older versions (``attn.bias``, ``attn.masked_bias``: causal masks) are
  ignored, and ``lm_head.weight`` is the token embedding (tied) unless the config unties it.
- LLaMA's names map one to one (``o_proj`` -> ``out_proj``, ``gate/up/down_proj`` -> the gated
  feed-forward). Our rotary embedding pairs the two halves of each head as Hugging Face's does
  (``rotate_half``), so no permutation of the query/key weights is needed.
- Names are accepted with or without the ``transformer.`` / ``model.`` prefix (``GPT2Model``
  and the original ``gpt2`` upload have none).

Weights load into float32 (torch's default); call ``.to(dtype)`` for another. Special-token
ids outside the vocabulary (common in tiny test configs) become ``None``; a list of EOS ids
(LLaMA 3) keeps its first.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from formers.models.gpt.builders import build_gpt
from formers.models.gpt.config import GPTConfig
from formers.models.hf_common import (
    ConversionError,
    check_state_dict,
    read_hf_directory,
    require_transformers,
)
from formers.nn.decoder_only import DecoderOnlyLM

SUPPORTED = ("gpt2", "llama")
_PREFIX = {"gpt2": "transformer.", "llama": "model."}
_IGNORE = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
# Hugging Face activation name -> ours; GPT-2's "gelu_new" is the tanh approximation.
_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


# --- configs ---------------------------------------------------------------------------------


def _special_id(value: Any, vocab_size: int) -> int | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return value if isinstance(value, int) and 0 <= value < vocab_size else None


def _refuse(where: str, what: str) -> None:
    raise ConversionError(f"{where}: {what}, which formers' decoder-only model does not have")


def config_from_hf(hf: dict[str, Any] | Any) -> GPTConfig:
    """Our config for a Hugging Face ``GPT2Config`` or ``LlamaConfig`` (or its dict).

    Raises:
        ConversionError: another ``model_type``, or a feature we do not implement.
    """
    values = hf.to_dict() if hasattr(hf, "to_dict") else dict(hf)
    model_type = values.get("model_type")
    if model_type not in SUPPORTED:
        raise ConversionError(
            f"model_type {model_type!r} is not supported here; supported: {', '.join(SUPPORTED)} "
            "(BERT is in formers.models.bert, Marian in formers.models.transformer)"
        )
    vocab = values["vocab_size"]
    ids = {
        name: _special_id(values.get(f"{name.split('_')[0]}_token_id"), vocab)
        for name in ("pad_id", "bos_id", "eos_id")
    }
    if model_type == "gpt2":
        return _gpt2_config(values, ids)
    return _llama_config(values, ids)


def _gpt2_config(v: dict[str, Any], ids: dict[str, int | None]) -> GPTConfig:
    act = v.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        _refuse("gpt2", f"activation_function={act!r} (supported: {sorted(_ACTIVATIONS)})")
    if v.get("add_cross_attention"):
        _refuse("gpt2", "add_cross_attention=True (encoder-decoder attention)")
    if not v.get("scale_attn_weights", True):
        _refuse("gpt2", "scale_attn_weights=False (unscaled dot products)")
    if v.get("scale_attn_by_inverse_layer_idx"):
        _refuse("gpt2", "scale_attn_by_inverse_layer_idx=True")
    d = v["n_embd"]
    return GPTConfig(
        vocab_size=v["vocab_size"],
        d_model=d,
        num_layers=v["n_layer"],
        num_heads=v["n_head"],
        d_ff=v.get("n_inner") or 4 * d,
        dropout=float(v.get("resid_pdrop", 0.1)),
        attention_dropout=float(v.get("attn_pdrop", 0.1)),
        activation=_ACTIVATIONS[act],
        norm="layernorm",
        norm_eps=float(v.get("layer_norm_epsilon", 1e-5)),
        positions="learned",
        context_length=v["n_positions"],
        tie_output=bool(v.get("tie_word_embeddings", True)),
        bias=True,
        **ids,
    )


def _llama_config(v: dict[str, Any], ids: dict[str, int | None]) -> GPTConfig:
    if v.get("hidden_act", "silu") != "silu":
        _refuse("llama", f"hidden_act={v['hidden_act']!r} (only silu, i.e. SwiGLU)")
    rope = v.get("rope_parameters") or {"rope_theta": v.get("rope_theta", 10000.0)}
    rope = {**rope, **(v.get("rope_scaling") or {})}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        _refuse("llama", f"RoPE scaling {rope} (only the default rope_type)")
    if v.get("attention_bias", False) != v.get("mlp_bias", False):
        _refuse("llama", "attention_bias != mlp_bias (our `bias` covers both)")
    heads, d = v["num_attention_heads"], v["hidden_size"]
    if v.get("head_dim") not in (None, d // heads):
        _refuse("llama", f"head_dim={v['head_dim']} != hidden_size / num_attention_heads")
    return GPTConfig(
        vocab_size=v["vocab_size"],
        d_model=d,
        num_layers=v["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=v.get("num_key_value_heads") or heads,
        d_ff=v["intermediate_size"],
        dropout=0.0,
        attention_dropout=float(v.get("attention_dropout", 0.0)),
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=float(v.get("rms_norm_eps", 1e-6)),
        positions="rotary",
        context_length=v["max_position_embeddings"],
        rope_base=float(rope.get("rope_theta", 10000.0)),
        tie_output=bool(v.get("tie_word_embeddings", False)),
        bias=bool(v.get("attention_bias", False)),
        **ids,
    )


def model_type_of(cfg: GPTConfig) -> str:
    """``"gpt2"`` or ``"llama"``: the Hugging Face architecture that can express ``cfg``.

    Raises:
        ConversionError: naming what neither architecture has (e.g. ``norm='rmsnorm'`` for
            GPT-2 and ``positions='learned'`` for LLaMA).
    """
    gpt2 = {"norm": "layernorm", "positions": "learned", "bias": True}
    llama = {"norm": "rmsnorm", "positions": "rotary", "activation": "swiglu"}
    no_gpt2 = [f"{k}={getattr(cfg, k)!r}" for k, want in gpt2.items() if getattr(cfg, k) != want]
    if cfg.activation not in _TO_HF_ACTIVATION:
        no_gpt2.append(f"activation={cfg.activation!r}")
    if cfg.kv_heads != cfg.num_heads:
        no_gpt2.append(f"num_kv_heads={cfg.num_kv_heads} (grouped-query attention)")
    no_llama = [f"{k}={getattr(cfg, k)!r}" for k, want in llama.items() if getattr(cfg, k) != want]
    if not no_gpt2:
        return "gpt2"
    if not no_llama:
        return "llama"
    raise ConversionError(
        "this model cannot be expressed as a Hugging Face model: GPT-2 has no "
        f"{', '.join(no_gpt2)}; LLaMA has no {', '.join(no_llama)}"
    )


def config_to_hf(cfg: GPTConfig) -> Any:
    """A Hugging Face ``GPT2Config`` or ``LlamaConfig`` equal to ``cfg``."""
    transformers = require_transformers()
    ids = {"pad_token_id": cfg.pad_id, "bos_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id}
    common = dict(vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_output, **ids)
    if model_type_of(cfg) == "gpt2":
        return transformers.GPT2Config(
            n_embd=cfg.d_model, n_layer=cfg.num_layers, n_head=cfg.num_heads, n_inner=cfg.d_ff,
            n_positions=cfg.context_length, activation_function=_TO_HF_ACTIVATION[cfg.activation],
            layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.attention_dropout, **common,
        )  # fmt: skip
    return transformers.LlamaConfig(
        hidden_size=cfg.d_model, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim, intermediate_size=cfg.d_ff, hidden_act="silu",
        max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_base,  # transformers 5 turns it into rope_parameters
        attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=cfg.attention_dropout,
        **common,
    )  # fmt: skip


# --- tensor names ----------------------------------------------------------------------------

# One entry per tensor: our name, the Hugging Face name (without prefix), and whether the
# Hugging Face tensor is a transposed (GPT-2 Conv1D) weight.
Names = list[tuple[str, str, bool]]


def _gpt2_names(cfg: GPTConfig) -> Names:
    names = [("embed.token.weight", "wte.weight", False)]
    names.append(("embed.positions.embedding.weight", "wpe.weight", False))
    for i in range(cfg.num_layers):
        ours, hf = f"decoder.layers.{i}.", f"h.{i}."
        for kind in ("weight", "bias"):
            names += [
                (f"{ours}self_residual.norm.{kind}", f"{hf}ln_1.{kind}", False),
                (f"{ours}self_attn.out_proj.{kind}", f"{hf}attn.c_proj.{kind}", kind == "weight"),
                (f"{ours}ff_residual.norm.{kind}", f"{hf}ln_2.{kind}", False),
                (f"{ours}feed_forward.up.{kind}", f"{hf}mlp.c_fc.{kind}", kind == "weight"),
                (f"{ours}feed_forward.down.{kind}", f"{hf}mlp.c_proj.{kind}", kind == "weight"),
            ]
    names += [("decoder.final_norm.weight", "ln_f.weight", False)]
    return names + [("decoder.final_norm.bias", "ln_f.bias", False)]


def _llama_names(cfg: GPTConfig) -> Names:
    names = [("embed.token.weight", "embed_tokens.weight", False)]
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    pairs = [(f"self_attn.{p}_proj", f"self_attn.{p}_proj") for p in "qkv"]
    pairs += [("self_attn.out_proj", "self_attn.o_proj")]
    pairs += [(f"feed_forward.{p}", f"mlp.{p}_proj") for p in ("gate", "up", "down")]
    for i in range(cfg.num_layers):
        ours, hf = f"decoder.layers.{i}.", f"layers.{i}."
        names += [(f"{ours}{o}.{k}", f"{hf}{h}.{k}", False) for o, h in pairs for k in kinds]
        names += [
            (f"{ours}self_residual.norm.weight", f"{hf}input_layernorm.weight", False),
            (f"{ours}ff_residual.norm.weight", f"{hf}post_attention_layernorm.weight", False),
        ]
    return names + [("decoder.final_norm.weight", "norm.weight", False)]


def _names(cfg: GPTConfig, model_type: str) -> Names:
    return _gpt2_names(cfg) if model_type == "gpt2" else _llama_names(cfg)


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _our_shapes(cfg: GPTConfig) -> dict[str, torch.Size]:
    """Our parameter names and shapes for ``cfg``, without allocating (the meta device)."""
    with torch.device("meta"):
        model = build_gpt(cfg)
    return {k: v.shape for k, v in model.state_dict().items()}


def state_dict_from_hf(
    state: dict[str, Tensor], cfg: GPTConfig, where: str, *, model_type: str = "gpt2"
) -> dict[str, Tensor]:
    """Rename (and reshape) a Hugging Face state dict into ours for ``build_gpt(cfg)``.

    Args:
        state: the Hugging Face tensors (names with or without the ``transformer.`` or
            ``model.`` prefix).
        cfg: our config (from :func:`config_from_hf`).
        where: what is being read, for error messages (e.g. the directory).
        model_type: ``"gpt2"`` or ``"llama"``.

    Raises:
        ConversionError: naming missing, unexpected or mis-shaped tensors.
    """
    if model_type not in SUPPORTED:
        raise ConversionError(f"model_type {model_type!r} is not supported; use one of {SUPPORTED}")
    state = _strip(state, _PREFIX[model_type])
    shapes = {k: tuple(v) for k, v in _our_shapes(cfg).items()}
    names = _names(cfg, model_type)
    expected = {hf: shapes[ours][::-1] if t else shapes[ours] for ours, hf, t in names}
    d, kv = cfg.d_model, cfg.kv_heads * cfg.head_dim
    if model_type == "gpt2":
        for i in range(cfg.num_layers):
            expected[f"h.{i}.attn.c_attn.weight"] = (d, d + 2 * kv)
            expected[f"h.{i}.attn.c_attn.bias"] = (d + 2 * kv,)
    head = "lm_head.weight"
    if not cfg.tie_output:
        expected[head] = (cfg.vocab_size, d)
    check_state_dict(expected, state, where, ignore=(*_IGNORE, head))
    ours = {o: (state[h].t() if t else state[h]).contiguous() for o, h, t in names}
    if model_type == "gpt2":
        for i in range(cfg.num_layers):
            for kind in ("weight", "bias"):
                fused = state[f"h.{i}.attn.c_attn.{kind}"]
                fused = fused.t() if kind == "weight" else fused  # (3d, d) or (3d,)
                for p, part in zip("qkv", fused.split([d, kv, kv]), strict=True):
                    ours[f"decoder.layers.{i}.self_attn.{p}_proj.{kind}"] = part.contiguous()
    ours["generator.weight"] = ours["embed.token.weight"] if cfg.tie_output else state[head]
    return ours


def state_dict_to_hf(model: DecoderOnlyLM) -> dict[str, Tensor]:
    """Our weights under Hugging Face names (with prefix, as ``GPT2LMHeadModel.state_dict()``
    or ``LlamaForCausalLM.state_dict()`` has them; ``lm_head.weight`` included even if tied)."""
    cfg = _config_of(model)
    model_type = model_type_of(cfg)
    prefix = _PREFIX[model_type]
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    hf = {
        prefix + h: (ours[o].t() if t else ours[o]).contiguous()
        for o, h, t in _names(cfg, model_type)
    }
    if model_type == "gpt2":
        for i in range(cfg.num_layers):
            for kind in ("weight", "bias"):
                parts = [ours[f"decoder.layers.{i}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                fused = torch.cat(parts, dim=0)  # (3d, d) or (3d,)
                hf[f"{prefix}h.{i}.attn.c_attn.{kind}"] = (
                    fused.t().contiguous() if kind == "weight" else fused
                )
    hf["lm_head.weight"] = ours["generator.weight"]
    return hf


def _config_of(model: DecoderOnlyLM) -> GPTConfig:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, GPTConfig):
        raise ConversionError(
            "the model has no GPTConfig in model.config; build it with formers.models.gpt.build_gpt"
        )
    return cfg


# --- whole models ----------------------------------------------------------------------------


def load_hf(source: str | os.PathLike | Any) -> DecoderOnlyLM:
    """Our model from a Hugging Face GPT-2 or LLaMA model, in eval mode.

    Args:
        source: a local model directory (``config.json`` + ``model.safetensors``; pickled
            ``pytorch_model.bin`` files are refused) or a ``transformers`` model object.

    Raises:
        ConversionError: wrong architecture, missing files, or missing/mis-shaped tensors.
    """
    if isinstance(source, str | os.PathLike):
        hf_config, state = read_hf_directory(source)
        where = str(source)
    elif hasattr(source, "state_dict") and hasattr(source, "config"):
        hf_config, state = source.config.to_dict(), source.state_dict()
        where = type(source).__name__
    else:
        raise ConversionError(
            f"cannot load from {type(source).__name__}: pass a Hugging Face model directory "
            "or a transformers model object"
        )
    cfg = config_from_hf(hf_config)
    model_type = hf_config["model_type"]
    ours = state_dict_from_hf(state, cfg, where, model_type=model_type)
    model = build_gpt(cfg)
    model.load_state_dict(ours)
    return model.eval()


def to_hf(model: DecoderOnlyLM) -> Any:
    """A ``transformers.GPT2LMHeadModel`` (or ``LlamaForCausalLM``) with our weights, in eval
    mode and float32.

    Raises:
        ConversionError: the config has a feature neither architecture can express.
    """
    transformers = require_transformers()
    hf_config = config_to_hf(_config_of(model))
    cls: Callable[[Any], Any] = (
        transformers.GPT2LMHeadModel
        if hf_config.model_type == "gpt2"
        else transformers.LlamaForCausalLM
    )
    hf = cls(hf_config)
    # not strict: older transformers versions keep causal-mask buffers (``attn.bias``) here
    missing, unexpected = hf.load_state_dict(state_dict_to_hf(model), strict=False)
    missing = [n for n in missing if not n.endswith(_IGNORE)]
    if missing or unexpected:
        raise ConversionError(
            f"{cls.__name__} did not take our weights: missing {missing}, unexpected {unexpected}"
        )
    return hf.eval()


def save_hf(model: DecoderOnlyLM, out_dir: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` that ``transformers`` (and
    :func:`load_hf`) can read."""
    hf = to_hf(model)
    kwargs = {}
    if "safe_serialization" in inspect.signature(hf.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers < 5; version 5 writes only safetensors
    hf.save_pretrained(out_dir, **kwargs)
