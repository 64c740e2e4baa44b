"""What every search strategy shares: the model's step interface, length limits, constraints.

A model is decodable if it offers (see :class:`formers.nn.EncoderDecoder`):

- ``init_decoding(src) -> state``: encode a batch of right-padded sources; the state has
  ``src_lengths`` (``(b,)``) and ``reorder(indices)``, which keeps (and may repeat) batch rows;
- ``decode_step(tokens, state) -> logits``: feed ``(b, t_new)`` tokens, get ``(b, V)`` logits for
  the next token, with the KV cache in ``state`` updated;
- ``pad_id``, ``bos_id``, ``eos_id``.

Lengths: a hypothesis is the generated tokens *including* the final EOS, excluding BOS. A source of
``n`` real tokens may produce at most ``floor(max_len_a * n + max_len_b)`` tokens (the paper:
``n + 50``, section 6.1); the last one is forced to be EOS.

Shapes: b batch rows (sentences times beams), V vocabulary, L generated length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from formers.decoding.options import check_option


class DecodingState(Protocol):
    src_lengths: Tensor

    def reorder(self, indices: Tensor) -> None: ...


class Decodable(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int

    def init_decoding(self, src: Tensor) -> Any: ...

    def decode_step(self, tokens: Tensor, state: Any) -> Tensor: ...


@dataclass
class Hypothesis:
    """One finished output.

    Attributes:
        tokens: ``(L,)`` generated ids, ending with EOS.
        score: the search's ranking score (length-normalized log-probability for beam search).
        log_prob: total log-probability of ``tokens`` under the model.
    """

    tokens: Tensor
    score: float
    log_prob: float


@dataclass
class DecodeOutput:
    """Decoded batch, in the order of the sources.

    Attributes:
        tokens: ``(b, L)`` best outputs, right-padded with ``pad_id``; each ends with EOS.
        lengths: ``(b,)`` lengths including EOS.
        scores: ``(b,)`` ranking scores of the best outputs.
        nbest: for beam search, the ``nbest`` best hypotheses per source, best first.
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    nbest: list[list[Hypothesis]] | None = None


def max_lengths(
    src_lengths: Tensor, max_len_a: float, max_len_b: int, max_len: int | None = None
) -> Tensor:
    """Per-source limit ``floor(a * n + b)``, at least 1, capped at ``max_len``: ``(b,)``."""
    limits = torch.floor(src_lengths.to(torch.float64) * max_len_a + max_len_b).long()
    limits = limits.clamp(min=1)
    if max_len is not None:
        limits = limits.clamp(max=max_len)
    return limits


def check_lengths(max_len_a: float, max_len_b: int, max_len: int | None, min_len: int) -> None:
    check_option("max_len_a", max_len_a)
    check_option("max_len_b", max_len_b)
    if max_len_a == 0 and max_len_b < 1:
        raise ValueError(f"max_len_b must be >= 1 when max_len_a is 0, got {max_len_b}")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if min_len < 0:
        raise ValueError(f"min_len must be >= 0, got {min_len}")


def constrain(
    lprobs: Tensor,
    step: int | Tensor,
    limits: Tensor,
    *,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    min_len: int = 0,
    forced_eos: float | None = None,
) -> Tensor:
    """Apply the rules every search shares, in place, to ``(b, V)`` log-probabilities.

    Never emit padding or BOS; no EOS before ``min_len`` tokens; only EOS at a row's limit
    (``limits``: ``(b,)``; the limit wins over a ``min_len`` beyond it). ``step``: the tokens
    produced so far, one number for all rows or ``(b,)``. Forbidden entries become
    ``-inf``; the EOS forced at the limit keeps its log-probability, or scores ``forced_eos`` if
    given (Hugging Face's forced EOS scores 0).
    """
    lprobs[:, pad_id] = -torch.inf
    lprobs[:, bos_id] = -torch.inf
    eos = lprobs[:, eos_id].clone()  # before min_len's ban: what the forced EOS scores
    if isinstance(step, Tensor):  # (b,): each row's own step
        lprobs[:, eos_id] = lprobs[:, eos_id].masked_fill(step < min_len, -torch.inf)
    elif step < min_len:
        lprobs[:, eos_id] = -torch.inf
    at_limit = limits <= step + 1  # (b,)
    if forced_eos is not None:
        eos.fill_(forced_eos)
    lprobs.masked_fill_(at_limit[:, None], -torch.inf)
    lprobs[:, eos_id] = torch.where(at_limit, eos, lprobs[:, eos_id])
    return lprobs


def ban_repeated_ngrams(lprobs: Tensor, history: Tensor, n: int) -> Tensor:
    """Forbid tokens that would repeat an n-gram of ``history``, in place.

    Args:
        lprobs: ``(b, V)`` log-probabilities of the next token.
        history: ``(b, L)`` tokens generated so far (without BOS).
        n: n-gram size; 0 disables.
    """
    length = history.size(1)
    if n <= 0 or length < n:
        return lprobs
    ngrams = history.unfold(1, n, 1)  # (b, L - n + 1, n)
    suffix = history[:, length - n + 1 :]  # (b, n - 1): the n-gram the next token would close
    match = (ngrams[:, :, : n - 1] == suffix[:, None, :]).all(dim=-1)  # (b, L - n + 1)
    hits = torch.zeros_like(lprobs, dtype=torch.long)
    hits.scatter_add_(1, ngrams[:, :, -1], match.long())
    return lprobs.masked_fill_(hits > 0, -torch.inf)


def pad_ids(rows: list[list[int]], pad_id: int, device: torch.device | None = None) -> Tensor:
    """Right-pad token id lists (at least one) into a ``(b, max length)`` long tensor."""
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out.to(device)


def pad_outputs(sequences: list[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D sequences into ``(b, L)``; also return their lengths."""
    lengths = torch.tensor([s.numel() for s in sequences], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=pad_id)
    return padded, lengths.to(padded.device)
