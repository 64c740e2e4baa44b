"""The encoder-decoder model of Figure 1 (Vaswani et al. 2017, arXiv 1706.03762).

``EncoderDecoder(encoder, decoder, src_embed, tgt_embed, generator)`` mirrors the figure (and the
Annotated Transformer): the parts are built elsewhere and injected. It offers

- :meth:`~EncoderDecoder.encode` and :meth:`~EncoderDecoder.decode` (with an optional KV cache),
- :meth:`~EncoderDecoder.forward` for teacher-forced training,
- :meth:`~EncoderDecoder.init_decoding` / :meth:`~EncoderDecoder.decode_step`, the step
  interface that :mod:`formers.decoding` searches over.

Token sequences are right-padded with ``pad_id``; the source padding mask is derived from it.

Shapes: b batch, s source length, t target length, d model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from formers.nn.embeddings import Embeddings
from formers.nn.kv_cache import DecoderCache, padded_self_attention
from formers.nn.masks import AttentionMask, padding_mask
from formers.nn.position_scheme import Positions
from formers.nn.recorder import AttentionRecorder
from formers.nn.stacks import Decoder, Encoder


@dataclass
class Seq2SeqState:
    """What incremental decoding carries between steps for a batch of sources.

    Attributes:
        memory: ``(b, s, d)`` encoder output; ``None`` after the first step, when its keys and
            values live in the cross-attention caches.
        memory_mask: ``(b, 1, 1, s)`` source-padding mask.
        src_lengths: ``(b,)`` number of real source tokens.
        cache: the decoder's KV caches.
        row_sources: ``(b,)`` which source (row of the encoded batch) each row decodes; by
            default row ``i`` decodes source ``i``.
    """

    memory: Tensor | None
    memory_mask: Tensor
    src_lengths: Tensor
    cache: DecoderCache
    row_sources: Tensor | None = None

    def __post_init__(self) -> None:
        if self.row_sources is None:
            self.row_sources = torch.arange(self.batch_size, device=self.memory_mask.device)

    @property
    def batch_size(self) -> int:
        return self.memory_mask.size(0)

    def reorder(self, indices: Tensor) -> None:
        """Keep rows ``indices`` (beam reordering, or repeating each source per beam).

        What is derived from the source alone (memory, its mask and length, the cross-attention
        caches) is the same in every row of a source. So when each row keeps its source, as when
        beam search reorders the beams of each source among themselves, only the self-attention
        caches are reordered.
        """
        sources = self.row_sources.index_select(0, indices)
        keeps_sources = torch.equal(sources, self.row_sources)
        self.row_sources = sources
        if keeps_sources:
            self.cache.reorder(indices, cross=False)
            return
        if self.memory is not None:
            self.memory = self.memory.index_select(0, indices)
        self.memory_mask = self.memory_mask.index_select(0, indices)
        self.src_lengths = self.src_lengths.index_select(0, indices)
        self.cache.reorder(indices)


@dataclass
class AttentionMaps:
    """Attention probabilities of every layer, each ``(b, h, queries, keys)``.

    Attributes:
        encoder: encoder self-attention, ``(b, h, s, s)`` per layer.
        decoder: decoder masked self-attention, ``(b, h, t, t)`` per layer.
        cross: encoder-decoder attention, ``(b, h, t, s)`` per layer.
    """

    encoder: list[Tensor]
    decoder: list[Tensor]
    cross: list[Tensor]


class EncoderDecoder(nn.Module):
    """A sequence-to-sequence Transformer.

    Args:
        encoder: the encoder stack.
        decoder: the decoder stack (with cross-attention).
        src_embed: source embeddings.
        tgt_embed: target embeddings (may share its token embedding with ``src_embed``).
        generator: the pre-softmax projection ``d -> V`` (may share its weight with the
            target token embedding).
        pad_id, bos_id, eos_id: special token ids.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        src_embed: Embeddings,
        tgt_embed: Embeddings,
        generator: nn.Linear,
        *,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.generator = generator
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    @property
    def vocab_size(self) -> int:
        """Size of the target vocabulary (the generator's output)."""
        return self.generator.out_features

    def source_mask(self, src: Tensor) -> Tensor:
        """``(b, s)`` source ids -> ``(b, 1, 1, s)`` boolean mask, True at real tokens."""
        return padding_mask(src, self.pad_id)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Encode ``(b, s)`` source ids into ``(b, s, d)`` memory."""
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        return self.encoder(self.src_embed(src), src_mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        *,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """Target ids ``(b, t)`` -> logits ``(b, t, V)``.

        With a ``cache``, ``tgt`` holds only the new positions (their positions continue from
        ``cache.length``) and the cache is updated in place; ``memory`` may then be ``None``
        after the first step.
        """
        return self.generator(self.decode_hidden(tgt, memory, memory_mask, cache=cache))

    def decode_hidden(
        self,
        tgt: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        *,
        cache: DecoderCache | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """:meth:`decode` without the output projection: the ``(b, t, d)`` states that
        ``generator`` maps to the logits (for heads of one's own on top of the model).

        ``mask``: ``(b, t)``, True at real target tokens. Padding is never attended to and
        each row's real tokens get their own positions; with a ``cache``, which keeps both,
        rows may then hold different numbers of real tokens (blockwise decoding marks the
        rejected guesses of each row as padding, :mod:`formers.decoding.blockwise_seq2seq`).
        """
        offset = 0 if cache is None else cache.length
        keys, queries, key_positions = padded_self_attention(mask, cache, tgt.size(1), tgt.device)
        positions = None if queries is None else Positions(queries, key_positions)
        return self.decoder(
            self.tgt_embed(tgt, offset, queries), memory, memory_mask=memory_mask,
            self_mask=AttentionMask(keys=keys, causal=True), cache=cache, positions=positions,
        )  # fmt: skip

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher forcing: ``(b, s)`` source and ``(b, t)`` shifted target -> ``(b, t, V)``."""
        src_mask = self.source_mask(src)
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def forward_with_attention(self, src: Tensor, tgt: Tensor) -> tuple[Tensor, AttentionMaps]:
        """Like :meth:`forward`, also returning every layer's attention probabilities, as an
        :class:`~formers.nn.recorder.AttentionRecorder` records them (the softmax computed
        with the eager kernel); :meth:`forward` is unaffected."""
        with AttentionRecorder(self) as recorder:
            logits = self(src, tgt)
        maps = AttentionMaps(
            recorder.per_step(layer.self_attn for layer in self.encoder.layers.steps()),
            recorder.per_step(layer.self_attn for layer in self.decoder.layers.steps()),
            recorder.per_step(layer.cross_attn for layer in self.decoder.layers.steps()),
        )
        return logits, maps

    # --- the step interface used by formers.decoding ---------------------------------------

    def init_decoding(self, src: Tensor) -> Seq2SeqState:
        """Encode a batch of sources and return an empty decoding state."""
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        lengths = (src != self.pad_id).sum(dim=1)
        return Seq2SeqState(memory, src_mask, lengths, self.decoder.new_cache())

    def decode_step(self, tokens: Tensor, state: Seq2SeqState) -> Tensor:
        """Feed ``(b, t_new)`` new target tokens; return the ``(b, V)`` next-token logits."""
        logits = self.decode(tokens, state.memory, state.memory_mask, cache=state.cache)
        state.memory = None  # projected into the cross-attention caches; no need to reorder it
        return logits[:, -1]

    @torch.no_grad()
    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())
