"""The named presets of the paper (arXiv 1706.03762, Table 3) and their exact sizes.

Parameter counts are computed here from the architecture, independently of the code: with a
37,000-token shared vocabulary, base and big must be within 5% of the paper's 65M and 213M.
``pytest -s`` prints them. The big model (214M parameters) is built on the meta device, which
allocates no memory and skips the initialization work, so counting it takes about a second.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from formers.models import (
    ConfigError,
    transformer_base,
    transformer_big,
    transformer_tiny,
)
from formers.nn import PostNormResidual, PreNormResidual

PAPER_VOCAB = 37000  # the shared BPE vocabulary of WMT 2014 English-German (section 5.1)


def expected_parameters(
    vocab: int,
    d: int,
    d_ff: int,
    encoder_layers: int,
    decoder_layers: int,
    *,
    tgt_vocab: int | None = None,
    shared: bool = True,
    tied: bool = True,
    final_norms: bool = False,
) -> int:
    """Parameters of the paper's architecture (ReLU FFN, LayerNorm, sinusoidal positions)."""
    attention = 4 * (d * d + d)  # W^Q, W^K, W^V, W^O with biases
    ffn = (d * d_ff + d_ff) + (d_ff * d + d)  # W_1, b_1, W_2, b_2
    layer_norm = 2 * d  # gain and bias
    encoder_layer = attention + ffn + 2 * layer_norm
    decoder_layer = 2 * attention + ffn + 3 * layer_norm
    tgt_vocab = vocab if tgt_vocab is None else tgt_vocab
    embeddings = vocab * d + (0 if shared else tgt_vocab * d) + (0 if tied else tgt_vocab * d)
    norms = 2 * layer_norm if final_norms else 0  # pre-norm stacks end with a norm
    return embeddings + encoder_layers * encoder_layer + decoder_layers * decoder_layer + norms


def distinct_parameters(model: nn.Module) -> int:
    # parameters() yields a tied tensor once; count by identity to be sure
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@pytest.fixture(scope="module")
def base() -> nn.Module:
    return transformer_base(vocab_size=PAPER_VOCAB)


@pytest.fixture(scope="module")
def big_on_meta() -> nn.Module:
    with torch.device("meta"):
        return transformer_big(vocab_size=PAPER_VOCAB)


def test_base_parameter_count(base):
    n = base.num_parameters()
    expected = expected_parameters(PAPER_VOCAB, 512, 2048, 6, 6)
    print(f"\ntransformer_base(vocab_size={PAPER_VOCAB}): {n:,} parameters (paper: 65M)")
    assert expected == 63_082_496  # the formula itself, worked out by hand
    assert n == expected
    assert distinct_parameters(base) == expected
    assert abs(n - 65e6) / 65e6 < 0.05


def test_big_parameter_count(big_on_meta):
    n = big_on_meta.num_parameters()
    expected = expected_parameters(PAPER_VOCAB, 1024, 4096, 6, 6)
    print(f"\ntransformer_big(vocab_size={PAPER_VOCAB}): {n:,} parameters (paper: 213M)")
    assert expected == 214_245_376
    assert n == expected
    assert distinct_parameters(big_on_meta) == expected
    assert abs(n - 213e6) / 213e6 < 0.05
    assert all(p.device.type == "meta" for p in big_on_meta.parameters())


@pytest.mark.parametrize(
    ("model_fixture", "d", "d_ff", "heads", "dropout"),
    [("base", 512, 2048, 8, 0.1), ("big_on_meta", 1024, 4096, 16, 0.3)],
)
def test_presets_follow_table_3(request, model_fixture, d, d_ff, heads, dropout):
    model = request.getfixturevalue(model_fixture)
    cfg = model.config
    assert (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.dropout) == (d, d_ff, heads, dropout)
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (6, 6)
    assert len(model.encoder.layers) == len(model.decoder.layers) == 6
    assert model.encoder.layers[0].self_attn.num_heads == heads
    assert model.encoder.layers[0].self_attn.head_dim == d // heads == 64
    assert model.decoder.layers[0].feed_forward.up.out_features == d_ff
    # the paper's choices: post-norm without a final norm, ReLU, sinusoidal positions
    assert (cfg.norm_first, cfg.activation, cfg.positions, cfg.norm) == (
        False,
        "relu",
        "sinusoidal",
        "layernorm",
    )
    assert isinstance(model.decoder.layers[0].ff_residual, PostNormResidual)
    assert isinstance(model.encoder.final_norm, nn.Identity)
    assert isinstance(model.decoder.final_norm, nn.Identity)


@pytest.mark.parametrize("model_fixture", ["base", "big_on_meta"])
def test_presets_tie_all_three_embeddings(request, model_fixture):
    # section 3.4: one weight matrix for both embeddings and the pre-softmax projection
    model = request.getfixturevalue(model_fixture)
    assert model.src_embed.token is model.tgt_embed.token
    assert model.generator.weight is model.tgt_embed.token.weight
    assert model.generator.weight.shape == (PAPER_VOCAB, model.config.d_model)


def test_tiny_preset_shape():
    model = transformer_tiny(vocab_size=100)
    cfg = model.config
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (4, 4)
    assert (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.dropout) == (128, 256, 4, 0.1)
    assert len(model.encoder.layers) == len(model.decoder.layers) == 4
    assert model.src_embed.token.embedding_dim == 128
    assert model.encoder.layers[0].feed_forward.up.out_features == 256
    assert model.decoder.layers[0].self_attn.num_heads == 4
    assert model.num_parameters() == expected_parameters(100, 128, 256, 4, 4)


def test_presets_accept_keyword_overrides():
    model = transformer_tiny(vocab_size=100, dropout=0.0, norm_first=True, d_ff=96)
    cfg = model.config
    assert (cfg.vocab_size, cfg.dropout, cfg.norm_first, cfg.d_ff) == (100, 0.0, True, 96)
    assert cfg.d_model == 128  # not overridden
    assert isinstance(model.encoder.layers[0].attn_residual, PreNormResidual)
    assert isinstance(model.encoder.final_norm, nn.LayerNorm)
    assert isinstance(model.decoder.final_norm, nn.LayerNorm)
    assert model.src_embed.dropout.p == 0.0
    assert model.num_parameters() == expected_parameters(100, 128, 96, 4, 4, final_norms=True)


def test_preset_overrides_are_validated():
    with pytest.raises(ConfigError, match="d_modle"):
        transformer_tiny(vocab_size=100, d_modle=64)
    with pytest.raises(ConfigError, match="num_heads"):
        transformer_tiny(vocab_size=100, num_heads=3)


def test_separate_embeddings_are_not_shared():
    model = transformer_tiny(vocab_size=100, tgt_vocab_size=60, share_embeddings=False)
    assert model.src_embed.token is not model.tgt_embed.token
    assert model.src_embed.token.weight.shape == (100, 128)
    assert model.tgt_embed.token.weight.shape == (60, 128)
    # the output projection is still tied to the target embedding
    assert model.generator.weight is model.tgt_embed.token.weight
    assert model.num_parameters() == expected_parameters(
        100, 128, 256, 4, 4, tgt_vocab=60, shared=False
    )


def test_separate_embeddings_with_one_vocabulary_are_still_separate():
    model = transformer_tiny(vocab_size=100, share_embeddings=False)
    assert model.src_embed.token is not model.tgt_embed.token
    assert model.num_parameters() == expected_parameters(100, 128, 256, 4, 4, shared=False)


def test_untied_output_has_its_own_generator():
    model = transformer_tiny(vocab_size=100, tie_output=False)
    assert model.src_embed.token is model.tgt_embed.token
    assert model.generator.weight is not model.tgt_embed.token.weight
    assert model.generator.weight.data_ptr() != model.tgt_embed.token.weight.data_ptr()
    assert model.generator.weight.shape == (100, 128)
    assert model.num_parameters() == expected_parameters(100, 128, 256, 4, 4, tied=False)


def test_tied_weights_stay_tied_through_training_updates():
    model = transformer_tiny(vocab_size=100, dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    src = torch.randint(3, 100, (2, 5))
    tgt = torch.randint(3, 100, (2, 4))
    model(src, tgt).logsumexp(-1).mean().backward()
    optimizer.step()
    assert model.generator.weight is model.tgt_embed.token.weight
    assert model.src_embed.token is model.tgt_embed.token
