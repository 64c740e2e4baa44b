"""How well a language model predicts a text: cross-entropy per token and perplexity.

Two ways to read a text longer than the model's context, one per kind of model:

- :func:`window_loss` (a GPT): consecutive windows of ``context`` tokens, each read alone (the
  first token of a window sees nothing before it), batched; the last window may be shorter.
- :func:`stream_loss` (a model with segment memory, Transformer-XL): the text as one stream of
  segments, each read once with the memory of those before it: the paper's fast evaluation
  (Dai et al. 2019, arXiv 1901.02860, section 3.2), which needs no sliding window.

Both predict every token after the first exactly once and report ``loss`` (mean negative log
likelihood in nats, never label-smoothed), ``ppl`` and ``tokens``.

Shapes: b batch, t length, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.nn.modes import evaluating
from formers.nn.recurrent_lm import RecurrentLM


def encode_text(tokenizer: Any, text: str) -> Tensor:
    """A text as the ``lm`` task reads it: one stream of ids. Characters: the text as it is,
    newlines included; a tokenizer with an end-of-sequence token: each non-empty line, then
    EOS."""
    if tokenizer.eos_id is None:
        return torch.tensor(tokenizer.encode(text), dtype=torch.long)
    ids: list[int] = []
    for line in tokenizer.encode_batch([line for line in text.splitlines() if line.strip()]):
        ids.extend(line)
        ids.append(tokenizer.eos_id)
    return torch.tensor(ids, dtype=torch.long)


def metrics(nll_sum: float, count: int) -> dict[str, Any]:
    """``loss``, ``ppl`` and ``tokens`` from a summed negative log likelihood."""
    loss = nll_sum / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "tokens": count}


def _nll(logits: Tensor, targets: Tensor) -> float:
    logits = logits.flatten(0, -2)  # (n, V), in float32 at least (bf16 logits are upcast)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return float(F.cross_entropy(logits, targets.flatten(), reduction="sum"))


def window_sums(
    model: nn.Module, ids: Tensor, chunks: list[list[int]], context: int, device: torch.device
) -> tuple[float, int]:
    """Summed NLL and count over the windows starting at each offset of ``chunks`` (one batch
    a chunk); a window that would run past the text is read as the text's tail."""
    nll_sum, count = 0.0, 0
    with evaluating(model):
        for chunk in chunks:
            full = [s for s in chunk if s + context < len(ids)]
            if full:
                index = torch.tensor(full)[:, None] + torch.arange(context + 1)  # (b, T + 1)
                windows = ids[index].to(device)
                nll_sum += _nll(model(windows[:, :-1]), windows[:, 1:])
                count += windows[:, 1:].numel()
            for s in sorted(set(chunk) - set(full)):  # the tail
                tail = ids[s:].to(device)
                nll_sum += _nll(model(tail[None, :-1])[0], tail[1:])
                count += tail.numel() - 1
    return nll_sum, count


def window_chunks(length: int, context: int, batch_size: int) -> list[list[int]]:
    """The windows' offsets of a text of ``length`` tokens, ``batch_size`` to a batch."""
    starts = list(range(0, length - 1, context))
    return [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]


def window_loss(
    model: nn.Module, ids: Tensor, *, context: int, batch_size: int = 12,
    device: torch.device | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of consecutive windows of ``context`` tokens (see the module docstring)."""
    device = device or next(model.parameters()).device
    chunks = window_chunks(len(ids), context, batch_size)
    return metrics(*window_sums(model, ids, chunks, context, device))


def stream_loss(
    model: RecurrentLM, ids: Tensor, *, segment: int | None = None, memory: int | None = None,
    max_segments: int = 0, device: torch.device | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of the text read as one stream (see the module docstring).

    Args:
        model: a model with segment memory.
        ids: ``(n,)`` the text's token ids.
        segment: tokens per segment (default: the model's training segment).
        memory: positions each layer remembers (default: the model's training memory; 0: every
            segment alone).
        max_segments: read at most this many segments (0: all).

    Raises:
        ValueError: a segment shorter than 1 or a memory below 0.
    """
    segment = model.segment_length if segment is None else segment
    if segment < 1:
        raise ValueError(f"the segment length must be >= 1, got {segment}")
    device = device or next(model.parameters()).device
    state = model.new_memory(memory)
    nll_sum, count = 0.0, 0
    with evaluating(model):
        for index, start in enumerate(range(0, len(ids) - 1, segment)):
            if max_segments and index >= max_segments:
                break
            piece = ids[start : start + segment + 1].to(device)[None]  # (1, <= segment + 1)
            nll_sum += _nll(model(piece[:, :-1], memory=state), piece[:, 1:])
            count += piece.size(1) - 1
    return metrics(nll_sum, count)
