"""Batched beam search with the GNMT length penalty.

The paper decodes with "beam search with a beam size of 4 and length penalty alpha = 0.6"
(Vaswani et al. 2017, arXiv 1706.03762, section 6.1), citing GNMT (Wu et al. 2016,
arXiv 1609.08144), whose penalty is ``lp(Y) = ((5 + |Y|) / 6) ** alpha``; a hypothesis is ranked by
``log P(Y | X) / lp(Y)``. ``|Y|`` counts the generated tokens including EOS.

Each step, for every source, the ``2k`` best extensions of its ``k`` beams are found in one
``topk``. Extensions ending in EOS that rank among the first ``k`` are finished (as in fairseq and
Hugging Face); the ``k`` best others continue, and the KV cache is reordered with them. A source
is done when it has ``k`` finished hypotheses or reaches its length limit (where EOS is forced), and
is then dropped from the batch. GNMT's coverage penalty is not implemented.

Shapes: n sources still searching, k beams, V vocabulary, c = min(2k, kV) candidates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from formers.decoding.base import (
    Decodable,
    DecodeOutput,
    Hypothesis,
    ban_repeated_ngrams,
    check_lengths,
    constrain,
    max_lengths,
    pad_outputs,
)


def gnmt_length_penalty(alpha: float) -> Callable[[int], float]:
    """``lp(L) = ((5 + L) / 6) ** alpha`` (GNMT, eq. 14); ``alpha = 0`` ranks by log-probability."""
    return lambda length: ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Decodable,
    src: Tensor,
    *,
    beam_size: int = 4,
    lenpen: float = 0.6,
    nbest: int = 1,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    max_len: int | None = None,
    min_len: int = 0,
    no_repeat_ngram_size: int = 0,
    length_penalty: Callable[[int], float] | None = None,
) -> DecodeOutput:
    """Find high-scoring outputs for a batch of sources.

    Args:
        model: a :class:`~formers.decoding.base.Decodable` model (in eval mode).
        src: ``(n, s)`` right-padded source ids.
        beam_size: beams per source (``k``); 1 is greedy search.
        lenpen: GNMT length-penalty ``alpha`` (the paper: 0.6).
        nbest: hypotheses to return per source (``<= beam_size``).
        max_len_a, max_len_b: at most ``floor(a * src_len + b)`` output tokens (with EOS).
        max_len: an absolute cap on output length.
        min_len: no EOS before this many tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0: off).
        length_penalty: a custom ``lp(length)``, replacing the GNMT one.

    Returns:
        :class:`~formers.decoding.base.DecodeOutput` with the best hypothesis per source in
        ``tokens`` and the ``nbest`` best (with scores and log-probabilities) in ``nbest``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and beam_size ({beam_size}), got {nbest}")
    check_lengths(max_len_a, max_len_b, max_len, min_len)
    lp = length_penalty or gnmt_length_penalty(lenpen)
    k, device = beam_size, src.device
    state = model.init_decoding(src)
    n_src = src.size(0)
    limits = max_lengths(state.src_lengths, max_len_a, max_len_b, max_len).to(device)  # (n,)
    state.reorder(torch.arange(n_src, device=device).repeat_interleave(k))
    total = int(limits.max())
    tokens = torch.full((n_src * k, total + 1), model.pad_id, dtype=torch.long, device=device)
    tokens[:, 0] = model.bos_id
    # only the first beam of each source is live at the start; the others are copies of it
    beam_scores = torch.full((n_src, k), -torch.inf, device=device)
    beam_scores[:, 0] = 0.0
    sources = torch.arange(n_src, device=device)  # original index of each searching source
    finished: list[list[Hypothesis]] = [[] for _ in range(n_src)]

    for step in range(total):
        n = sources.numel()
        logits = model.decode_step(tokens[:, step : step + 1], state)  # (n*k, V)
        lprobs = F.log_softmax(logits.float(), dim=-1)
        constrain(
            lprobs, step, limits.repeat_interleave(k), pad_id=model.pad_id,
            bos_id=model.bos_id, eos_id=model.eos_id, min_len=min_len,
        )  # fmt: skip
        ban_repeated_ngrams(lprobs, tokens[:, 1 : step + 1], no_repeat_ngram_size)
        vocab = lprobs.size(-1)
        candidates = (beam_scores.view(-1, 1) + lprobs).view(n, k * vocab)
        c = min(2 * k, k * vocab)
        top_scores, top_index = candidates.topk(c, dim=1)  # (n, c)
        top_beam = top_index // vocab
        top_token = top_index % vocab
        is_eos = top_token == model.eos_id
        rank = torch.arange(c, device=device)

        finals = is_eos & (rank < k) & torch.isfinite(top_scores)
        if bool(finals.any()):
            penalty = lp(step + 1)
            for i, j in finals.nonzero().tolist():
                row = i * k + int(top_beam[i, j])
                seq = torch.cat([tokens[row, 1 : step + 1], tokens.new_tensor([model.eos_id])])
                log_prob = float(top_scores[i, j])
                finished[int(sources[i])].append(Hypothesis(seq, log_prob / penalty, log_prob))

        # the k best candidates that do not end in EOS continue (there are always >= k of them)
        order = torch.where(is_eos, rank + c, rank)
        keep = order.topk(k, dim=1, largest=False).indices  # (n, k), best first
        beam_scores = top_scores.gather(1, keep)
        rows = (top_beam.gather(1, keep) + torch.arange(n, device=device)[:, None] * k).view(-1)
        next_token = top_token.gather(1, keep).view(-1)

        counts = torch.tensor([len(finished[int(s)]) for s in sources], device=device)
        no_live_beam = ~torch.isfinite(beam_scores).any(dim=1)
        done = (counts >= k) | (limits <= step + 1) | no_live_beam
        if bool(done.all()):
            break
        if bool(done.any()):
            searching = ~done
            rows = rows.view(n, k)[searching].view(-1)
            next_token = next_token.view(n, k)[searching].view(-1)
            beam_scores = beam_scores[searching]
            sources, limits = sources[searching], limits[searching]
        tokens = tokens.index_select(0, rows)
        tokens[:, step + 1] = next_token
        state.reorder(rows)

    nbest_lists: list[list[Hypothesis]] = []
    for hyps in finished:
        if not hyps:  # every continuation was forbidden (e.g. by min_len and n-gram blocking)
            hyps = [Hypothesis(src.new_tensor([model.eos_id]), -torch.inf, -torch.inf)]
        nbest_lists.append(sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest])
    best, lengths = pad_outputs([h[0].tokens for h in nbest_lists], model.pad_id)
    scores = torch.tensor([h[0].score for h in nbest_lists], device=device)
    return DecodeOutput(best, lengths, scores, nbest_lists)
