"""BERT built from the core blocks (arXiv 1810.04805): config, builders, heads and invariants."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from formers.models.bert import BertConfig, bert_base, bert_mini, bert_tiny, build_bert
from formers.models.config_base import ConfigError
from formers.nn.encoder_heads import EncoderForClassification, EncoderForMaskedLM
from formers.nn.encoder_only import EncoderOnlyModel, mean_pool, sentence_embeddings

TINY = dict(
    vocab_size=50,
    d_model=32,
    num_layers=2,
    num_heads=4,
    d_ff=64,
    max_positions=24,
    dropout=0.0,
    attention_dropout=0.0,
    pad_id=0,
    unk_id=1,
    cls_id=2,
    sep_id=3,
    mask_id=4,
)


def tiny(**overrides) -> BertConfig:
    return BertConfig.from_dict({**TINY, **overrides})


def sentence(n: int, seed: int = 0) -> torch.Tensor:
    """``[CLS] n-2 random tokens [SEP]`` as a ``(n,)`` tensor."""
    g = torch.Generator().manual_seed(seed)
    middle = torch.randint(5, TINY["vocab_size"], (n - 2,), generator=g)
    return torch.cat([torch.tensor([2]), middle, torch.tensor([3])])


def padded(*sentences: torch.Tensor) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(list(sentences), batch_first=True, padding_value=0)


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(d_model=30), "divisible by num_heads"),
        (dict(num_layers=0), "num_layers must be a positive int"),
        (dict(dropout=1.0), "dropout must be in [0, 1)"),
        (dict(activation="swish"), "activation='swish' is not supported"),
        (dict(kernel="flash"), "kernel='flash' is not supported"),
        (dict(mlm_head=True, num_labels=3), "one head"),
        (dict(pooler=False, num_labels=3), "needs pooler=True"),
        (dict(mask_id=50), "mask_id=50 is outside the vocabulary"),
        (dict(sep_id=2), "special ids must differ"),
        (dict(type_vocab_size=-1), "type_vocab_size must be >= 0"),
        (dict(pooler="false"), "pooler must be bool"),
        (dict(num_labels=-2), "num_labels must be >= 0"),
    ],
)
def test_config_errors_say_what_is_wrong(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        tiny(**overrides)


def test_config_dict_round_trip_and_unknown_keys():
    cfg = tiny(num_labels=3)
    assert BertConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(num_labels=0).num_labels == 0
    assert tiny(cls_id=None).cls_id is None
    with pytest.raises(ConfigError, match="valid keys are"):
        tiny(hidden_size=32)


# --- builders -----------------------------------------------------------------------------------


def test_build_bert_returns_the_model_the_config_asks_for():
    body = build_bert(tiny())
    mlm = build_bert(tiny(mlm_head=True, pooler=False))
    cls = build_bert(tiny(num_labels=3))
    assert type(body) is EncoderOnlyModel and body.pooler is not None
    assert isinstance(mlm, EncoderForMaskedLM) and mlm.body.pooler is None
    assert isinstance(cls, EncoderForClassification)
    assert body.config == tiny() and mlm.config.mlm_head and cls.config.num_labels == 3
    # the MLM decoder is the token embedding itself, not a copy
    assert mlm.head.decoder_weight is mlm.body.embed.token.weight


def test_initialization_is_berts():
    model = build_bert(tiny(vocab_size=2000, d_model=64, d_ff=256))
    token = model.embed.token.weight
    assert torch.all(token[0] == 0)  # padding row
    assert 0.018 < token[1:].std().item() < 0.022
    q = model.encoder.layers[0].self_attn.q_proj
    assert 0.015 < q.weight.std().item() < 0.025 and torch.all(q.bias == 0)
    norm = model.encoder.layers[0].attn_residual.norm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0) and norm.eps == 1e-12


def test_presets_and_their_sizes():
    with torch.device("meta"):
        base, mini = bert_base(), bert_mini()
    assert sum(p.numel() for p in base.parameters()) == 109_482_240
    assert sum(p.numel() for p in mini.parameters()) == 22_713_216
    model = bert_tiny(vocab_size=100)
    assert (model.config.num_layers, model.config.d_model, model.config.max_positions) == (
        4,
        256,
        128,
    )
    with pytest.raises(TypeError, match="vocab_size"):
        bert_tiny()


def test_bert_base_has_exactly_the_parameters_of_hugging_face_bert_base():
    transformers = pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")
    with torch.device("meta"):
        ours = bert_base()
        theirs = transformers.BertModel(transformers.BertConfig())
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert 105e6 < count < 115e6  # the paper's "110M"


# --- invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_padding_does_not_change_the_real_positions(kernel):
    model = build_bert(tiny(kernel=kernel)).eval()
    short, long = sentence(6, seed=1), sentence(11, seed=2)
    with torch.no_grad():
        alone = model(short[None])
        batch = model(padded(short, long))
    torch.testing.assert_close(batch[0, :6], alone[0], atol=1e-5, rtol=1e-5)
    # and the mean-pooled sentence embedding ignores the padding
    with torch.no_grad():
        embeddings = sentence_embeddings(model, padded(short, long))
        single = sentence_embeddings(model, short[None])
    torch.testing.assert_close(embeddings[0], single[0], atol=1e-5, rtol=1e-5)


def test_sdpa_and_eager_kernels_agree():
    sdpa = build_bert(tiny(mlm_head=True)).eval()
    eager = build_bert(tiny(mlm_head=True, kernel="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    ids = padded(sentence(9), sentence(5, seed=3))
    with torch.no_grad():
        torch.testing.assert_close(eager(ids), sdpa(ids), atol=1e-5, rtol=1e-5)


def test_attention_weights_are_distributions_over_real_keys():
    model = build_bert(tiny()).eval()
    ids = padded(sentence(10), sentence(4, seed=5))
    with torch.no_grad():
        hidden, weights = model.forward_with_attention(ids)
        torch.testing.assert_close(hidden, model(ids), atol=1e-5, rtol=1e-5)
    assert len(weights) == 2
    for w in weights:
        assert w.shape == (2, 4, 10, 10)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))
        assert torch.all(w[1, :, :, 4:] == 0)  # padding keys get no attention


def test_heads_output_shapes():
    ids = padded(sentence(7), sentence(5, seed=1), sentence(3, seed=2))
    body = build_bert(tiny())
    assert body(ids).shape == (3, 7, 32)
    assert body.pool(body(ids)).shape == (3, 32)
    assert build_bert(tiny(mlm_head=True))(ids).shape == (3, 7, 50)
    assert build_bert(tiny(num_labels=5))(ids).shape == (3, 5)
    emb = sentence_embeddings(body.eval(), ids)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="no pooler"):
        build_bert(tiny(pooler=False)).pool(body(ids))


def test_mlm_loss_reaches_every_parameter():
    model = build_bert(tiny(mlm_head=True))
    ids = padded(sentence(8), sentence(6, seed=4))
    logits = model(ids)
    F.cross_entropy(logits.flatten(0, 1), ids.flatten(), ignore_index=0).backward()
    # the pooler is not on the MLM path (it is trained by next-sentence prediction)
    silent = [n for n, p in model.named_parameters() if p.grad is None and "pooler" not in n]
    assert silent == []


def test_segments_and_attention_mask_arguments():
    model = build_bert(tiny()).eval()
    ids = padded(sentence(8), sentence(6, seed=4))
    mask = ids != 0
    with torch.no_grad():
        default = model(ids)
        torch.testing.assert_close(model(ids, torch.zeros_like(ids)), default)
        torch.testing.assert_close(model(ids, attention_mask=mask.long()), default)
        assert not torch.allclose(model(ids, torch.ones_like(ids)), default)
    no_segments = build_bert(tiny(type_vocab_size=0))
    assert no_segments.embed.segments is None
    with pytest.raises(ValueError, match="no segment embedding"):
        no_segments(ids, torch.zeros_like(ids))
    with pytest.raises(ValueError, match="beyond the 24 learned positions"):
        model(torch.full((1, 25), 7))


def test_mean_pool_averages_real_tokens_only():
    hidden = torch.arange(12.0).view(1, 4, 3).repeat(2, 1, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))
