"""``build_transformer`` turns each config option into the module it names.

The invariant tests show that every variant behaves; these show that the variant asked for is the
one built (a builder that ignored ``norm="rmsnorm"`` would still pass the invariants), and that
the initialization is the one the builder documents.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from formers.models import TransformerConfig, build_transformer
from formers.nn import (
    FeedForward,
    GatedFeedForward,
    LearnedPositionalEmbedding,
    PostNormResidual,
    PreNormResidual,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    eager_attention,
    sdpa_attention,
    sinusoidal_table,
)

TINY = dict(
    vocab_size=37,
    d_model=32,
    d_ff=64,
    num_heads=4,
    num_encoder_layers=2,
    num_decoder_layers=3,
    dropout=0.0,
)


def build(**overrides):
    return build_transformer(TransformerConfig(**{**TINY, **overrides}))


def residuals(model):
    for layer in model.encoder.layers:
        yield from (layer.attn_residual, layer.ff_residual)
    for layer in model.decoder.layers:
        yield from (layer.self_residual, layer.cross_residual, layer.ff_residual)


def attentions(model):
    for layer in model.encoder.layers:
        yield "self", layer.self_attn
    for layer in model.decoder.layers:
        yield "self", layer.self_attn
        yield "cross", layer.cross_attn


def feed_forwards(model):
    for layer in [*model.encoder.layers, *model.decoder.layers]:
        yield layer.feed_forward


def test_stack_depths():
    model = build()
    assert len(model.encoder.layers) == 2
    assert len(model.decoder.layers) == 3
    assert len(model.decoder.new_cache().layers) == 3


@pytest.mark.parametrize(
    ("norm_first", "residual_cls", "final_norm"),
    [(False, PostNormResidual, nn.Identity), (True, PreNormResidual, nn.LayerNorm)],
)
def test_norm_placement(norm_first, residual_cls, final_norm):
    model = build(norm_first=norm_first)
    assert all(type(r) is residual_cls for r in residuals(model))
    assert type(model.encoder.final_norm) is final_norm
    assert type(model.decoder.final_norm) is final_norm


@pytest.mark.parametrize(("norm", "cls"), [("layernorm", nn.LayerNorm), ("rmsnorm", nn.RMSNorm)])
@pytest.mark.parametrize("norm_first", [False, True])
def test_norm_kind(norm, cls, norm_first):
    model = build(norm=norm, norm_first=norm_first, norm_eps=1e-6)
    norms = [r.norm for r in residuals(model)]
    if norm_first:
        norms += [model.encoder.final_norm, model.decoder.final_norm]
    assert len(norms) == 2 * 2 + 3 * 3 + (2 if norm_first else 0)
    assert all(type(n) is cls for n in norms)
    assert all(n.eps == 1e-6 for n in norms)
    assert all(n.normalized_shape == (32,) for n in norms)


@pytest.mark.parametrize(
    ("activation", "cls", "name"),
    [
        ("relu", FeedForward, "relu"),
        ("gelu", FeedForward, "gelu"),
        ("swiglu", GatedFeedForward, "silu"),
        ("geglu", GatedFeedForward, "gelu"),
        ("glu", GatedFeedForward, "sigmoid"),
    ],
)
def test_feed_forward_kind(activation, cls, name):
    model = build(activation=activation)
    for ffn in feed_forwards(model):
        assert type(ffn) is cls
        assert ffn.activation_name == name
        assert (ffn.up.in_features, ffn.up.out_features) == (32, 64)
        assert (ffn.down.in_features, ffn.down.out_features) == (64, 32)


def test_positions_sinusoidal():
    model = build(positions="sinusoidal")
    for embed in (model.src_embed, model.tgt_embed):
        assert isinstance(embed.positions, SinusoidalPositionalEncoding)
    assert all(a.positions is None for _, a in attentions(model))


def test_positions_sinusoidal_halves():
    model = build(positions="sinusoidal_halves", max_positions=16)
    for embed in (model.src_embed, model.tgt_embed):
        assert isinstance(embed.positions, SinusoidalPositionalEncoding)
        expected = sinusoidal_table(torch.arange(16), 32, interleave=False)
        assert torch.equal(embed.positions(16), expected)


def test_positions_learned_are_separate_for_source_and_target():
    model = build(positions="learned", max_positions=50)
    src, tgt = model.src_embed.positions, model.tgt_embed.positions
    assert isinstance(src, LearnedPositionalEmbedding)
    assert isinstance(tgt, LearnedPositionalEmbedding)
    assert src is not tgt
    assert src.embedding.weight.shape == (50, 32)
    assert all(a.positions is None for _, a in attentions(model))


def test_positions_rotary_only_in_self_attention():
    model = build(positions="rotary", rope_base=500.0, max_positions=40)
    assert model.src_embed.positions is None and model.tgt_embed.positions is None
    for kind, attn in attentions(model):
        if kind == "self":
            assert isinstance(attn.positions, RotaryEmbedding)
            assert attn.positions.cos.shape == (40, 8)  # (max_positions, head_dim)
            expected = 1.0 / 500.0 ** (torch.arange(0, 8, 2, dtype=torch.float32) / 8)
            torch.testing.assert_close(attn.positions.inv_freq, expected)
        else:
            assert attn.positions is None  # source and target positions are not comparable
            assert attn.cross
    # one instance per stack, shared by its layers (its tables are the same)
    shared = [{id(layer.self_attn.positions) for layer in stack.layers}
              for stack in (model.encoder, model.decoder)]  # fmt: skip
    assert [len(ids) for ids in shared] == [1, 1] and shared[0] != shared[1]


@pytest.mark.parametrize(("num_kv_heads", "kv"), [(None, 4), (2, 2), (1, 1)])
def test_key_value_heads(num_kv_heads, kv):
    model = build(num_kv_heads=num_kv_heads)
    for _, attn in attentions(model):
        assert (attn.num_heads, attn.num_kv_heads, attn.head_dim) == (4, kv, 8)
        assert attn.q_proj.out_features == 32
        assert attn.k_proj.out_features == attn.v_proj.out_features == kv * 8


@pytest.mark.parametrize(("kernel", "fn"), [("sdpa", sdpa_attention), ("eager", eager_attention)])
def test_kernel(kernel, fn):
    model = build(kernel=kernel)
    assert all(attn.mechanism.kernel is fn for _, attn in attentions(model))


def test_attention_dropout_reaches_every_attention():
    model = build(attention_dropout=0.15, activation_dropout=0.25, dropout=0.05)
    assert all(attn.dropout == 0.15 for _, attn in attentions(model))
    assert all(ffn.dropout.p == 0.25 for ffn in feed_forwards(model))
    assert all(r.dropout.p == 0.05 for r in residuals(model))
    assert model.src_embed.dropout.p == model.tgt_embed.dropout.p == 0.05


def test_no_bias():
    model = build(bias=False, activation="swiglu")
    for _, attn in attentions(model):
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            assert proj.bias is None
    for ffn in feed_forwards(model):
        assert ffn.up.bias is None and ffn.down.bias is None and ffn.gate.bias is None
    assert model.generator.bias is None


def test_generator_has_no_bias_even_untied():
    assert build(tie_output=False).generator.bias is None


@pytest.mark.parametrize("tie_output", [True, False])
def test_output_bias_is_a_zero_initialized_bias_of_the_generator(tie_output):
    model = build(output_bias=True, tie_output=tie_output)
    assert model.generator.bias.shape == (37,)
    assert torch.equal(model.generator.bias, torch.zeros(37))
    assert (model.generator.weight is model.tgt_embed.token.weight) == tie_output


@pytest.mark.parametrize(("scale_embeddings", "scale"), [(True, math.sqrt(32)), (False, 1.0)])
def test_embedding_scale(scale_embeddings, scale):
    model = build(scale_embeddings=scale_embeddings)
    assert model.src_embed.scale == model.tgt_embed.scale == pytest.approx(scale)


@pytest.mark.parametrize("scale_embeddings", [True, False])
@torch.no_grad()
def test_embeddings_compute_scaled_tokens_plus_the_paper_encoding(scale_embeddings):
    model = build(scale_embeddings=scale_embeddings).eval()
    tokens = torch.tensor([[4, 9, 0, 30]])
    scale = math.sqrt(32) if scale_embeddings else 1.0
    expected = model.tgt_embed.token.weight[tokens] * scale + sinusoidal_table(
        torch.arange(3, 7), 32
    )
    torch.testing.assert_close(model.tgt_embed(tokens, offset=3), expected)


@pytest.mark.parametrize("share_embeddings", [True, False])
def test_pad_rows_are_zero_and_padding_idx_is_set(share_embeddings):
    model = build(pad_id=5, bos_id=1, eos_id=2, share_embeddings=share_embeddings)
    for embed in (model.src_embed.token, model.tgt_embed.token):
        assert embed.padding_idx == 5
        assert (embed.weight[5] == 0).all()
        assert (embed.weight[4] != 0).any()
    assert model.pad_id == 5


def test_initialization_of_the_base_width():
    # embeddings N(0, d^-1/2) so that after the sqrt(d) scaling they have unit variance;
    # projections Xavier-uniform, std sqrt(2 / (fan_in + fan_out)); biases zero
    model = build(d_model=256, d_ff=1024, num_heads=4, vocab_size=2000)
    token = model.src_embed.token.weight[1:]
    assert token.std().item() == pytest.approx(256**-0.5, rel=0.05)
    assert token.mean().abs().item() < 0.01
    attn = model.encoder.layers[0].self_attn
    assert attn.q_proj.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    assert attn.q_proj.weight.abs().max().item() <= math.sqrt(6 / 512)
    ffn = model.decoder.layers[0].feed_forward
    assert ffn.up.weight.std().item() == pytest.approx(math.sqrt(2 / 1280), rel=0.05)
    for name, p in model.named_parameters():
        if name.endswith("bias") and "norm" not in name:
            assert (p == 0).all(), name
        if "norm" in name and name.endswith("weight"):
            assert (p == 1).all(), name


def test_initialization_without_embedding_scaling_uses_std_002():
    model = build(vocab_size=2000, d_model=64, scale_embeddings=False)
    assert model.src_embed.token.weight[1:].std().item() == pytest.approx(0.02, rel=0.05)


def test_builds_are_reproducible_under_a_seed():
    torch.manual_seed(123)
    first = build().state_dict()
    torch.manual_seed(123)
    second = build().state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
