"""Attention masks: one boolean convention for the whole library.

Convention: a mask is a boolean tensor broadcastable to ``(b, h, t_q, t_k)`` in which
``True`` means *the query may attend to this key*. Masks are converted to whatever a
kernel needs only inside :mod:`formers.nn.kernels`.

A model describes what its queries may see once, as an :class:`AttentionMask`: which keys are
real (key padding, kept beside the KV cache while decoding), whether attention is causal, and
patterns, small functions of the query and key positions (a sliding window, global tokens,
blocks: the sparse and local X-formers). Each kernel asks for it in the form it takes
(:meth:`AttentionMask.for_kernel`): the dense boolean mask, built once per shape and device and
shared by the layers, and causality as a flag, so that SDPA keeps its fastest path when there is
nothing else to mask.

Shapes: b batch, h heads, t_q query length, t_k key length, s source length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

# a pattern: query positions (t_q, 1) and key positions (1, t_k) -> may attend, broadcastable
MaskPattern = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True, eq=False)
class AttentionMask:
    """What each query may attend to.

    Attributes:
        keys: ``(b, t_k)`` boolean, True at real keys (``None``: all are).
        causal: no query sees a later key (bottom-right aligned: the queries are the last
            ``t_q`` positions of the ``t_k`` keys, as when decoding with a cache).
        patterns: functions of the positions (see :data:`MaskPattern`), all of which must
            allow a pair; positions are those of the keys, the queries the last ``t_q``.
        dense: a boolean mask broadcastable to ``(b, h, t_q, t_k)``, ANDed with the rest.
    """

    keys: Tensor | None = None
    causal: bool = False
    patterns: tuple[MaskPattern, ...] = ()
    dense: Tensor | None = None
    _built: dict = field(default_factory=dict, repr=False)  # (t_q, t_k, device) -> mask

    @classmethod
    def of(cls, mask: AttentionMask | Tensor | None, causal: bool = False) -> AttentionMask | None:
        """``mask`` as an :class:`AttentionMask`: a dense boolean tensor is wrapped (with
        ``causal``); ``None`` without causality is ``None`` (no restriction)."""
        if isinstance(mask, AttentionMask):
            return mask if not causal or mask.causal else mask.with_causal()
        if mask is None and not causal:
            return None
        return cls(causal=causal, dense=mask)

    def with_causal(self) -> AttentionMask:
        return AttentionMask(self.keys, True, self.patterns, self.dense)

    def for_kernel(self, t_q: int, t_k: int, device: torch.device) -> tuple[Tensor | None, bool]:
        """``(dense mask or None, causal)`` for a kernel of :mod:`formers.nn.kernels`: the key
        padding, patterns and dense mask ANDed into one boolean ``(b|1, 1|h, t_q, t_k)`` tensor
        (built once per shape and device), and causality left to the kernel."""
        if isinstance(t_q, torch.SymInt) or isinstance(t_k, torch.SymInt):
            return self._materialize(t_q, t_k, device), self.causal  # exporting: no memo
        key = (t_q, t_k, device)
        if key not in self._built:
            self._built[key] = self._materialize(t_q, t_k, device)
        return self._built[key], self.causal

    def _materialize(self, t_q: int, t_k: int, device: torch.device) -> Tensor | None:
        parts: list[Tensor | None] = [self.dense]
        if self.keys is not None:
            if self.keys.size(-1) != t_k:
                raise ValueError(
                    f"the key padding mask covers {self.keys.size(-1)} keys, but there are {t_k}"
                )
            parts.append(self.keys[:, None, None, :].to(device))  # (b, 1, 1, t_k)
        if self.patterns:
            k_pos = torch.arange(t_k, device=device)
            q_pos = k_pos[t_k - t_q :, None]  # (t_q, 1): the queries are the last keys
            parts += [pattern(q_pos, k_pos[None, :]) for pattern in self.patterns]
        return combine_masks(*parts)


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
