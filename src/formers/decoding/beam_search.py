"""Batched beam search with the GNMT length penalty.

The paper decodes with "beam search with a beam size of 4 and length penalty alpha = 0.6"
(Vaswani et al. 2017, arXiv 1706.03762, section 6.1), citing GNMT (Wu et al. 2016,
arXiv 1609.08144), whose penalty is ``lp(Y) = ((5 + |Y|) / 6) ** alpha``; a hypothesis is ranked by
``log P(Y | X) / lp(Y)``. ``|Y|`` counts the generated tokens including EOS. fairseq's
``--lenpen`` and Hugging Face's ``length_penalty`` divide by ``|Y| ** alpha`` instead
(:func:`power_length_penalty`); papers that decoded with fairseq used that form.

Each step, for every source, the ``2k`` best extensions of its ``k`` beams are found in one
``topk``. Extensions ending in EOS that rank among the first ``k`` are finished (as in fairseq and
Hugging Face); the ``k`` best others continue, and the KV cache is reordered with them. A source
is done when it reaches its length limit (where EOS is forced) or, by default, as soon as it has
``k`` finished hypotheses; it is then dropped from the batch. The ``k`` beams of a source start
identical, so the first step runs once per source and its state is then repeated for the beams;
the cross-attention caches keep one row per source, which softmax attention reads once for all
its beams (:class:`~formers.nn.kv_cache.StaticKVCache`).
GNMT's coverage penalty is not implemented.

``early_stopping`` chooses when a source with ``k`` finished hypotheses stops, with Hugging Face's
names and rules (``transformers`` ``GenerationMixin._beam_search``):

- ``True`` (fairseq, and the default here): at once;
- ``False``: once the best live beam, scored at its current length, cannot beat the ``k``-th best
  finished hypothesis (Hugging Face's default);
- ``"never"``: once it cannot beat it at any length it may still reach (the score of a live beam
  only falls, so for a monotone penalty the best case is its current length or the limit).

With ``length_penalty=lambda n: n ** alpha`` and ``forced_eos_log_prob=0.0`` (Hugging Face's
``ForcedEOSTokenLogitsProcessor`` gives the EOS forced at the limit a log-probability of 0) the
search returns what ``generate(num_beams=k, length_penalty=alpha, early_stopping=...)`` returns.

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
from formers.decoding.options import check_option


def gnmt_length_penalty(alpha: float) -> Callable[[int], float]:
    """``lp(L) = ((5 + L) / 6) ** alpha`` (GNMT, eq. 14); ``alpha = 0`` ranks by log-probability."""
    return lambda length: ((5.0 + length) / 6.0) ** alpha


def power_length_penalty(alpha: float) -> Callable[[int], float]:
    """``lp(L) = L ** alpha``: fairseq's ``--lenpen`` and Hugging Face's ``length_penalty``
    (``alpha = 1`` ranks by the mean log-probability per token, EOS included)."""
    return lambda length: float(length) ** alpha


LENGTH_PENALTIES: dict[str, Callable[[float], Callable[[int], float]]] = {
    "gnmt": gnmt_length_penalty,
    "power": power_length_penalty,
}


def length_penalty(form: str, alpha: float) -> Callable[[int], float]:
    """The length penalty ``lp(L)`` of a named form (``"gnmt"`` or ``"power"``) and ``alpha``
    (in :data:`formers.decoding.options.RANGES`: a huge one overflows)."""
    if form not in LENGTH_PENALTIES:
        raise ValueError(
            f"unknown length penalty form {form!r}; choose one of {', '.join(LENGTH_PENALTIES)}"
        )
    check_option("lenpen", alpha)
    return LENGTH_PENALTIES[form](alpha)


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
    early_stopping: bool | str = True,
    forced_eos_log_prob: float | None = None,
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
        length_penalty: a custom ``lp(length)``, replacing the GNMT one; e.g.
            ``lambda n: n ** alpha`` is Hugging Face's ``length_penalty=alpha``.
        early_stopping: when a source with ``beam_size`` finished hypotheses stops: ``True``,
            ``False`` or ``"never"`` (see the module docstring).
        forced_eos_log_prob: the log-probability credited to the EOS forced at the length
            limit; ``None`` (the default) uses the model's, Hugging Face uses ``0.0``.

    Returns:
        :class:`~formers.decoding.base.DecodeOutput` with the best hypothesis per source in
        ``tokens`` and the ``nbest`` best (with scores and log-probabilities) in ``nbest``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and beam_size ({beam_size}), got {nbest}")
    check_lengths(max_len_a, max_len_b, max_len, min_len)
    if not (isinstance(early_stopping, bool) or early_stopping == "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if length_penalty is None:
        check_option("lenpen", lenpen)
    lp = length_penalty or gnmt_length_penalty(lenpen)
    k, device = beam_size, src.device
    state = model.init_decoding(src)  # one row per source until the first step is taken
    n_src = src.size(0)
    limits = max_lengths(state.src_lengths, max_len_a, max_len_b, max_len).to(device)  # (n,)
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
        if step == 0:  # the k beams of a source start identical: take the first step once
            logits = model.decode_step(tokens[::k, :1], state).repeat_interleave(k, dim=0)
        else:
            logits = model.decode_step(tokens[:, step : step + 1], state)  # (n*k, V)
        lprobs = F.log_softmax(logits.float(), dim=-1)
        constrain(
            lprobs, step, limits.repeat_interleave(k), pad_id=model.pad_id,
            bos_id=model.bos_id, eos_id=model.eos_id, min_len=min_len,
            forced_eos=forced_eos_log_prob,
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

        no_live_beam = ~torch.isfinite(beam_scores).any(dim=1)
        full = _stop(finished, sources, beam_scores, limits, step, k, lp, early_stopping)
        done = full.to(device) | (limits <= step + 1) | no_live_beam
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
        state.reorder(rows // k if step == 0 else rows)  # after step 0: repeat for the beams

    nbest_lists: list[list[Hypothesis]] = []
    for hyps in finished:
        if not hyps:  # every continuation was forbidden (e.g. by min_len and n-gram blocking)
            hyps = [Hypothesis(src.new_tensor([model.eos_id]), -torch.inf, -torch.inf)]
        nbest_lists.append(sorted(hyps, key=lambda h: h.score, reverse=True)[:nbest])
    best, lengths = pad_outputs([h[0].tokens for h in nbest_lists], model.pad_id)
    scores = torch.tensor([h[0].score for h in nbest_lists], device=device)
    return DecodeOutput(best, lengths, scores, nbest_lists)


def _stop(
    finished: list[list[Hypothesis]],
    sources: Tensor,
    beam_scores: Tensor,
    limits: Tensor,
    step: int,
    k: int,
    lp: Callable[[int], float],
    early_stopping: bool | str,
) -> Tensor:
    """``(n,)``: which searching sources have ``k`` finished hypotheses and, unless
    ``early_stopping`` is True, no live beam that could still beat the ``k``-th best of them."""
    stop = []
    for i, source in enumerate(sources.tolist()):
        hyps = finished[source]
        if len(hyps) < k or early_stopping is True:
            stop.append(len(hyps) >= k)
            continue
        kth_best = sorted((h.score for h in hyps), reverse=True)[k - 1]
        best_live = float(beam_scores[i, 0])  # beams are sorted, best first
        lengths = [step + 1] if early_stopping is False else [step + 1, int(limits[i])]
        stop.append(max(best_live / lp(n) for n in lengths) <= kth_best)
    return torch.tensor(stop, dtype=torch.bool)
