"""Capture the attention probabilities of any formers model on one text.

The three families expose ``forward_with_attention`` (the eager kernel, used only when asked);
this module runs it on one example and keeps the weights as numpy arrays, labelled with the
token strings of both axes, ready to be drawn (:mod:`formers.viz.heatmap`) or embedded in a page
(:mod:`formers.viz.page`).

Encoder-decoders are run with forced decoding: the decoder reads ``BOS`` followed by the target
tokens (without the final EOS), so that query ``i`` is the position that predicts target token
``i`` (or EOS, for the last one). The target is the given ``tgt`` text or, without one, the
beam-search translation of ``src`` (:func:`formers.inference.translate.translate`).

Shapes: L layers, H heads, S source (or only) tokens, T decoder input tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.encoder_decoder import EncoderDecoder
from formers.nn.encoder_only import EncoderOnlyModel
from formers.nn.modes import evaluating

# what each view's axes hold: (queries, keys), as attribute names of AttentionRecord
VIEW_AXES = {
    "encoder": ("source", "source"),
    "decoder": ("target", "target"),
    "cross": ("target", "source"),
    "self": ("source", "source"),
}
# views whose queries may only look at earlier keys
CAUSAL_VIEWS = {"decoder"}


@dataclass
class AttentionRecord:
    """The attention of one model on one example.

    Attributes:
        family: ``"encoder-decoder"``, ``"decoder-only"`` or ``"encoder-only"``.
        source: token strings of the source (encoder-decoder) or of the only sequence.
        target: token strings of the decoder input (encoder-decoder only; empty otherwise).
        views: view name -> ``(L, H, queries, keys)`` float32 probabilities: ``encoder``,
            ``decoder`` and ``cross`` for an encoder-decoder, ``self`` for the other families.
        causal: whether ``self`` (decoder-only) is masked causally; ``decoder`` always is.
        text: the input texts, ``{"src": ..., "tgt": ...}`` (``tgt`` the forced or found output).
    """

    family: str
    source: list[str]
    target: list[str]
    views: dict[str, np.ndarray]
    causal: bool = False
    text: dict[str, str] = field(default_factory=dict)

    def axes(self, view: str) -> tuple[list[str], list[str]]:
        """``(query tokens, key tokens)`` of ``view``."""
        self._check_view(view)
        queries, keys = VIEW_AXES[view]
        return getattr(self, queries), getattr(self, keys)

    def is_causal(self, view: str) -> bool:
        """Whether ``view`` is causally masked (its matrices are lower-triangular)."""
        return view in CAUSAL_VIEWS or (view == "self" and self.causal)

    def shape(self, view: str) -> tuple[int, int]:
        """``(layers, heads)`` of ``view``."""
        self._check_view(view)
        layers, heads = self.views[view].shape[:2]
        return int(layers), int(heads)

    def _check_view(self, view: str) -> None:
        if view not in self.views:
            raise ValueError(
                f"no {view!r} attention in this {self.family} record; "
                f"choose one of {', '.join(self.views)}"
            )

    def _repr_html_(self) -> str:
        """Jupyter shows a record as the interactive page (:func:`formers.viz.notebook_html`)."""
        from formers.viz.page import notebook_html  # page.py imports this module

        return notebook_html(self)

    def to_dict(self, decimals: int | None = 4) -> dict[str, Any]:
        """A JSON-able dict; weights as nested lists, rounded to ``decimals`` (None: exact)."""

        def values(array: np.ndarray) -> list:
            return (array if decimals is None else np.round(array, decimals)).tolist()

        return {
            "family": self.family,
            "source": list(self.source),
            "target": list(self.target),
            "causal": self.causal,
            "text": dict(self.text),
            "views": {name: values(array) for name, array in self.views.items()},
            "axes": {name: list(VIEW_AXES[name]) for name in self.views},
        }


def capture_attention(
    model: nn.Module,
    tokenizer: Any,
    src: str,
    tgt: str | None = None,
    *,
    beam: int = 4,
    lenpen: float = 0.6,
    lenpen_form: str = "gnmt",
) -> AttentionRecord:
    """Run ``model`` on one text and record every layer's and head's attention.

    Args:
        model: an :class:`~formers.nn.EncoderDecoder`, a :class:`~formers.nn.DecoderOnlyLM`,
            an :class:`~formers.nn.EncoderOnlyModel` or a BERT wrapper holding one as ``body``.
        tokenizer: the model's tokenizer (``encode``, ``decode`` and ``pieces``).
        src: the source text (the only text, for decoder-only and encoder-only models).
        tgt: encoder-decoder only: the target to force; ``None`` translates ``src`` first.
        beam: beam size of that translation (1: greedy).
        lenpen, lenpen_form: its length penalty (see :func:`formers.inference.translate`).

    Returns:
        An :class:`AttentionRecord` of float32 ``(L, H, queries, keys)`` arrays.

    Raises:
        ValueError: an empty text, ``tgt`` for a model without a decoder, a text longer than
            the model can read, or a model of another kind.
    """
    ids = [int(i) for i in tokenizer.encode(src)]
    if not ids:
        raise ValueError("the source text has no tokens; give a non-empty text")
    if isinstance(model, EncoderDecoder):
        decode = dict(beam=beam, lenpen=lenpen, lenpen_form=lenpen_form)
        return _encoder_decoder(model, tokenizer, src, ids, tgt, decode)
    if tgt is not None:
        raise ValueError(
            f"--tgt/tgt is for encoder-decoder models; this is a {type(model).__name__}"
        )
    if isinstance(model, DecoderOnlyLM):
        if len(ids) > model.context_length:
            raise ValueError(
                f"the text has {len(ids)} tokens but the model reads at most "
                f"{model.context_length}; shorten it"
            )
        with evaluating(model):
            _, weights = model.forward_with_attention(_batch(ids, model))
        return AttentionRecord(
            "decoder-only", _pieces(tokenizer, ids), [], {"self": _stack(weights)},
            causal=True, text={"src": src},
        )  # fmt: skip
    body = getattr(model, "body", model)
    if isinstance(body, EncoderOnlyModel):
        with evaluating(body):
            _, weights = body.forward_with_attention(_batch(ids, body))
        return AttentionRecord(
            "encoder-only", _pieces(tokenizer, ids), [], {"self": _stack(weights)},
            text={"src": src},
        )  # fmt: skip
    raise ValueError(
        f"cannot capture the attention of a {type(model).__name__}: expected an EncoderDecoder, "
        "a DecoderOnlyLM or an EncoderOnlyModel (or a wrapper with .body)"
    )


def _encoder_decoder(
    model: EncoderDecoder,
    tokenizer: Any,
    src: str,
    ids: list[int],
    tgt: str | None,
    decode: dict[str, Any],
) -> AttentionRecord:
    from formers.inference.translate import position_limit, translate

    source_limit = position_limit(model.src_embed)
    if source_limit is not None and len(ids) > source_limit:
        raise ValueError(
            f"the source has {len(ids)} tokens but the encoder has only {source_limit} learned "
            "positions; shorten it"
        )
    if tgt is None:
        output = translate(model, tokenizer, [src], **decode)[0][0]
        out_ids, tgt = list(output.tokens), output.text
    else:
        out_ids = [int(i) for i in tokenizer.encode(tgt)]
        if not out_ids:
            raise ValueError("the target text has no tokens; give a non-empty tgt or none")
    decoder_input = [model.bos_id, *out_ids]
    target_limit = position_limit(model.tgt_embed)
    if target_limit is not None and len(decoder_input) > target_limit:
        raise ValueError(
            f"the target has {len(out_ids)} tokens, which with BOS is more than the decoder's "
            f"{target_limit} learned positions; shorten it"
        )
    with evaluating(model):
        _, maps = model.forward_with_attention(_batch(ids, model), _batch(decoder_input, model))
    views = {
        "encoder": _stack(maps.encoder),
        "decoder": _stack(maps.decoder),
        "cross": _stack(maps.cross),
    }
    source, target = _pieces(tokenizer, ids), _pieces(tokenizer, decoder_input)
    return AttentionRecord("encoder-decoder", source, target, views, text={"src": src, "tgt": tgt})


def _batch(ids: Sequence[int], model: nn.Module) -> Tensor:
    device = next(model.parameters()).device
    return torch.tensor([list(ids)], dtype=torch.long, device=device)  # (1, n)


def _stack(weights: Sequence[Tensor]) -> np.ndarray:
    """One ``(1, H, q, k)`` tensor per layer -> ``(L, H, q, k)`` float32."""
    return torch.stack([w[0] for w in weights]).float().cpu().numpy()


def _pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    pieces = getattr(tokenizer, "pieces", None)
    if pieces is not None:
        return [str(p) for p in pieces(list(ids))]
    return [tokenizer.decode([i]) or f"<{i}>" for i in ids]
