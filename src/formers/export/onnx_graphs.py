"""The two graphs an encoder-decoder is exported as, written as modules around our own model so
that the exported computation is the one formers runs (no second implementation to drift):

- :class:`EncoderGraph`: source ids ``(b, s)`` -> the source mask ``(b, s)`` and, for every
  decoder layer, the cross-attention keys and values ``(b, g, s, dh)`` (projected once, as our
  :class:`~formers.nn.kv_cache.StaticKVCache` holds them);
- :class:`DecoderStepGraph`: new target tokens ``(b, t)``, the source mask, the cross keys and
  values and each layer's past self-attention keys and values ``(b, g, p, dh)`` -> next-token
  logits ``(b, V)`` and the grown keys and values ``(b, g, p + t, dh)``. Positions continue from
  ``p`` (the past's length), so one graph serves every step; the first has ``p = 0``.

A decoder-only language model is one graph, :class:`LanguageModelStepGraph`: new tokens and each
layer's past keys and values -> the next-token logits and the grown keys and values (the prompt
is fed with an empty past, then one token a step).

Shapes: b batch, s source length, t new tokens, p past length, g key/value heads, dh head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.nn.kv_cache import DecoderCache, KVCache, LayerCache, StaticKVCache


class PastKVCache(KVCache):
    """A self-attention cache that holds the graph's past keys and values as inputs and grows by
    concatenation (no in-place writes, which exported graphs cannot carry between calls)."""

    complete = False

    def __init__(self, k: Tensor, v: Tensor) -> None:  # noqa: D107 (no KVCache storage)
        self.k, self.v = k, v

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.k.size(2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k = torch.cat([self.k, k], dim=2)
        self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v


def _filled(k: Tensor, v: Tensor) -> StaticKVCache:
    cache = StaticKVCache()
    cache.update(k, v)
    return cache


def _layer_caches(past: tuple[Tensor, ...], cross: tuple[Tensor, ...] = ()) -> list[LayerCache]:
    """Each layer's caches from the flat ``self_k, self_v`` (and ``cross_k, cross_v``) inputs."""
    return [
        LayerCache(PastKVCache(past[i], past[i + 1]),
                   _filled(cross[i], cross[i + 1]) if cross else None)
        for i in range(0, len(past), 2)
    ]  # fmt: skip


def _grown(layers: list[LayerCache]) -> list[Tensor]:
    """The flat ``self_k, self_v`` outputs: each layer's past with the new keys and values."""
    return [t for layer in layers for t in (layer.self_attn.k, layer.self_attn.v)]


class EncoderGraph(nn.Module):
    """Source ids -> ``(source mask, k_0, v_0, k_1, v_1, ...)`` (cross-attention, per layer)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, ...]:
        mask = self.model.source_mask(src)  # (b, 1, 1, s)
        memory = self.model.encode(src, mask)  # (b, s, d)
        out: list[Tensor] = [mask[:, 0, 0]]  # (b, s)
        for layer in self.model.decoder.layers.steps():
            attn = layer.cross_attn
            out.append(attn._split(attn.k_proj(memory), attn.num_kv_heads))  # (b, g, s, dh)
            out.append(attn._split(attn.v_proj(memory), attn.num_kv_heads))
        return tuple(out)


class DecoderStepGraph(nn.Module):
    """``(tokens, source mask, cross k/v..., past self k/v...)`` -> ``(logits, self k/v...)``.

    The flat arguments are, per layer, ``cross_k, cross_v`` then ``self_k, self_v``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.num_layers = len(list(model.decoder.layers.steps()))

    def forward(self, tokens: Tensor, src_mask: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        n = self.num_layers
        layers = _layer_caches(states[2 * n :], states[: 2 * n])
        cache = DecoderCache(layers)
        logits = self.model.decode(tokens, None, src_mask[:, None, None, :], cache=cache)
        return (logits[:, -1], *_grown(layers))


class LanguageModelStepGraph(nn.Module):
    """``(tokens, past self k/v...)`` -> ``(logits, self k/v...)`` for a decoder-only model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        layers = _layer_caches(past)
        logits = self.model.decode(tokens, DecoderCache(layers))
        return (logits[:, -1], *_grown(layers))
