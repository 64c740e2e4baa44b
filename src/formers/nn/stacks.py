"""Stacks of layers: the paper's encoder and decoder (arXiv 1706.03762, section 3.1).

The loop over the layers belongs to a :class:`~formers.nn.layer_stack.LayerStack` (each layer
once, or one shared layer applied several times). The mask is made into one
:class:`~formers.nn.masks.AttentionMask` per call, shared by the layers (its dense form is built
once). A pre-norm stack ends with a final norm (its residual
stream is never normalized otherwise); the paper's post-norm stack has none
(``final_norm=None``). Note that ``torch.nn.Transformer`` adds a final LayerNorm to post-norm
stacks too, which the paper does not have.

Shapes: b batch, t target length, s source length, d model width, h heads.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from formers.nn.kv_cache import DecoderCache
from formers.nn.layer_stack import LayerStack
from formers.nn.layers import DecoderLayer, EncoderLayer
from formers.nn.masks import AttentionMask
from formers.nn.position_scheme import Positions


def _stack(layers: LayerStack | Sequence[nn.Module]) -> LayerStack:
    return layers if isinstance(layers, LayerStack) else LayerStack(layers)


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer` with an optional final norm.

    Args:
        layers: the layers (each applied once, in order), or a :class:`~formers.nn.
            layer_stack.LayerStack` that decides how they repeat (e.g. shared weights).
        final_norm: applied to the last layer's output (pre-norm stacks), or ``None``.
    """

    def __init__(
        self, layers: LayerStack | Sequence[EncoderLayer], final_norm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.layers = _stack(layers)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: AttentionMask | Tensor | None = None,
        *,
        causal: bool = False,
        positions: Positions | None = None,
    ) -> Tensor:
        """Args:
            x: ``(b, s, d)`` embedded source.
            mask: which keys may be attended to, e.g. an :class:`~formers.nn.masks.
                AttentionMask` of the key padding (built once, shared by the layers).
            causal: mask future positions in every layer.
            positions: for the attention's position scheme (default: ``0 .. s - 1``).

        Returns:
            ``(b, s, d)`` hidden states.
        """
        mask = AttentionMask.of(mask, causal)
        x = self.layers.run(x, lambda i, layer, h: layer(h, mask, positions=positions))
        return self.final_norm(x)


class Decoder(nn.Module):
    """A stack of :class:`DecoderLayer` with an optional final norm (arguments as
    :class:`Encoder`'s)."""

    def __init__(
        self, layers: LayerStack | Sequence[DecoderLayer], final_norm: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.layers = _stack(layers)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    @property
    def has_cross_attention(self) -> bool:
        return any(layer.cross_attn is not None for layer in self.layers)

    def new_cache(self) -> DecoderCache:
        """An empty cache for incremental decoding with this stack: each layer's state, made
        by its attention mechanisms."""
        return DecoderCache([layer.new_state() for layer in self.layers.steps()])  # one a step

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_mask: AttentionMask | Tensor | None = None,
        self_mask: AttentionMask | Tensor | None = None,
        cache: DecoderCache | None = None,
        positions: Positions | None = None,
    ) -> Tensor:
        """Args:
            x: ``(b, t, d)`` embedded target (only new positions when ``cache`` is given).
            memory: ``(b, s, d)`` encoder output (may be omitted once the cache is filled).
            memory_mask: which source positions may be attended to, e.g. the source padding.
            self_mask: which target keys may be attended to (causality is always applied).
            cache: the stack's caches, updated in place.
            positions: for the self-attention's position scheme (default: after the cache's).

        Returns:
            ``(b, t, d)`` hidden states.
        """
        memory_mask, self_mask = AttentionMask.of(memory_mask), AttentionMask.of(self_mask, True)

        def step(i: int, layer: nn.Module, h: Tensor) -> Tensor:
            return layer(
                h, memory, memory_mask=memory_mask, self_mask=self_mask,
                cache=None if cache is None else cache.layers[i], positions=positions,
            )  # fmt: skip

        return self.final_norm(self.layers.run(x, step))
