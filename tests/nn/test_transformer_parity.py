"""Parity of our encoder and decoder stacks (built from a :class:`TransformerConfig`) with
``torch.nn.Transformer``, given the same embedded inputs and the reference's weights.

Parameter names of the reference, per layer: ``self_attn`` (and ``multihead_attn`` in the
decoder), ``linear1``/``linear2`` (our ``feed_forward.up``/``down``), ``norm1``, ``norm2`` (and
``norm3``), in sublayer order; ``encoder.norm``/``decoder.norm`` are the stacks' final norms.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from formers.models.transformer.builders import build_decoder, build_encoder
from formers.models.transformer.config import TransformerConfig
from formers.nn import MultiHeadAttention
from formers.nn.masks import causal_mask, lengths_mask

D, H, D_FF, LAYERS = 32, 4, 64, 2
FWD_TOL = 1e-5
GRAD_TOL = 1e-4


def _copy_attention(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    w_q, w_k, w_v = ref.in_proj_weight.chunk(3)
    b_q, b_k, b_v = ref.in_proj_bias.chunk(3)
    for proj, w, b in ((ours.q_proj, w_q, b_q), (ours.k_proj, w_k, b_k), (ours.v_proj, w_v, b_v)):
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    ours.out_proj.bias.copy_(ref.out_proj.bias)


def _copy_module(ours: nn.Module, ref: nn.Module) -> None:
    ours.load_state_dict(ref.state_dict())


def _models(activation: str, norm_first: bool):
    cfg = TransformerConfig(
        vocab_size=11,
        d_model=D,
        num_heads=H,
        d_ff=D_FF,
        num_encoder_layers=LAYERS,
        num_decoder_layers=LAYERS,
        dropout=0.0,
        activation=activation,
        norm_first=norm_first,
    )
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    with warnings.catch_warnings():
        # "enable_nested_tensor is True, but ... norm_first was True": about the fast path only
        warnings.simplefilter("ignore", UserWarning)
        ref = nn.Transformer(
            d_model=D,
            nhead=H,
            num_encoder_layers=LAYERS,
            num_decoder_layers=LAYERS,
            dim_feedforward=D_FF,
            dropout=0.0,
            activation=activation,
            batch_first=True,
            norm_first=norm_first,
        )
    if not norm_first:
        # torch.nn.Transformer always ends both stacks with a LayerNorm, even in post-norm,
        # where every layer already ends with one; the paper (section 3.1) has no such extra
        # norm and neither do our post-norm stacks. Remove it from the reference.
        assert isinstance(encoder.final_norm, nn.Identity)
        assert isinstance(decoder.final_norm, nn.Identity)
        ref.encoder.norm = nn.Identity()
        ref.decoder.norm = nn.Identity()
    with torch.no_grad():
        # Attention biases start at zero and norms at (1, 0): randomize everything so that a
        # mix-up of two parameters in the mapping below cannot go unnoticed.
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
        for ours_layer, ref_layer in zip(encoder.layers, ref.encoder.layers, strict=True):
            _copy_attention(ours_layer.self_attn, ref_layer.self_attn)
            _copy_module(ours_layer.feed_forward.up, ref_layer.linear1)
            _copy_module(ours_layer.feed_forward.down, ref_layer.linear2)
            _copy_module(ours_layer.attn_residual.norm, ref_layer.norm1)
            _copy_module(ours_layer.ff_residual.norm, ref_layer.norm2)
        for ours_layer, ref_layer in zip(decoder.layers, ref.decoder.layers, strict=True):
            _copy_attention(ours_layer.self_attn, ref_layer.self_attn)
            _copy_attention(ours_layer.cross_attn, ref_layer.multihead_attn)
            _copy_module(ours_layer.feed_forward.up, ref_layer.linear1)
            _copy_module(ours_layer.feed_forward.down, ref_layer.linear2)
            _copy_module(ours_layer.self_residual.norm, ref_layer.norm1)
            _copy_module(ours_layer.cross_residual.norm, ref_layer.norm2)
            _copy_module(ours_layer.ff_residual.norm, ref_layer.norm3)
        if norm_first:
            _copy_module(encoder.final_norm, ref.encoder.norm)
            _copy_module(decoder.final_norm, ref.decoder.norm)
    n_ours = sum(p.numel() for p in (*encoder.parameters(), *decoder.parameters()))
    assert n_ours == sum(p.numel() for p in ref.parameters())
    # Training mode (dropout is 0, so it is deterministic) keeps the reference off its inference
    # fast path, which returns zeros at padded source positions instead of computing them.
    return encoder.train(), decoder.train(), ref.train()


@pytest.mark.parametrize(
    ("activation", "norm_first"),
    [("relu", False), ("relu", True), ("gelu", False), ("gelu", True)],
    ids=["relu-postnorm", "relu-prenorm", "gelu-postnorm", "gelu-prenorm"],
)
def test_encoder_decoder_matches_torch_transformer(activation, norm_first):
    encoder, decoder, ref = _models(activation, norm_first)
    b, s, t = 3, 7, 5
    src_lengths, tgt_lengths = torch.tensor([7, 4, 2]), torch.tensor([5, 5, 3])
    src_keep = lengths_mask(src_lengths, s)  # (b, 1, 1, s), True = real token
    tgt_keep = lengths_mask(tgt_lengths, t)
    src = torch.randn(b, s, D, requires_grad=True)
    tgt = torch.randn(b, t, D, requires_grad=True)
    src_ref = src.detach().clone().requires_grad_()
    tgt_ref = tgt.detach().clone().requires_grad_()

    memory = encoder(src, src_keep)
    out = decoder(tgt, memory, memory_mask=src_keep, self_mask=tgt_keep)

    src_pad, tgt_pad = ~src_keep[:, 0, 0], ~tgt_keep[:, 0, 0]  # (b, ·), True = padding
    ref_memory = ref.encoder(src_ref, src_key_padding_mask=src_pad)
    expected = ref(
        src_ref,
        tgt_ref,
        tgt_mask=~causal_mask(t),  # boolean, True = ignore, like the padding masks
        src_key_padding_mask=src_pad,
        tgt_key_padding_mask=tgt_pad,
        memory_key_padding_mask=src_pad,
        tgt_is_causal=True,
    )
    assert (memory - ref_memory).abs().max() <= FWD_TOL
    assert out.shape == expected.shape == (b, t, D)
    assert (out - expected).abs().max() <= FWD_TOL

    probe = torch.randn(b, t, D)
    (out * probe).sum().backward()
    (expected * probe).sum().backward()
    assert (src.grad - src_ref.grad).abs().max() <= GRAD_TOL
    assert (tgt.grad - tgt_ref.grad).abs().max() <= GRAD_TOL
    # gradients reach the padded source positions in neither model
    assert torch.equal(src.grad[1, 4:], torch.zeros_like(src.grad[1, 4:]))


def test_post_norm_reference_differs_with_its_extra_final_norm():
    """Removing the reference's final norms above matters: kept, the outputs differ, so the
    parity test really pins down the paper's post-norm arrangement."""
    encoder, _, ref = _models("relu", norm_first=False)
    ref.encoder.norm = nn.LayerNorm(D)
    with torch.no_grad():
        ref.encoder.norm.weight.normal_()
        src = torch.randn(2, 4, D)
        assert (encoder(src) - ref.encoder(src)).abs().max() > 1e-2
