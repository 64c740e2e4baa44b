"""``torch.nn.Transformer`` wrapped to compute what formers' encoder-decoder computes.

The same shared, scaled, tied token embedding and sinusoidal positions around PyTorch's own
Transformer, and a function that copies formers' weights into it, so that the two can be timed
against each other on identical weights (see ``train_throughput.py`` for the differences).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from formers.models.transformer import TransformerConfig
from formers.nn import sinusoidal_table


class TorchSeq2Seq(nn.Module):
    """``torch.nn.Transformer`` with formers' embedding scheme and tied output projection."""

    def __init__(self, cfg: TransformerConfig, torch_native_dropout: bool = False) -> None:
        super().__init__()
        d = cfg.d_model
        self.pad_id = cfg.pad_id
        self.token = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_id)
        self.scale = math.sqrt(d)
        table = sinusoidal_table(torch.arange(cfg.max_positions), d)
        self.register_buffer("positions", table, persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.transformer = nn.Transformer(
            d_model=d,
            nhead=cfg.num_heads,
            num_encoder_layers=cfg.num_encoder_layers,
            num_decoder_layers=cfg.num_decoder_layers,
            dim_feedforward=cfg.d_ff,
            dropout=cfg.dropout,
            activation="relu",
            layer_norm_eps=cfg.norm_eps,
            batch_first=True,
            norm_first=False,
        )
        if not torch_native_dropout:
            layers = [*self.transformer.encoder.layers, *self.transformer.decoder.layers]
            for layer in layers:
                for attn in (layer.self_attn, getattr(layer, "multihead_attn", None)):
                    if attn is not None:
                        attn.dropout = cfg.attention_dropout
                layer.dropout.p = cfg.activation_dropout  # between linear1 and linear2
        self.generator = nn.Linear(d, cfg.vocab_size, bias=False)
        nn.init.normal_(self.token.weight, std=d**-0.5)
        with torch.no_grad():
            self.token.weight[cfg.pad_id].zero_()
        self.generator.weight = self.token.weight

    def embed(self, tokens: Tensor) -> Tensor:
        x = self.token(tokens) * self.scale + self.positions[: tokens.size(1)]
        return self.dropout(x)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        src_pad = src == self.pad_id  # torch's convention: True = ignore
        t = tgt.size(1)
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(t, device=tgt.device)
        hidden = self.transformer(
            self.embed(src),
            self.embed(tgt),
            tgt_mask=tgt_mask,
            tgt_is_causal=True,
            src_key_padding_mask=src_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.generator(hidden)


@torch.no_grad()
def copy_weights(ours: nn.Module, base: TorchSeq2Seq) -> None:
    """Copy formers' parameters into the baseline (its extra final norms are left as they are)."""

    def linear(dst_w: Tensor, dst_b: Tensor, *srcs: nn.Linear) -> None:
        dst_w.copy_(torch.cat([s.weight for s in srcs]))
        dst_b.copy_(torch.cat([s.bias for s in srcs]))

    def mha(dst: nn.MultiheadAttention, src: nn.Module) -> None:
        linear(dst.in_proj_weight, dst.in_proj_bias, src.q_proj, src.k_proj, src.v_proj)
        linear(dst.out_proj.weight, dst.out_proj.bias, src.out_proj)

    def norm(dst: nn.LayerNorm, src: nn.Module) -> None:
        dst.weight.copy_(src.norm.weight)
        dst.bias.copy_(src.norm.bias)

    def ffn(dst: nn.Module, src: nn.Module) -> None:
        linear(dst.linear1.weight, dst.linear1.bias, src.up)
        linear(dst.linear2.weight, dst.linear2.bias, src.down)

    base.token.weight.copy_(ours.src_embed.token.weight)
    for dst, src in zip(base.transformer.encoder.layers, ours.encoder.layers, strict=True):
        mha(dst.self_attn, src.self_attn)
        ffn(dst, src.feed_forward)
        norm(dst.norm1, src.attn_residual)
        norm(dst.norm2, src.ff_residual)
    for dst, src in zip(base.transformer.decoder.layers, ours.decoder.layers, strict=True):
        mha(dst.self_attn, src.self_attn)
        mha(dst.multihead_attn, src.cross_attn)
        ffn(dst, src.feed_forward)
        norm(dst.norm1, src.self_residual)
        norm(dst.norm2, src.cross_residual)
        norm(dst.norm3, src.ff_residual)


def check_equivalence(ours: nn.Module, base: TorchSeq2Seq, batch: dict[str, Any]) -> dict:
    """Max |logit difference| in eval mode, with the baseline's final norms bypassed.

    Runs with autograd on, so that ``torch.nn.Transformer`` takes its training code path
    (its inference fast path returns zeros at padded source positions).
    """
    enc, dec = base.transformer.encoder, base.transformer.decoder
    norms = enc.norm, dec.norm
    enc.norm, dec.norm = nn.Identity(), nn.Identity()
    ours.eval(), base.eval()
    try:
        a = ours(batch["src"], batch["tgt_in"]).detach().float()
        b = base(batch["src"], batch["tgt_in"]).detach().float()
    finally:
        enc.norm, dec.norm = norms
        ours.train(), base.train()
    real = batch["tgt_out"] != base.pad_id
    diff = (a - b).abs()[real]
    return {
        "max_abs_logit_diff": diff.max().item(),
        "mean_abs_logit_diff": diff.mean().item(),
        "max_abs_logit": a[real].abs().max().item(),
        "note": "eval mode, same weights, torch's final LayerNorms bypassed for the check only",
    }


# --- data -----------------------------------------------------------------------------------
