"""Greedy decoding and sampling: one token per step from each row's next-token distribution.

Both use the KV cache (each step feeds only the newest token) and drop finished rows from the
batch, so a long output does not make short ones pay for its steps.

Sampling follows the usual controls: temperature, top-k (Fan et al. 2018, arXiv 1805.04833) and
nucleus / top-p (Holtzman et al. 2019, arXiv 1904.09751); ``seed`` makes it reproducible.

Shapes: b rows still decoding, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from formers.decoding.base import (
    Decodable,
    DecodeOutput,
    ban_repeated_ngrams,
    check_lengths,
    constrain,
    max_lengths,
)

Chooser = Callable[[Tensor], Tensor]  # (b, V) log-probabilities -> (b,) token ids


@torch.no_grad()
def _decode_sequentially(
    model: Decodable,
    src: Tensor,
    choose: Chooser,
    *,
    max_len_a: float,
    max_len_b: int,
    max_len: int | None,
    min_len: int,
    no_repeat_ngram_size: int,
) -> DecodeOutput:
    check_lengths(max_len_a, max_len_b, max_len, min_len)
    state = model.init_decoding(src)
    n, device = src.size(0), src.device
    limits = max_lengths(state.src_lengths, max_len_a, max_len_b, max_len).to(device)
    total = int(limits.max())
    out = torch.full((n, total + 1), model.pad_id, dtype=torch.long, device=device)
    out[:, 0] = model.bos_id
    scores = torch.zeros(n, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)  # which source each live row decodes
    for step in range(total):
        logits = model.decode_step(out[rows, step : step + 1], state)  # (b, V)
        lprobs = F.log_softmax(logits.float(), dim=-1)
        constrain(
            lprobs, step, limits[rows], pad_id=model.pad_id, bos_id=model.bos_id,
            eos_id=model.eos_id, min_len=min_len,
        )  # fmt: skip
        ban_repeated_ngrams(lprobs, out[rows, 1 : step + 1], no_repeat_ngram_size)
        token = choose(lprobs)  # (b,)
        out[rows, step + 1] = token
        scores[rows] += lprobs.gather(1, token[:, None]).squeeze(1)
        ended = token == model.eos_id
        if bool(ended.any()):
            lengths[rows[ended]] = step + 1
            live = (~ended).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            rows = rows[live]
            state.reorder(live)
    tokens = out[:, 1 : int(lengths.max()) + 1]
    return DecodeOutput(tokens, lengths, scores)


def greedy_search(
    model: Decodable,
    src: Tensor,
    *,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    max_len: int | None = None,
    min_len: int = 0,
    no_repeat_ngram_size: int = 0,
) -> DecodeOutput:
    """Pick the most probable token at every step.

    Args:
        model: a :class:`~formers.decoding.base.Decodable` model (in eval mode).
        src: ``(b, s)`` right-padded source ids.
        max_len_a, max_len_b: at most ``floor(a * src_len + b)`` output tokens (with EOS).
        max_len: an absolute cap on output length.
        min_len: no EOS before this many tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0: off).

    Returns:
        :class:`~formers.decoding.base.DecodeOutput`; ``scores`` are total log-probabilities.
    """
    return _decode_sequentially(
        model, src, lambda lprobs: lprobs.argmax(dim=-1),
        max_len_a=max_len_a, max_len_b=max_len_b, max_len=max_len, min_len=min_len,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )  # fmt: skip


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Keep the ``top_k`` most probable tokens and the smallest set whose probability reaches
    ``top_p``; the rest become ``-inf``. ``(b, V) -> (b, V)``, not in place."""
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens before it already reach top_p (the first is always kept)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, -torch.inf)
    return logits


def sample(
    model: Decodable,
    src: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    max_len: int | None = None,
    min_len: int = 0,
    no_repeat_ngram_size: int = 0,
) -> DecodeOutput:
    """Draw each token from the model's (tempered, truncated) distribution.

    Args:
        temperature: divides the log-probabilities (< 1 sharper, > 1 flatter); must be > 0.
        top_k: sample among the ``k`` most probable tokens (0: all).
        top_p: sample among the most probable tokens whose total probability reaches ``p``.
        seed: seed of a private generator, for reproducible samples.
        Other arguments as in :func:`greedy_search`.

    Returns:
        :class:`~formers.decoding.base.DecodeOutput`; ``scores`` are total log-probabilities
        under the untempered model.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use greedy_search for 0")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=src.device).manual_seed(seed)

    def choose(lprobs: Tensor) -> Tensor:
        probs = filter_logits(lprobs / temperature, top_k, top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _decode_sequentially(
        model, src, choose, max_len_a=max_len_a, max_len_b=max_len_b, max_len=max_len,
        min_len=min_len, no_repeat_ngram_size=no_repeat_ngram_size,
    )  # fmt: skip
