"""Hugging Face BERT checkpoints <-> formers' encoder-only models (arXiv 1810.04805).

BERT's checkpoint names (``attention.self.query``, ``intermediate.dense``, ``cls.predictions``)
live here and nowhere else. The architectures agree exactly: post-norm layers, exact (erf) GELU,
learned absolute positions, segment embeddings, LayerNorm eps 1e-12, a ``tanh`` pooler on the
first token and an MLM head tied to the token embedding; so converted models give the same
outputs up to float rounding (``tests/models/bert/test_convert.py`` checks all-MiniLM-L6-v2).

Not converted: other position embeddings (``relative_key``), activations other than ``gelu``,
decoder/cross-attention BERTs, the next-sentence-prediction head (``cls.seq_relationship``,
dropped when present) and untied MLM decoders.

=====================================  =================================================
Hugging Face (``bert.`` prefix or not)  formers (``body.`` prefix when there is a head)
=====================================  =================================================
``embeddings.word_embeddings``         ``embed.token``
``embeddings.position_embeddings``     ``embed.positions.embedding``
``embeddings.token_type_embeddings``   ``embed.segments``
``embeddings.LayerNorm``               ``embed.norm``
``encoder.layer.N.attention.self.*``   ``encoder.layers.N.self_attn.{q,k,v}_proj``
``...attention.output.dense``          ``encoder.layers.N.self_attn.out_proj``
``...attention.output.LayerNorm``      ``encoder.layers.N.attn_residual.norm``
``...intermediate.dense``              ``encoder.layers.N.feed_forward.up``
``...output.dense`` / ``LayerNorm``    ``encoder.layers.N.feed_forward.down`` / ``ff_residual.norm``
``pooler.dense``                       ``pooler.dense``
``cls.predictions.transform.*``        ``head.dense``, ``head.norm``
``cls.predictions.bias``               ``head.bias`` (decoder weight: the token embedding)
``classifier``                         ``head.linear``
=====================================  =================================================
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from formers.models.bert.builders import AnyBert, build_bert
from formers.models.bert.config import BERT_VOCAB_IDS, BertConfig
from formers.models.config_base import ConfigError
from formers.models.hf_common import (
    ConversionError,
    check_state_dict,
    read_hf_directory,
    require_transformers,
)

SUPPORTED_MODEL_TYPES = ("bert",)

_LAYER_PARTS = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "attn_residual.norm": "attention.output.LayerNorm",
    "feed_forward.up": "intermediate.dense",
    "feed_forward.down": "output.dense",
    "ff_residual.norm": "output.LayerNorm",
}
_MLM_PARTS = {
    "head.dense": "cls.predictions.transform.dense",
    "head.norm": "cls.predictions.transform.LayerNorm",
}
_WORDS = "embeddings.word_embeddings.weight"
_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
_DROPPED_PREFIXES = ("cls.seq_relationship.",)  # next-sentence prediction: not supported
_BUFFERS = ("position_ids", "token_type_ids")


Pairs = list[tuple[str, str]]


def _pairs(parts: Mapping[str, str]) -> Pairs:
    return [(f"{o}.{p}", f"{t}.{p}") for o, t in parts.items() for p in ("weight", "bias")]


def name_groups(cfg: BertConfig) -> dict[str, Pairs]:
    """``(our name, Hugging Face name)`` of every tensor of ``build_bert(cfg)``, by part.

    Returns:
        ``{"body": ..., "pooler": ..., "head": ...}`` (the last two possibly empty). Hugging Face
        names are without the ``bert.`` prefix; the tied MLM decoder weight is left out (it is
        the token embedding, ``embeddings.word_embeddings.weight``).
    """
    body = [
        ("embed.token.weight", _WORDS),
        ("embed.positions.embedding.weight", "embeddings.position_embeddings.weight"),
        ("embed.norm.weight", "embeddings.LayerNorm.weight"),
        ("embed.norm.bias", "embeddings.LayerNorm.bias"),
    ]
    if cfg.type_vocab_size:
        body.append(("embed.segments.weight", "embeddings.token_type_embeddings.weight"))
    for i in range(cfg.num_layers):
        body += _pairs(
            {f"encoder.layers.{i}.{o}": f"encoder.layer.{i}.{t}" for o, t in _LAYER_PARTS.items()}
        )
    pooler = _pairs({"pooler.dense": "pooler.dense"}) if cfg.pooler else []
    head: Pairs = []
    if cfg.mlm_head:
        head = [*_pairs(_MLM_PARTS), ("head.bias", "cls.predictions.bias")]
    elif cfg.num_labels:
        head = _pairs({"head.linear": "classifier"})
    if head:  # the body sits inside a wrapper
        body = [(f"body.{o}", t) for o, t in body]
        pooler = [(f"body.{o}", t) for o, t in pooler]
    return {"body": body, "pooler": pooler, "head": head}


def config_from_hf(hf: Mapping[str, Any] | Any, **overrides: Any) -> BertConfig:
    """Our :class:`BertConfig` from a Hugging Face BERT config.

    Args:
        hf: the ``config.json`` dict or a ``transformers.BertConfig``.
        **overrides: fields of :class:`BertConfig` to set, above all the heads (``pooler``,
            ``num_labels``, ``mlm_head``; a Hugging Face config does not say which weights a
            checkpoint has) or the special ids (``cls_id`` ...: BERT's WordPiece ids by default,
            ``None`` when they do not fit the vocabulary).

    Raises:
        ConversionError: not a BERT config, or a BERT variant that formers does not implement.
    """
    values = dict(hf) if isinstance(hf, Mapping) else hf.to_dict()
    model_type = values.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConversionError(
            f"model_type {model_type!r} is not a BERT model; formers.models.bert converts "
            f"{list(SUPPORTED_MODEL_TYPES)} (use the converter of that model's family)"
        )
    act = values.get("hidden_act", "gelu")
    if act != "gelu":
        raise ConversionError(
            f"hidden_act={act!r} is not supported: formers converts BERT with hidden_act='gelu' "
            "(the exact, erf-based GELU of BERT) only"
        )
    positions = values.get("position_embedding_type", "absolute")
    if positions != "absolute":
        raise ConversionError(
            f"position_embedding_type={positions!r} is not supported: formers' BERT has learned "
            "absolute positions only ('absolute')"
        )
    if values.get("is_decoder") or values.get("add_cross_attention"):
        raise ConversionError(
            "this BERT is a decoder (is_decoder / add_cross_attention); formers converts the "
            "bidirectional encoder only"
        )
    required = {
        "vocab_size": "vocab_size",
        "hidden_size": "d_model",
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "intermediate_size": "d_ff",
    }
    missing = [key for key in required if key not in values]
    if missing:
        raise ConversionError(f"the BERT config lacks {missing}")
    fields: dict[str, Any] = {ours: values[key] for key, ours in required.items()}
    optional = {
        "hidden_dropout_prob": ("dropout", 0.1),
        "attention_probs_dropout_prob": ("attention_dropout", 0.1),
        "layer_norm_eps": ("norm_eps", 1e-12),
        "max_position_embeddings": ("max_positions", 512),
        "type_vocab_size": ("type_vocab_size", 2),
    }
    for key, (ours, default) in optional.items():
        fields[ours] = values.get(key, default)
    pad = values.get("pad_token_id")
    fields["pad_id"] = 0 if pad is None else pad
    for name, value in BERT_VOCAB_IDS.items():
        if name != "pad_id":
            fields[name] = (
                value if value < fields["vocab_size"] and value != fields["pad_id"] else None
            )
    fields.update(overrides)
    if fields.get("mlm_head") and values.get("tie_word_embeddings") is False:
        raise ConversionError(
            "this BERT has an MLM decoder untied from the token embedding "
            "(tie_word_embeddings=false); formers' MLM head is always tied"
        )
    try:
        return BertConfig.from_dict(fields)
    except ConfigError as error:
        raise ConversionError(
            f"the BERT config does not make a valid BertConfig: {error}"
        ) from None


def _strip_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Names without the ``bert.`` prefix of the task models, buffers and NSP head dropped."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(_BUFFERS) or name.startswith(_DROPPED_PREFIXES):
            continue
        out[name.removeprefix("bert.")] = tensor
    return out


def state_dict_from_hf(
    hf_state: Mapping[str, Tensor],
    cfg: BertConfig,
    *,
    where: str = "the Hugging Face state dict",
    optional_heads: bool = False,
) -> dict[str, Tensor]:
    """Rename a Hugging Face BERT state dict for ``build_bert(cfg)``.

    Args:
        hf_state: tensors of a ``BertModel``, ``BertForMaskedLM``, ``BertForPreTraining`` or
            ``BertForSequenceClassification`` (names with or without ``bert.``).
        cfg: the config of the model that will receive the tensors.
        where: what is read, for error messages.
        optional_heads: a pooler or head entirely absent from ``hf_state`` is left out of the
            result (the caller keeps its fresh initialization) instead of being an error.

    Returns:
        Our names -> tensors (the tied MLM decoder weight under both of its names).

    Raises:
        ConversionError: naming missing, unexpected or mis-shaped tensors, or an MLM decoder
            that is not tied to the token embedding.
    """
    given = _strip_prefix(hf_state)
    decoder = given.pop(_TIED[0], None)
    given.pop(_TIED[1], None)  # Hugging Face ties it to cls.predictions.bias
    groups = name_groups(cfg)
    if not cfg.pooler:
        given = {n: t for n, t in given.items() if not n.startswith("pooler.")}
    if not cfg.mlm_head:
        given = {n: t for n, t in given.items() if not n.startswith("cls.predictions.")}
        decoder = None
    if not cfg.num_labels:
        given = {n: t for n, t in given.items() if not n.startswith("classifier.")}
    if optional_heads:
        groups = {
            part: pairs
            for part, pairs in groups.items()
            if part == "body" or any(theirs in given for _, theirs in pairs)
        }
    pairs = [pair for part in groups.values() for pair in part]
    with torch.device("meta"):
        shapes = dict(build_bert(cfg).state_dict().items())
    expected = {theirs: tuple(shapes[ours].shape) for ours, theirs in pairs}
    check_state_dict(expected, given, where)
    if decoder is not None and not torch.equal(decoder, given[_WORDS]):
        raise ConversionError(
            f"{where}: cls.predictions.decoder.weight differs from {_WORDS}; formers' MLM head "
            "is tied to the token embedding and cannot hold an untied decoder"
        )
    out = {ours: given[theirs] for ours, theirs in pairs}
    if cfg.mlm_head:
        out["head.decoder_weight"] = given[_WORDS]
    return out


def load_hf(
    source: str | os.PathLike | Any,
    *,
    num_labels: int = 0,
    mlm_head: bool = False,
) -> AnyBert:
    """A formers BERT with the weights of a Hugging Face BERT.

    Heads that the source lacks (an MLM head asked of a ``BertModel``, a classifier of
    ``num_labels``, or the pooler it reads) are newly initialized as in :func:`build_bert`, with a
    warning: they must be trained before use. Heads the source has but that are not asked for
    are ignored, as is the next-sentence-prediction head.

    Args:
        source: a local model directory (``config.json`` + ``model.safetensors``; pickles are
            refused) or a ``transformers`` BERT model object.
        num_labels: classes of a classification head (0 = none); a source classifier of another
            size is an error.
        mlm_head: return an MLM model (its head loaded from ``cls.predictions`` if present).

    Returns:
        What :func:`build_bert` returns for the config, in eval mode.

    Raises:
        ConversionError: not a BERT, an unsupported variant, or missing/mismatched tensors.
    """
    if isinstance(source, str | os.PathLike):
        config, state = read_hf_directory(source)
        where = str(source)
    else:
        transformers = require_transformers()
        if not isinstance(source, transformers.PreTrainedModel):
            raise TypeError(
                f"load_hf takes a directory or a transformers model, got {type(source).__name__}"
            )
        config, state = source.config.to_dict(), source.state_dict()
        where = type(source).__name__
    has_pooler = "pooler.dense.weight" in _strip_prefix(state)
    cfg = config_from_hf(
        config, num_labels=num_labels, mlm_head=mlm_head, pooler=has_pooler or num_labels > 0
    )
    model = build_bert(cfg)
    ours = state_dict_from_hf(state, cfg, where=where, optional_heads=True)
    result = model.load_state_dict(ours, strict=False)
    if result.missing_keys:
        parts = sorted({n.removeprefix("body.").split(".")[0] for n in result.missing_keys})
        warnings.warn(
            f"{where} has no weights for {parts}: they are newly initialized; train them",
            stacklevel=2,
        )
    return model.eval()


def _hf_config(cfg: BertConfig) -> Any:
    transformers = require_transformers()
    if cfg.activation != "gelu":
        raise ConversionError(
            f"activation={cfg.activation!r} has no Hugging Face BERT counterpart in formers' "
            "converter; only 'gelu' is converted"
        )
    extra = {"num_labels": cfg.num_labels} if cfg.num_labels else {}
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        max_position_embeddings=cfg.max_positions,
        # Hugging Face always adds segment embeddings: one zero row is the same as none
        type_vocab_size=max(cfg.type_vocab_size, 1),
        layer_norm_eps=cfg.norm_eps,
        pad_token_id=cfg.pad_id,
        **extra,
    )


def to_hf(model: nn.Module) -> Any:
    """The same model as a ``transformers`` object with the same weights (copies).

    Returns:
        ``BertModel`` for a body, ``BertForMaskedLM`` for an MLM model (a pooler, which
        ``BertForMaskedLM`` lacks, is attached as ``bert.pooler`` so that it is saved too), or
        ``BertForSequenceClassification``; in the train/eval mode of ``model``.
    """
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, BertConfig):
        raise ConversionError("to_hf needs a model made by build_bert or load_hf (with .config)")
    transformers = require_transformers()
    hf_cfg = _hf_config(cfg)
    if cfg.mlm_head:
        hf = transformers.BertForMaskedLM(hf_cfg)
        if cfg.pooler:
            from transformers.models.bert.modeling_bert import BertPooler

            hf.bert.pooler = BertPooler(hf_cfg)
    elif cfg.num_labels:
        hf = transformers.BertForSequenceClassification(hf_cfg)
    else:
        hf = transformers.BertModel(hf_cfg, add_pooling_layer=cfg.pooler)
    ours = model.state_dict()
    prefix = "bert." if cfg.mlm_head or cfg.num_labels else ""
    state = {}
    for part, pairs in name_groups(cfg).items():
        for name, theirs in pairs:
            state[theirs if part == "head" else prefix + theirs] = ours[name]
    if not cfg.type_vocab_size:
        state[prefix + "embeddings.token_type_embeddings.weight"] = torch.zeros(1, cfg.d_model)
    if cfg.mlm_head:
        state[_TIED[0]] = ours["head.decoder_weight"]
        state[_TIED[1]] = ours["head.bias"]
    hf = hf.to(next(model.parameters()).dtype)
    hf.load_state_dict(state, strict=True)
    return hf.train(model.training)


def save_hf(model: nn.Module, out_dir: str | os.PathLike) -> Path:
    """Save ``model`` as a Hugging Face model directory (``config.json``, ``model.safetensors``)
    that ``transformers`` and :func:`load_hf` read; returns the directory."""
    path = Path(out_dir)
    to_hf(model).save_pretrained(path)
    return path
