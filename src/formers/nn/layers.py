"""Encoder and decoder layers (Vaswani et al. 2017, arXiv 1706.03762, section 3.1, Figure 1).

An encoder layer is self-attention then a feed-forward network; a decoder layer is masked
self-attention, encoder-decoder attention, then a feed-forward network. Each sublayer sits in a
residual wrapper (:mod:`formers.nn.norms`) that decides post-norm (the paper) or pre-norm.
Sublayers are injected, so a builder decides MHA vs GQA, ReLU vs SwiGLU, LayerNorm vs RMSNorm,
and which attention mechanism and position scheme the attention uses. A layer returns its output
only; its attention weights are for an :class:`~formers.nn.recorder.AttentionRecorder`.

Shapes: b batch, t target length, s source length, d model width, h heads.
"""

from __future__ import annotations

from torch import Tensor, nn

from formers.nn.attention import MultiHeadAttention
from formers.nn.kv_cache import LayerCache
from formers.nn.masks import AttentionMask
from formers.nn.position_scheme import Positions


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with a residual connection.

    Args:
        self_attn: the self-attention sublayer.
        feed_forward: the position-wise feed-forward sublayer.
        attn_residual: residual wrapper around self-attention.
        ff_residual: residual wrapper around the feed-forward network.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: nn.Module,
        attn_residual: nn.Module,
        ff_residual: nn.Module,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.attn_residual = attn_residual
        self.ff_residual = ff_residual

    def forward(
        self,
        x: Tensor,
        mask: AttentionMask | Tensor | None = None,
        *,
        causal: bool = False,
        positions: Positions | None = None,
    ) -> Tensor:
        """Args:
            x: ``(b, s, d)``.
            mask: which keys may be attended to (e.g. the key padding), an
                :class:`~formers.nn.masks.AttentionMask` or a boolean tensor broadcastable
                to ``(b, h, s, s)``.
            causal: mask future positions (for decoder-only stacks built from these layers).
            positions: for the attention's position scheme (default: ``0 .. s - 1``).

        Returns:
            ``(b, s, d)``.
        """
        h = self.attn_residual.sublayer_input(x)
        y = self.self_attn(h, mask=mask, causal=causal, positions=positions)
        x = self.attn_residual.merge(x, y)
        return self.ff_residual.merge(x, self.feed_forward(self.ff_residual.sublayer_input(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention + encoder-decoder attention + feed-forward.

    Args:
        self_attn: the masked self-attention sublayer.
        cross_attn: the encoder-decoder attention sublayer, or ``None`` for a decoder without
            an encoder (its residual must then be ``None`` too).
        feed_forward: the position-wise feed-forward sublayer.
        self_residual, cross_residual, ff_residual: residual wrappers of the three sublayers.
    """

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        cross_attn: MultiHeadAttention | None,
        feed_forward: nn.Module,
        self_residual: nn.Module,
        cross_residual: nn.Module | None,
        ff_residual: nn.Module,
    ) -> None:
        super().__init__()
        if (cross_attn is None) != (cross_residual is None):
            raise ValueError("cross_attn and cross_residual must be given together")
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.feed_forward = feed_forward
        self.self_residual = self_residual
        self.cross_residual = cross_residual
        self.ff_residual = ff_residual

    def new_state(self) -> LayerCache:
        """This layer's empty decoding state, from its attention mechanisms."""
        cross = None if self.cross_attn is None else self.cross_attn.new_state()
        return LayerCache(self.self_attn.new_state(), cross)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_mask: AttentionMask | Tensor | None = None,
        self_mask: AttentionMask | Tensor | None = None,
        cache: LayerCache | None = None,
        positions: Positions | None = None,
    ) -> Tensor:
        """Args:
            x: ``(b, t, d)`` target states (only the new positions when ``cache`` is given).
            memory: ``(b, s, d)`` encoder output.
            memory_mask: which source positions may be attended to (the source padding).
            self_mask: which target keys may be attended to (the causal mask is always on).
            cache: this layer's states for incremental decoding.
            positions: for the self-attention's position scheme (default: after the cache's).

        Returns:
            ``(b, t, d)``.
        """
        h = self.self_residual.sublayer_input(x)
        y = self.self_attn(
            h,
            mask=self_mask,
            causal=True,
            state=None if cache is None else cache.self_attn,
            positions=positions,
        )
        x = self.self_residual.merge(x, y)
        if self.cross_attn is not None:
            if memory is None and (cache is None or not cache.cross_attn.complete):
                raise ValueError("this decoder layer has cross-attention: pass the encoder memory")
            h = self.cross_residual.sublayer_input(x)
            y = self.cross_attn(
                h, memory, mask=memory_mask, state=None if cache is None else cache.cross_attn
            )
            x = self.cross_residual.merge(x, y)
        return self.ff_residual.merge(x, self.feed_forward(self.ff_residual.sublayer_input(x)))
