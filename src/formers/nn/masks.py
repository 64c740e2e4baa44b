"""Attention masks: one boolean convention for the whole library.

Convention: a mask is a boolean tensor broadcastable to ``(b, h, t_q, t_k)`` in which
``True`` means *the query may attend to this key*. Masks are converted to whatever a
kernel needs only inside :mod:`formers.nn.kernels`.

Shapes: b batch, h heads, t_q query length, t_k key length, s source length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Key-padding mask from token ids.

    Args:
        tokens: ``(b, s)`` token ids.
        pad_id: the padding id.

    Returns:
        ``(b, 1, 1, s)`` boolean mask, True at real (non-padding) tokens.
    """
    return (tokens != pad_id)[:, None, None, :]


def lengths_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Key-padding mask from sequence lengths (right padding).

    Args:
        lengths: ``(b,)`` number of real tokens per sequence.
        max_len: padded length; defaults to ``lengths.max()``.

    Returns:
        ``(b, 1, 1, s)`` boolean mask, True at the first ``lengths[i]`` positions.
    """
    s = int(lengths.max()) if max_len is None else max_len
    return (torch.arange(s, device=lengths.device) < lengths[:, None])[:, None, None, :]


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | None = None) -> Tensor:
    """Causal mask aligned to the bottom-right corner.

    Query ``i`` sits at absolute position ``t_k - t_q + i`` (the queries are the last
    ``t_q`` of the ``t_k`` keys, as when decoding with a KV cache) and may attend to
    keys at positions ``<=`` its own.

    Returns:
        ``(t_q, t_k)`` boolean mask.
    """
    t_k = t_q if t_k is None else t_k
    q_pos = torch.arange(t_k - t_q, t_k, device=device)
    return q_pos[:, None] >= torch.arange(t_k, device=device)[None, :]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable masks; ``None`` entries mean "no restriction"."""
    result: Tensor | None = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else result & mask
    return result
