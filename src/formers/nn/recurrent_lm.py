"""A language model with segment recurrence: Transformer-XL (Dai et al. 2019, arXiv 1901.02860).

Each layer's self-attention reads its keys and values from the layer's input over a
:class:`~formers.nn.segment_memory.SegmentMemory` of the previous segment (detached) followed by
the segment, and its queries from the segment alone; positions enter as XL's relative terms
(:class:`~formers.nn.relative.XLRelativePosition`), so that the same weights serve any memory
length. :class:`RecurrentLM` is a :class:`~formers.nn.decoder_only.DecoderOnlyLM` (it trains with
the ``lm`` task, generates, serves and draws its attention as that kind does) whose ``forward``
and ``decode`` also take a memory, which they update in place.

- ``model(tokens)``: the tokens as one segment without memory (what the attention picture shows).
- ``model(segment, memory=memory)``: one training or evaluation segment; ``memory`` then holds
  the last ``memory.max_length`` inputs of each layer.
- ``model.decode(tokens, memory)``: any number of tokens, read ``segment_length`` at a time with
  the memory (a prompt, then one token per generation step).

Deviations from the official code: no adaptive softmax or adaptive input (a full softmax); no
dropout on the relative encodings; ``same_length`` and ``clamp_len`` are not offered. The memory
keeps each layer's *input* (as the official code does), so that its keys and values are
recomputed with the current weights; generation therefore projects ``M`` memory states per layer
and step rather than caching their keys (the official and Hugging Face generators did the same).

Shapes: b batch, t segment length, m memory length, d model width, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.nn.decoder_only import DecoderOnlyLM, check_inputs
from formers.nn.embeddings import Embeddings
from formers.nn.kv_cache import row_positions
from formers.nn.layers import EncoderLayer
from formers.nn.masks import AttentionMask
from formers.nn.position_scheme import Positions
from formers.nn.segment_memory import SegmentMemory
from formers.nn.stacks import Decoder

# relative positions have no table: the most positions generation and serving accept at once
MAX_POSITIONS = 1 << 20


class MemoryLayer(EncoderLayer):
    """Self-attention over memory + segment, then a feed-forward network (XL's decoder layer).

    The parts of an :class:`~formers.nn.layers.EncoderLayer` (``self_attn`` causal, with XL's
    relative position scheme; post-norm, as in the paper's code, or pre-norm residuals); the
    attention's norm also normalizes the memory it reads.
    """

    cross_attn = None  # a decoder layer without encoder-decoder attention

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: AttentionMask | None = None,
        positions: Positions | None = None,
    ) -> Tensor:
        """Args:
            x: ``(b, t, d)`` the segment's inputs.
            context: ``(b, m + t, d)`` this layer's inputs before the segment (the memory,
                detached) followed by ``x``, or ``None`` (no memory).
            mask: over the ``m + t`` keys (causality is always applied, bottom-right aligned:
                query ``i`` sees the memory and the segment up to ``i``).
            positions: of the queries (the last ``t``) and of the ``m + t`` keys.

        Returns:
            ``(b, t, d)``.
        """
        keys = None
        if context is None:
            h = self.attn_residual.sublayer_input(x)
        else:  # the norm reads the memory as the segment; the queries are the last t rows
            keys = self.attn_residual.sublayer_input(context)  # (b, m + t, d)
            h = keys[:, keys.size(1) - x.size(1) :]
        y = self.self_attn(h, keys, mask=mask, causal=True, positions=positions)
        x = self.attn_residual.merge(x, y)
        return self.ff_residual.merge(x, self.feed_forward(self.ff_residual.sublayer_input(x)))


class RecurrentLM(DecoderOnlyLM):
    """A decoder-only language model with segment memory (see the module docstring).

    Args:
        embed: token embeddings (no absolute positions).
        decoder: a :class:`~formers.nn.stacks.Decoder` of :class:`MemoryLayer`.
        generator: the projection ``d -> V``.
        segment_length: the segment it was trained on (``decode`` reads this many at a time).
        memory_length: the memory it was trained with (the default of :meth:`new_memory`).
        output_dropout: dropout on the last hidden states (the official code's).
        pad_id, bos_id, eos_id: special token ids, or ``None``.
    """

    def __init__(
        self,
        embed: Embeddings,
        decoder: Decoder,
        generator: nn.Linear,
        *,
        segment_length: int,
        memory_length: int,
        output_dropout: float = 0.0,
        pad_id: int | None,
        bos_id: int | None,
        eos_id: int | None,
    ) -> None:
        super().__init__(
            embed, decoder, generator, context_length=MAX_POSITIONS, pad_id=pad_id,
            bos_id=bos_id, eos_id=eos_id,
        )  # fmt: skip
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        if memory_length < 0:
            raise ValueError(f"memory_length must be >= 0, got {memory_length}")
        self.segment_length = segment_length
        self.memory_length = memory_length
        self.output_dropout = nn.Dropout(output_dropout)

    def new_memory(self, length: int | None = None) -> SegmentMemory:
        """An empty memory of ``length`` positions per layer (default: the trained length)."""
        length = self.memory_length if length is None else length
        return SegmentMemory(length, self.decoder.layers.depth)

    def new_cache(self, length: int | None = None) -> SegmentMemory:
        """The decoding state: an empty memory (see :meth:`new_memory`), which must remember
        something, or every generated token would see only itself.

        Raises:
            ValueError: a memory length of 0.
        """
        memory = self.new_memory(length)
        if memory.max_length == 0:
            raise ValueError(
                "this model was trained without memory (memory_length 0): give a memory length "
                "to decode with (e.g. formers generate --memory 64)"
            )
        return memory

    def forward(
        self, tokens: Tensor, mask: Tensor | None = None, memory: SegmentMemory | None = None
    ) -> Tensor:
        """Next-token logits of one segment.

        Args:
            tokens: ``(b, t)`` token ids.
            mask: optional ``(b, t)``, True at real tokens (padding is never attended to).
            memory: the state of the streams this segment continues (updated in place), or
                ``None``: the tokens alone.

        Returns:
            ``(b, t, V)`` logits.
        """
        check_inputs(tokens, mask)
        return self._segment(tokens, mask, memory)

    def _logits(
        self, tokens: Tensor, *, mask: Tensor | None = None, cache: SegmentMemory | None = None
    ) -> Tensor:
        if cache is None:
            return self.forward(tokens, mask)
        step = self.segment_length
        parts = [
            self.forward(tokens[:, i : i + step], None if mask is None else mask[:, i : i + step],
                         cache)
            for i in range(0, tokens.size(1), step)
        ]  # fmt: skip
        return torch.cat(parts, dim=1)

    def _segment(self, tokens: Tensor, mask: Tensor | None, memory: SegmentMemory | None) -> Tensor:
        b, t = tokens.shape
        m = 0
        if memory is not None:
            memory.check_batch(b)
            m = memory.length
        keys = mask if memory is None else memory.key_mask(mask, t, tokens.device)  # (b, m + t)
        if keys is None:
            positions = Positions.contiguous(m, t, tokens.device)
        else:
            key_positions = row_positions(keys)  # each row's real tokens numbered in order
            positions = Positions(key_positions[:, m:], key_positions)
        attention_mask = AttentionMask(keys=keys, causal=True)
        inputs: list[Tensor] = []

        def step(i: int, layer: nn.Module, h: Tensor) -> Tensor:
            remembered = None if memory is None else memory.layer(i)
            context = None if remembered is None else torch.cat([remembered, h], dim=1)
            inputs.append(h if context is None else context)  # (b, m + t, d)
            return layer(h, context, mask=attention_mask, positions=positions)

        hidden = self.decoder.final_norm(self.decoder.layers.run(self.embed(tokens), step))
        if memory is not None:
            memory.update(inputs, keys)
        return self.generator(self.output_dropout(hidden))
