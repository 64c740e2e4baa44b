"""Stacks of layers: the paper's encoder and decoder (arXiv 1706.03762, section 3.1).

A pre-norm stack ends with a final norm (its residual stream is never normalized otherwise);
the paper's post-norm stack has none (``final_norm=None``). Note that ``torch.nn.Transformer``
adds a final LayerNorm to post-norm stacks too, which the paper does not have.

Shapes: b batch, t target length, s source length, d model width, h heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from formers.nn.kv_cache import DecoderCache
from formers.nn.layers import DecoderLayer, EncoderLayer


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer` with an optional final norm."""

    def __init__(self, layers: Sequence[EncoderLayer], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor] | None]:
        """Args:
            x: ``(b, s, d)`` embedded source.
            mask: boolean key-padding mask, e.g. ``(b, 1, 1, s)``.
            causal: mask future positions in every layer.
            need_weights: also return each layer's ``(b, h, s, s)`` probabilities.

        Returns:
            ``(hidden, weights)``: ``(b, s, d)`` and a list per layer, or ``None``.
        """
        weights: list[Tensor] | None = [] if need_weights else None
        for layer in self.layers:
            x, w = layer(x, mask, causal=causal, need_weights=need_weights)
            if weights is not None:
                weights.append(w)
        return self.final_norm(x), weights


@dataclass
class DecoderWeights:
    """Per-layer attention probabilities of a decoder: lists of ``(b, h, t, ·)`` tensors."""

    self_attn: list[Tensor]
    cross_attn: list[Tensor | None]


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer` with an optional final norm."""

    def __init__(self, layers: Sequence[DecoderLayer], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    @property
    def has_cross_attention(self) -> bool:
        return any(layer.cross_attn is not None for layer in self.layers)

    def new_cache(self) -> DecoderCache:
        """An empty cache for incremental decoding with this stack."""
        return DecoderCache.empty(len(self.layers), self.has_cross_attention)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_mask: Tensor | None = None,
        self_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, DecoderWeights | None]:
        """Args:
            x: ``(b, t, d)`` embedded target (only new positions when ``cache`` is given).
            memory: ``(b, s, d)`` encoder output (may be omitted once the cache is filled).
            memory_mask: boolean source-padding mask, e.g. ``(b, 1, 1, s)``.
            self_mask: extra boolean self-attention mask (causality is always applied).
            cache: the stack's caches, updated in place.
            need_weights: also return the attention probabilities.

        Returns:
            ``(hidden, weights)``: ``(b, t, d)`` and :class:`DecoderWeights` or ``None``.
        """
        weights = DecoderWeights([], []) if need_weights else None
        for i, layer in enumerate(self.layers):
            x, w_self, w_cross = layer(
                x,
                memory,
                memory_mask=memory_mask,
                self_mask=self_mask,
                cache=None if cache is None else cache.layers[i],
                need_weights=need_weights,
            )
            if weights is not None:
                weights.self_attn.append(w_self)
                weights.cross_attn.append(w_cross)
        return self.final_norm(x), weights
