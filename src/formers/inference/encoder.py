"""Inference with BERT-style encoders: classify texts, fill in [MASK] tokens, embed sentences.

Texts are encoded as ``[CLS] text [SEP]``, cut to the model's ``max_positions`` or to a shorter
``max_length`` (a sentence-transformers model's own ``max_seq_length``, which ``formers convert``
records in the checkpoint: see :func:`encode_length`), sorted by length and run in batches of
``batch_size`` right-padded rows; the attention mask marks each row's real tokens, so a text's
result does not depend on the batch it lands in (up to float rounding). Results come back in the
input order.

- :func:`classify`: class probabilities from a classification head (BERT section 4.1,
  Devlin et al. 2018, arXiv 1810.04805).
- :func:`fill_masks`: the masked LM head's best tokens for each [MASK] (section 3.1, Task #1).
  Special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]) are never proposed.
- :func:`embed`: mean-pooled, L2-normalized token states, as sentence-transformers embeds with
  mean-pooling models such as all-MiniLM-L6-v2.

Shapes: b texts in a batch, s longest text in the batch (tokens), d model width, L labels,
V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.encoder_heads import EncoderForClassification, EncoderForMaskedLM
from formers.nn.encoder_only import EncoderOnlyModel, mean_pool

CONTINUATION = "##"  # WordPiece's mark of a piece that continues a word


class EncoderTokenizer(Protocol):
    """What encoder inference needs (:class:`formers.data.hf_tokenizer.HFTokenizer` has it)."""

    pad_id: int
    mask_id: int

    @property
    def special_ids(self) -> set[int]: ...

    def encode(self, text: str, *, max_length: int | None = None) -> list[int]: ...

    def pieces(self, ids: Sequence[int]) -> list[str]: ...


@dataclass(frozen=True)
class FilledText:
    """A text with its [MASK] tokens filled in.

    Attributes:
        text: the input with each [MASK] replaced by the most probable token (a mask cut off by
            truncation stays as it is).
        candidates: per mask, in order, the ``top_k`` best ``(token, probability)`` pairs.
    """

    text: str
    candidates: list[list[tuple[str, float]]]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _batches(
    sequences: list[list[int]], batch_size: int, pad_id: int, device: torch.device
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """``(indices, ids (b, s), mask (b, s))`` for batches of similar length."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        lengths = torch.tensor([len(sequences[i]) for i in index])
        ids = torch.full((len(index), int(lengths.max())), pad_id, dtype=torch.long)  # (b, s)
        for row, i in enumerate(index):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # (b, s) real tokens
        yield index, ids.to(device), mask.to(device)


def _body(model: nn.Module) -> EncoderOnlyModel:
    body = getattr(model, "body", model)
    if not isinstance(body, EncoderOnlyModel):
        raise TypeError(f"expected a BERT-style encoder, got a {type(model).__name__}")
    return body


def encode_length(checkpoint_config: dict[str, Any]) -> int | None:
    """The ``max_length`` a checkpoint asks its texts to be cut to (``config.json``'s
    ``"encode"`` section: a sentence-transformers model's ``max_seq_length``), or ``None``."""
    value = (checkpoint_config.get("encode") or {}).get("max_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 2 else None


def _encode(
    model: nn.Module, tokenizer: EncoderTokenizer, texts: Sequence[str], max_length: int | None
) -> list[list[int]]:
    if max_length is not None and (isinstance(max_length, bool) or max_length < 3):
        raise ValueError(
            f"max_length must be an int >= 3 ([CLS], a token, [SEP]), got {max_length}"
        )
    positions = getattr(getattr(model, "config", None), "max_positions", None)
    limits = [n for n in (positions, max_length) if n is not None]
    longest = min(limits) if limits else None
    return [tokenizer.encode(text, max_length=longest) for text in texts]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def classify(
    model: EncoderForClassification,
    tokenizer: EncoderTokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
) -> Tensor:
    """Class probabilities of each text.

    Args:
        model: a body with a classification head (in eval mode for deterministic results).
        tokenizer: the model's tokenizer.
        texts: the texts, one per prediction.
        batch_size: texts per forward pass.
        max_length: cut texts to this many tokens, specials included (default: the model's
            positions).

    Returns:
        ``(n, L)`` float32 probabilities on the CPU; ``argmax(-1)`` is the predicted label.
    """
    if not isinstance(model, EncoderForClassification):
        raise TypeError(f"classify needs a classification model, got a {type(model).__name__}")
    _check_batch_size(batch_size)
    sequences = _encode(model, tokenizer, texts, max_length)
    out = torch.empty(len(texts), model.head.linear.out_features)
    for index, ids, mask in _batches(sequences, batch_size, tokenizer.pad_id, _device(model)):
        out[index] = model(ids, attention_mask=mask).float().softmax(dim=-1).cpu()  # (b, L)
    return out


def _token_text(piece: str) -> str:
    return piece.removeprefix(CONTINUATION) if piece != CONTINUATION else piece


@torch.inference_mode()
def fill_masks(
    model: EncoderForMaskedLM,
    tokenizer: EncoderTokenizer,
    texts: Sequence[str],
    *,
    top_k: int = 1,
    batch_size: int = 32,
    max_length: int | None = None,
) -> list[FilledText]:
    """Fill each [MASK] of each text with the masked LM head's most probable token.

    Masks are predicted together, each from the text with all of them masked (as BERT was
    trained), not one after the other.

    Args:
        model: a body with a masked LM head.
        tokenizer: the model's WordPiece tokenizer (its [MASK] piece marks the masks in text).
        texts: texts containing the mask token (a text without one comes back unchanged).
        top_k: candidates to list per mask (>= 1).
        batch_size: texts per forward pass.
        max_length: as in :func:`classify`.

    Returns:
        One :class:`FilledText` per text; a WordPiece continuation is inserted without its ``##``.
    """
    if not isinstance(model, EncoderForMaskedLM):
        raise TypeError(f"fill_masks needs a masked LM model, got a {type(model).__name__}")
    _check_batch_size(batch_size)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    sequences = _encode(model, tokenizer, texts, max_length)
    specials = torch.tensor(sorted(tokenizer.special_ids))
    found: list[list[list[tuple[str, float]]]] = [[] for _ in texts]
    for index, ids, mask in _batches(sequences, batch_size, tokenizer.pad_id, _device(model)):
        where = ids == tokenizer.mask_id  # (b, s)
        if not bool(where.any()):
            continue
        logits = model.head(model.body(ids, attention_mask=mask)[where]).float()  # (masks, V)
        logits[:, specials.to(logits.device)] = float("-inf")
        probs, best = logits.softmax(dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
        rows = where.nonzero()[:, 0].tolist()  # the batch row of each mask, in reading order
        for row, p, tokens in zip(rows, probs.tolist(), best.tolist(), strict=True):
            pieces = [_token_text(piece) for piece in tokenizer.pieces(tokens)]
            found[index[row]].append(list(zip(pieces, p, strict=True)))
    mask_piece = tokenizer.pieces([tokenizer.mask_id])[0]
    results = []
    for text, candidates in zip(texts, found, strict=True):
        parts = text.split(mask_piece)
        filled = [parts[0]]
        for i, part in enumerate(parts[1:]):
            filled += [candidates[i][0][0] if i < len(candidates) else mask_piece, part]
        results.append(FilledText("".join(filled), candidates))
    return results


@torch.inference_mode()
def embed(
    model: nn.Module,
    tokenizer: EncoderTokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    normalize: bool = True,
    max_length: int | None = None,
) -> Tensor:
    """Sentence embeddings: the mean of each text's token states, L2-normalized.

    Args:
        model: a BERT body, or a model with one (``.body``; its head is not used).
        tokenizer: the model's tokenizer.
        texts: the texts.
        batch_size: texts per forward pass.
        normalize: divide each embedding by its L2 norm (dot products are then cosines).
        max_length: as in :func:`classify` (sentence-transformers: its ``max_seq_length``).

    Returns:
        ``(n, d)`` float32 embeddings on the CPU.
    """
    body = _body(model)
    _check_batch_size(batch_size)
    sequences = _encode(model, tokenizer, texts, max_length)
    out = torch.empty(len(texts), body.embed.token.embedding_dim)
    for index, ids, mask in _batches(sequences, batch_size, tokenizer.pad_id, _device(model)):
        pooled = mean_pool(body(ids, attention_mask=mask), mask).float()  # (b, d)
        out[index] = (F.normalize(pooled, p=2, dim=1) if normalize else pooled).cpu()
    return out
