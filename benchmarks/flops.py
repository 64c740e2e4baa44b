"""Model FLOPs utilization (MFU, PaLM appendix B: Chowdhery et al. 2022, arXiv 2204.02311) of an
encoder-decoder training step: the matrix-product FLOPs the model needs per step (forward and
backward: 3x the forward's 2 FLOPs per multiply-add), over the device's dense peak.

Counted on real (non-padding) tokens: every weight matrix once per token of its side (encoder:
source tokens; decoder and output projection: target tokens), plus attention's two products
(scores and the weighted sum) over full, not causal, key lengths. Embedding lookups, norms and
softmax are not counted (as PaLM).
"""

from __future__ import annotations

from typing import Any

from torch import nn

# dense bf16 peaks in TFLOP/s, from the vendors' data sheets (SXM parts; no sparsity)
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU by its name (``None`` when unknown)."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def _matrix_params(module: nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if p.dim() == 2)


def step_flops(model: nn.Module, batch: dict[str, Any]) -> float:
    """Training FLOPs of one step of a formers :class:`~formers.nn.EncoderDecoder` on ``batch``
    (``src`` and ``tgt_in`` ids; padding is ``model.pad_id``)."""
    src_real = (batch["src"] != model.pad_id).sum(dim=1).tolist()
    tgt_real = (batch["tgt_in"] != model.pad_id).sum(dim=1).tolist()
    cfg = model.config
    s, t = sum(src_real), sum(tgt_real)
    linear = _matrix_params(model.encoder) * s + _matrix_params(model.decoder) * t
    linear += model.generator.weight.numel() * t
    d = cfg.d_model
    enc, dec = cfg.num_encoder_layers, cfg.num_decoder_layers
    attention = sum(  # per layer and query: 2 d FLOPs per key for scores, 2 d for the sum
        enc * 2 * d * si * si + dec * 2 * d * (ti * ti + ti * si)
        for si, ti in zip(src_real, tgt_real, strict=True)
    )
    return 6.0 * (linear + attention)


def mfu(model: nn.Module, batches: list[dict[str, Any]], step_s: float, device_name: str) -> dict:
    """``{"model_tflops_per_s", "peak_tflops", "mfu"}`` for a median step time ``step_s``."""
    flops = sum(step_flops(model, b) for b in batches) / len(batches)
    achieved = flops / step_s / 1e12
    peak = peak_tflops(device_name)
    return {
        "model_tflops_per_s": achieved,
        "peak_bf16_tflops": peak,
        "mfu": None if peak is None else achieved / peak,
        "flops_per_step": flops,
    }
