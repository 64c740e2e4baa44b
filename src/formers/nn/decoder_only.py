"""A decoder-only language model: GPT (Radford et al. 2018), GPT-2 (Radford et al. 2019) and
LLaMA (Touvron et al. 2023, arXiv 2302.13971).

The Transformer's decoder (Vaswani et al. 2017, arXiv 1706.03762) without an encoder: every
layer is masked self-attention and a feed-forward network, and the model predicts the next token
of its own input. ``DecoderOnlyLM(embed, decoder, generator)`` mirrors
:class:`formers.nn.encoder_decoder.EncoderDecoder`: the parts are built elsewhere (GPT-2 vs
LLaMA is only a matter of which norm, feed-forward and position modules a builder injects) and
this class only wires them together.

Deviations from GPT-2 and LLaMA: none in the computation. The attention kernel is chosen by name
(``"sdpa"`` or ``"eager"``); :meth:`DecoderOnlyLM.forward_with_attention` records the
probabilities (:class:`~formers.nn.recorder.AttentionRecorder`).

Shapes: b batch, t length, d model width, h heads, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.nn.embeddings import Embeddings
from formers.nn.kv_cache import DecoderCache, padded_self_attention
from formers.nn.masks import AttentionMask
from formers.nn.position_scheme import Positions
from formers.nn.recorder import AttentionRecorder
from formers.nn.stacks import Decoder


def check_inputs(tokens: Tensor, mask: Tensor | None) -> None:
    """Raise :class:`ValueError` unless ``tokens`` are ``(b, t)`` ids and ``mask`` (if any) has
    their shape."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (batch, length) ids, got shape {tuple(tokens.shape)}")
    if mask is not None and mask.shape != tokens.shape:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}, expected that of the tokens {tuple(tokens.shape)}"
        )


class DecoderOnlyLM(nn.Module):
    """A causal language model: embeddings, a decoder stack without cross-attention, and a
    pre-softmax projection.

    Args:
        embed: token (and absolute position) embeddings.
        decoder: a :class:`Decoder` whose layers have no encoder-decoder attention.
        generator: the projection ``d -> V`` (may share its weight with the token embedding).
        context_length: the longest sequence the model reads at once (GPT-2: 1024).
        pad_id, bos_id, eos_id: special token ids, or ``None`` where the vocabulary has none
            (GPT-2 has no padding token; its ``<|endoftext|>`` is both BOS and EOS).
    """

    def __init__(
        self,
        embed: Embeddings,
        decoder: Decoder,
        generator: nn.Linear,
        *,
        context_length: int,
        pad_id: int | None,
        bos_id: int | None,
        eos_id: int | None,
    ) -> None:
        super().__init__()
        if decoder.has_cross_attention:
            raise ValueError(
                "a decoder-only model needs decoder layers without cross-attention "
                "(build DecoderLayer with cross_attn=None and cross_residual=None)"
            )
        if context_length < 1:
            raise ValueError(f"context_length must be >= 1, got {context_length}")
        self.embed = embed
        self.decoder = decoder
        self.generator = generator
        self._context_length = context_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary (the generator's output)."""
        return self.generator.out_features

    @property
    def context_length(self) -> int:
        """The most positions the model attends over (the learned-position limit for GPT-2)."""
        return self._context_length

    def _check_length(self, end: int) -> None:
        if end > self._context_length:
            raise ValueError(
                f"the input reaches position {end} but the model's context_length is "
                f"{self._context_length}; shorten it (keep the last {self._context_length} "
                "tokens) or use a model with a longer context"
            )

    def _logits(
        self, tokens: Tensor, *, mask: Tensor | None = None, cache: DecoderCache | None = None
    ) -> Tensor:
        return self.generator(self._hidden(tokens, mask=mask, cache=cache))

    def _hidden(
        self, tokens: Tensor, *, mask: Tensor | None = None, cache: DecoderCache | None = None
    ) -> Tensor:
        check_inputs(tokens, mask)
        offset = 0 if cache is None else cache.length
        self._check_length(offset + tokens.size(1))
        # the cache keeps the keys' padding and positions
        keys, queries, key_positions = padded_self_attention(
            mask, cache, tokens.size(1), tokens.device
        )
        positions = None if queries is None else Positions(queries, key_positions)
        x = self.embed(tokens, offset, queries)
        return self.decoder(
            x, self_mask=AttentionMask(keys=keys, causal=True), cache=cache, positions=positions
        )  # (b, t, d): the last layer's states, before the output projection

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Next-token logits at every position (position ``i`` sees tokens ``0..i``).

        Args:
            tokens: ``(b, t)`` token ids, ``t <= context_length``.
            mask: optional ``(b, t)`` boolean, True at real tokens, False at padding (left or
                right). Padding is never attended to, and each row's real tokens are numbered
                from 0 (:func:`~formers.nn.kv_cache.row_positions`), so that a row's logits
                equal those of its tokens alone. Without a mask, positions are the columns.

        Returns:
            ``(b, t, V)`` logits.
        """
        return self._logits(tokens, mask=mask)

    def forward_with_attention(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Like :meth:`forward`, also returning every layer's attention probabilities, as an
        :class:`~formers.nn.recorder.AttentionRecorder` records them (the softmax computed
        with the eager kernel); :meth:`forward` is unaffected.

        Returns:
            ``(logits, weights)``: ``(b, t, V)`` and one ``(b, h, t, t)`` tensor per layer.
        """
        with AttentionRecorder(self) as recorder:
            logits = self._logits(tokens)
        return logits, recorder.per_step(layer.self_attn for layer in self.decoder.layers.steps())

    def new_cache(self) -> DecoderCache:
        """An empty KV cache for :meth:`decode`."""
        return self.decoder.new_cache()

    def decode(self, tokens: Tensor, cache: DecoderCache, mask: Tensor | None = None) -> Tensor:
        """Incremental decoding: feed new tokens, attending to those already in ``cache``.

        Args:
            tokens: ``(b, t_new)`` new token ids; their positions continue from the cache's
                (a whole prompt may be fed at once, then one token per step).
            cache: from :meth:`new_cache`, updated in place.
            mask: ``(b, t_new)``, True at real tokens: a batch of prompts padded on the left or
                the right is fed at once, and each row then decodes as it would alone (the
                cache keeps the padding and each row's positions).

        Returns:
            ``(b, t_new, V)`` logits of the new positions.
        """
        return self._logits(tokens, cache=cache, mask=mask)

    def decode_hidden(
        self, tokens: Tensor, cache: DecoderCache, mask: Tensor | None = None
    ) -> Tensor:
        """:meth:`decode` without the output projection: the ``(b, t_new, d)`` states that
        ``generator`` maps to the logits (for heads of one's own on top of the model)."""
        return self._hidden(tokens, cache=cache, mask=mask)

    @torch.no_grad()
    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied output projection is counted once)."""
        return sum(p.numel() for p in self.parameters())
