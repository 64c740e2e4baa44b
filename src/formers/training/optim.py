"""The optimizer and the autocast precision of a training run."""

from __future__ import annotations

import torch
from torch import nn


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype, or None for fp32 (always on CPU: autocast there is slower)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_optimizer(
    model: nn.Module, kind: str, *, betas: tuple[float, float], eps: float, weight_decay: float,
    fused: bool,
) -> torch.optim.Optimizer:  # fmt: skip
    """``"adam"``: ``torch.optim.Adam`` on every parameter, its ``weight_decay`` an L2 term added
    to the gradient (deviation: fairseq's Adam decouples the decay, as AdamW does; the Multi30k
    recipes use 0 or 1e-4, where the two barely differ). ``"adamw"``: AdamW (Loshchilov & Hutter
    2017, arXiv 1711.05101) decaying only matrices and embeddings, not biases and norm gains
    (GPT-2 / nanoGPT). The base lr is 1; the schedule sets the rate."""
    if kind == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=1.0, betas=betas, eps=eps, weight_decay=weight_decay,
            fused=fused,
        )  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1.0, betas=betas, eps=eps, fused=fused)
