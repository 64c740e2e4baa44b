"""Build BERT from a :class:`BertConfig`, and named presets (arXiv 1810.04805).

What :func:`build_bert` returns depends on the head the config asks for, and only on that:

==========================  =========================================================
config                      returns
==========================  =========================================================
``mlm_head=True``           :class:`EncoderForMaskedLM` (body + tied masked LM head)
``num_labels > 0``          :class:`EncoderForClassification` (body + pooler + head)
neither                     :class:`EncoderOnlyModel`, the body alone
==========================  =========================================================

Presets (with the 30,522-token uncased WordPiece vocabulary unless said otherwise):

==============  ======  ====  =====  =====  ===========================================
preset          layers  d     d_ff   heads  parameters (body with pooler)
==============  ======  ====  =====  =====  ===========================================
``bert_base``   12      768   3,072  12     109,482,240 (paper: 110M), = HF BertModel
``bert_mini``   6       384   1,536  12     22,713,216: the all-MiniLM-L6-v2 shape
``bert_tiny``   4       256   1,024  4      from-scratch shape, 128 positions, own vocab
==============  ======  ====  =====  =====  ===========================================

``bert_tiny`` has no default vocabulary: pass ``vocab_size`` (e.g. that of
:meth:`formers.data.hf_tokenizer.HFTokenizer.train_wordpiece`, whose special ids are the
preset's: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4).

Initialization as BERT's released code: every linear and embedding matrix ``N(0, 0.02)``,
biases zero, LayerNorm gains one, the padding row of the token embedding zero.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from formers.models.bert.config import BertConfig
from formers.models.config_base import preset_values
from formers.nn.attention import MultiHeadAttention
from formers.nn.encoder_embeddings import EncoderEmbeddings
from formers.nn.encoder_heads import (
    ClassificationHead,
    EncoderForClassification,
    EncoderForMaskedLM,
    MaskedLMHead,
)
from formers.nn.encoder_only import EncoderOnlyModel, Pooler
from formers.nn.feed_forward import feed_forward
from formers.nn.layers import EncoderLayer
from formers.nn.norms import PostNormResidual, make_norm
from formers.nn.positional import LearnedPositionalEmbedding
from formers.nn.stacks import Encoder

# Whatever build_bert returns: the body, or the body with one head.
AnyBert = EncoderOnlyModel | EncoderForMaskedLM | EncoderForClassification


def _residual(cfg: BertConfig) -> PostNormResidual:
    return PostNormResidual(make_norm("layernorm", cfg.d_model, cfg.norm_eps), cfg.dropout)


def _layer(cfg: BertConfig) -> EncoderLayer:
    attention = MultiHeadAttention(
        cfg.d_model, cfg.num_heads, dropout=cfg.attention_dropout, kernel=cfg.kernel
    )
    # BERT has no dropout inside the feed-forward network, only on its output (the residual's)
    ffn = feed_forward(cfg.activation, cfg.d_model, cfg.d_ff, dropout=0.0)
    return EncoderLayer(attention, ffn, _residual(cfg), _residual(cfg))


def build_body(cfg: BertConfig) -> EncoderOnlyModel:
    """The encoder-only body (embeddings, encoder, pooler if ``cfg.pooler``), uninitialized."""
    segments = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
    embed = EncoderEmbeddings(
        nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id),
        LearnedPositionalEmbedding(cfg.d_model, cfg.max_positions),
        segments,
        make_norm("layernorm", cfg.d_model, cfg.norm_eps),
        cfg.dropout,
    )
    encoder = Encoder([_layer(cfg) for _ in range(cfg.num_layers)])  # post-norm: no final norm
    pooler = Pooler(cfg.d_model) if cfg.pooler else None
    return EncoderOnlyModel(embed, encoder, pooler, pad_id=cfg.pad_id)


def init_bert_weights(model: nn.Module, pad_id: int | None = None, std: float = 0.02) -> None:
    """BERT's initialization, in place: ``N(0, std)`` matrices, zero biases, unit norms."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, MaskedLMHead):
            nn.init.zeros_(module.bias)
    if pad_id is not None and isinstance(model, EncoderOnlyModel):
        model.embed.token.weight.data[pad_id].zero_()


def build_bert(config: BertConfig | dict[str, Any]) -> AnyBert:
    """Construct BERT from a config (or a dict of its fields), initialized as BERT.

    Returns:
        :class:`EncoderForMaskedLM` if ``mlm_head``, :class:`EncoderForClassification` if
        ``num_labels > 0``, else the :class:`EncoderOnlyModel` body. Each has ``.config``.
    """
    cfg = config if isinstance(config, BertConfig) else BertConfig.from_dict(config)
    body = build_body(cfg)
    init_bert_weights(body, cfg.pad_id)
    model: AnyBert = body
    if cfg.mlm_head:
        head = MaskedLMHead(
            cfg.d_model, cfg.vocab_size, body.embed.token.weight, cfg.norm_eps, cfg.activation
        )
        init_bert_weights(head.dense)
        model = EncoderForMaskedLM(body, head)
    elif cfg.num_labels:
        classifier = ClassificationHead(cfg.d_model, cfg.num_labels, cfg.dropout)
        init_bert_weights(classifier)
        model = EncoderForClassification(body, classifier)
    model.config = cfg  # kept for checkpoints and conversion; modules never read it
    return model


PRESETS: dict[str, dict[str, Any]] = {
    "bert_base": dict(num_layers=12, d_model=768, num_heads=12, d_ff=3072),
    "bert_mini": dict(num_layers=6, d_model=384, num_heads=12, d_ff=1536),
    "bert_tiny": dict(
        num_layers=4,
        d_model=256,
        num_heads=4,
        d_ff=1024,
        max_positions=128,
        pad_id=0,
        unk_id=1,
        cls_id=2,
        sep_id=3,
        mask_id=4,
    ),
}


def preset_config(name: str, **overrides: Any) -> BertConfig:
    """The config of a named preset with keyword overrides."""
    values = preset_values(PRESETS, name, overrides)
    if name == "bert_tiny" and "vocab_size" not in values:
        raise TypeError("bert_tiny() needs vocab_size=..., the size of your WordPiece vocabulary")
    return BertConfig.from_dict(values)


def bert_base(**overrides: Any) -> AnyBert:
    """BERT-base: 12 layers, 768 wide, 12 heads (110M parameters in the paper)."""
    return build_bert(preset_config("bert_base", **overrides))


def bert_mini(**overrides: Any) -> AnyBert:
    """The shape of all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads, 1,536 feed-forward."""
    return build_bert(preset_config("bert_mini", **overrides))


def bert_tiny(**overrides: Any) -> AnyBert:
    """A 4-layer, 256-wide model with 128 positions for training from scratch on a CPU."""
    return build_bert(preset_config("bert_tiny", **overrides))
