"""Scaled dot-product attention kernels, selectable by name.

``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` (Vaswani et al. 2017, arXiv 1706.03762,
eq. 1). Architectures choose *what* to attend to; kernels only decide *how* it is computed,
so they are interchangeable (the idea of Hugging Face's attention-kernel registry):

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention`, the fast path
  (fused flash / memory-efficient kernels where the device has them). It cannot return weights.
- ``"eager"``: the explicit formula, which can return the attention probabilities.

Every kernel has the signature of :class:`AttentionKernel` and the same mask convention
(:mod:`formers.nn.masks`: boolean, True = may attend). Rows in which no key may be attended to
produce zeros, never NaN, and so do their gradients: SDPA's safe softmax guarantees it from torch
2.5 (pytorch/pytorch#131060; 2.4 gave NaN), the oldest torch formers supports. The eager softmax
runs in float32 for bf16/fp16 inputs (under autocast too), as Hugging Face's does.

Shapes: b batch, h query heads, g key/value heads (``h % g == 0``; g < h is GQA/MQA),
t_q query length, t_k key length, d head dim.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from formers.nn.masks import causal_mask, combine_masks


class AttentionKernel(Protocol):
    """The call signature shared by every kernel."""

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        bias: Tensor | None = None,
        dropout_p: float = 0.0,
        scale: float | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            q: ``(b, h, t_q, d)``; k, v: ``(b, g, t_k, d)``.
            mask: boolean, broadcastable to ``(b, h, t_q, t_k)``, True = may attend.
            causal: also apply a causal mask aligned to the bottom-right corner
                (see :func:`formers.nn.masks.causal_mask`).
            bias: added to the scaled scores, broadcastable to ``(b, h, t_q, t_k)`` (relative
                position schemes: T5, ALiBi, Shaw, ...).
            dropout_p: dropout on the attention probabilities (pass 0.0 in eval mode).
            scale: defaults to ``1 / sqrt(d)``.
            need_weights: also return the ``(b, h, t_q, t_k)`` probabilities.

        Returns:
            ``(out, weights)`` with ``out`` of shape ``(b, h, t_q, d)``.
        """
        ...


def _symbolic(size: int) -> bool:
    """A size that is a symbol (exporting with a dynamic length): no branch may depend on it."""
    return isinstance(size, torch.SymInt)


def _merged_mask(mask: Tensor | None, causal: bool, t_q: int, t_k: int, device) -> Tensor | None:
    # one query is the last: bottom-right aligned, it sees every key
    if not causal or (not _symbolic(t_q) and t_q == 1):
        return mask
    return combine_masks(mask, causal_mask(t_q, t_k, device=device))


def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    need_weights: bool = False,
) -> tuple[Tensor, None]:
    """The fast path: PyTorch's fused scaled dot-product attention (a bias makes its mask a
    float one: the bias, and minus infinity where the boolean mask is False)."""
    if need_weights:
        raise ValueError("the 'sdpa' kernel cannot return attention weights; use 'eager'")
    t_q, t_k = q.size(-2), k.size(-2)
    # SDPA's own is_causal is top-left aligned; it equals ours only when t_q == t_k, and it
    # selects the fastest kernels only without an explicit mask. One query (a decoding step)
    # needs no causal mask at all. A symbolic query length (an exported graph that serves a
    # prompt and single tokens) gets the explicit bottom-right mask, right for every length.
    symbolic = _symbolic(t_q) or _symbolic(t_k)
    causal = causal and (symbolic or t_q > 1)
    use_is_causal = causal and not symbolic and mask is None and bias is None and t_q == t_k
    attn_mask = None if use_is_causal else _merged_mask(mask, causal, t_q, t_k, q.device)
    if bias is not None:
        bias = bias.to(q.dtype)
        attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, -torch.inf)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=use_is_causal,
        scale=scale,
        enable_gqa=q.size(1) != k.size(1),  # key/value heads shared by groups of query heads
    )
    return out, None


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """Repeat each key/value head ``groups`` times: ``(b, g, t, d) -> (b, g * groups, t, d)``."""
    if groups == 1:
        return x
    b, g, t, d = x.shape
    return x[:, :, None].expand(b, g, groups, t, d).reshape(b, g * groups, t, d)


def eager_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """softmax(Q K^T / sqrt(d_k) + bias) V written out, so that the probabilities can be
    returned."""
    groups = q.size(1) // k.size(1)
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (b, h, t_q, t_k)
    if bias is not None:
        scores = scores + bias
    mask = _merged_mask(mask, causal, q.size(-2), k.size(-2), q.device)
    if mask is not None:
        # The most negative finite value (not -inf) keeps fully masked rows free of NaN;
        # they are zeroed below, as SDPA does.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    # at least float32 (bf16/fp16 scores: float32; float64 stays float64)
    exact = torch.promote_types(scores.dtype, torch.float32)
    weights = torch.softmax(scores, dim=-1, dtype=exact).to(v.dtype)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = torch.matmul(dropped, v)  # (b, h, t_q, d)
    return out, (weights if need_weights else None)


KERNELS: dict[str, AttentionKernel] = {"sdpa": sdpa_attention, "eager": eager_attention}


def get_kernel(name: str) -> AttentionKernel:
    """Look up a kernel by name, with an error that lists the valid names."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(
            f"unknown attention kernel {name!r}; choose one of {sorted(KERNELS)}"
        ) from None
