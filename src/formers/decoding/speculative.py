"""Speculative greedy decoding with a draft model: several tokens checked per pass of the model.

A decoding step of a large model on a CPU is bound by streaming its weights, so scoring ``k + 1``
positions costs little more than scoring one. A small *draft* model (trained on the same data)
proposes ``k`` tokens greedily; the target model scores them all in one cached pass; the longest
prefix on which the target's own greedy choice agrees is kept, followed by the target's choice at
the first disagreement (or after the last proposal). Every kept token is the target's greedy
choice, so the output is the target's greedy output: this is the greedy case of speculative
decoding (Leviathan, Kalman and Matias 2023, arXiv 2211.17192; Chen et al. 2023, arXiv
2302.01318), the descendant of blockwise parallel decoding (Stern, Shazeer and Uszkoreit 2018,
arXiv 1811.03115), whose proposals come from extra heads of the model itself instead.

Exactness: the kept tokens are those plain greedy search picks, with formers' rules (no padding or
BOS, no EOS before ``min_len``, EOS forced at the limit). The target's logits for ``k + 1``
positions in one pass equal those of ``k + 1`` single steps up to float rounding (a different
matrix shape); in float64 the outputs are identical (tested), in float32 a near-tie may resolve
differently, which ``benchmarks/runtimes.py`` counts.

Batches: the rows of a batch keep the same number of tokens each round (the fewest any live row
accepted), so the caches stay rectangular; finished rows leave the batch. Deviations from the
papers: no sampling (greedy only); ``k`` is fixed.

Shapes: b live rows, k proposals, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.decoding.base import DecodeOutput, check_lengths, constrain, max_lengths
from formers.nn.kv_cache import DecoderCache, KVCache
from formers.nn.modes import eval_mode

# (b, V) logits, step (or (b,) steps), live rows -> (b,) chosen ids and their log-probabilities
Pick = Callable[[Tensor, "int | Tensor", Tensor], tuple[Tensor, Tensor]]


@dataclass
class SpeculationStats:
    """How much each pass of the target model produced.

    Attributes:
        target_passes: forward passes of the target model, summed over rows.
        tokens: tokens produced, summed over rows (EOS included).
        drafted: tokens the draft proposed, summed over rows.
    """

    target_passes: int = 0
    tokens: int = 0
    drafted: int = 0

    @property
    def tokens_per_pass(self) -> float:
        """The mean accepted block: tokens per target pass (1.0 is plain greedy)."""
        return self.tokens / max(1, self.target_passes)


def truncate(cache: DecoderCache, length: int) -> None:
    """Forget the cached positions from ``length`` on (their storage is reused)."""
    for layer in cache.layers:
        if not isinstance(layer.self_attn, KVCache):
            raise TypeError(
                f"speculative decoding rolls back the KV cache, which {type(layer.self_attn)} "
                "does not offer"
            )
        layer.self_attn.length = min(layer.self_attn.length, length)
    if cache.keys is not None:
        cache.keys, cache.positions = cache.keys[:, :length], cache.positions[:, :length]


def greedy_pick(model: nn.Module, limits: Tensor, min_len: int) -> Pick:
    """Greedy search's choice for rows of a batch whose sources have output ``limits`` (``(n,)``):
    the most probable token under :func:`~formers.decoding.base.constrain`'s rules, and its
    log-probability. ``step`` may be one number or each row's own (``(b,)``)."""

    def pick(logits: Tensor, step: int | Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        lprobs = F.log_softmax(logits.float(), dim=-1)
        constrain(
            lprobs, step, limits[rows], pad_id=model.pad_id, bos_id=model.bos_id,
            eos_id=model.eos_id, min_len=min_len,
        )  # fmt: skip
        best = lprobs.max(dim=-1)
        return best.indices, best.values

    return pick


class _Seq2Seq:
    """An encoder-decoder's side: its state for the sources, fed target tokens."""

    def __init__(self, model: nn.Module, src: Tensor) -> None:
        self.model, self.state = model, model.init_decoding(src)

    @property
    def length(self) -> int:
        return self.state.cache.length

    def feed(self, tokens: Tensor) -> Tensor:  # (b, t) -> (b, t, V)
        s = self.state
        logits = self.model.decode(tokens, s.memory, s.memory_mask, cache=s.cache)
        s.memory = None  # projected into the cross-attention caches
        return logits

    def truncate(self, length: int) -> None:
        truncate(self.state.cache, length)

    def keep(self, rows: Tensor) -> None:
        self.state.reorder(rows)


class _LanguageModel:
    """A decoder-only model's side: its cache, fed tokens."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.cache = model, model.new_cache()

    @property
    def length(self) -> int:
        return self.cache.length

    def feed(self, tokens: Tensor) -> Tensor:
        return self.model.decode(tokens, self.cache)

    def truncate(self, length: int) -> None:
        truncate(self.cache, length)

    def keep(self, rows: Tensor) -> None:
        self.cache.reorder(rows)


def _speculate(
    target, draft, seq: Tensor, start: int, limits: Tensor, k: int, eos_id: int | None,
    pick: Pick,
) -> tuple[Tensor, Tensor, SpeculationStats]:  # fmt: skip
    """The shared loop. ``seq``: ``(n, start + max(limits) + k + 1)`` with the prefix in its first
    ``start`` columns; returns the number of tokens each row produced (``(n,)``), their total
    log-probability under the target (``(n,)``) and the stats."""
    n = seq.size(0)
    rows = torch.arange(n, device=seq.device)  # the source of each live row
    produced = limits.clone()  # tokens per row (until an EOS ends it sooner)
    scores = torch.zeros(n, device=seq.device)
    stats = SpeculationStats()
    gen = 0  # tokens produced so far by every live row
    while rows.numel():
        end = start + gen  # columns filled
        k_now = max(0, min(k, int(limits[rows].max()) - gen - 1))  # stay within the limits
        for i in range(k_now):  # the draft proposes k_now tokens, one cached step each
            logits = draft.feed(seq[rows, draft.length : end + i])[:, -1]
            seq[rows, end + i] = pick(logits, gen + i, rows)[0]
        logits = target.feed(seq[rows, target.length : end + k_now])[:, -(k_now + 1) :]
        picked = [pick(logits[:, j], gen + j, rows) for j in range(k_now + 1)]
        choice = torch.stack([ids for ids, _ in picked], dim=1)  # (b, k_now + 1): the target's
        chosen_lp = torch.stack([lp for _, lp in picked], dim=1)  # greedy token after each prefix
        agree = (choice[:, :k_now] == seq[rows, end : end + k_now]).long().cumprod(dim=1)
        accepted = int(agree.sum(dim=1).min()) if k_now else 0  # the same for every row
        seq[rows, end + accepted] = choice[:, accepted]
        new = accepted + 1
        block = seq[rows, end : end + new]  # (b, new)
        stats.target_passes += rows.numel()
        stats.drafted += rows.numel() * k_now
        ended = gen + new >= limits[rows]
        if eos_id is not None:
            is_eos = block == eos_id
            hit = is_eos.any(dim=1)
            first = is_eos.float().argmax(dim=1) + 1
            produced[rows[hit]] = torch.minimum(produced[rows[hit]], gen + first[hit])
            ended |= hit
        counted = gen + torch.arange(new, device=seq.device)[None, :] < produced[rows, None]
        scores[rows] += (chosen_lp[:, :new] * counted).sum(dim=1)
        gen += new
        target.truncate(start + gen - 1)  # the last kept token is not yet fed
        draft.truncate(start + gen - 1)
        stats.tokens += int(torch.clamp(produced[rows] - (gen - new), max=new).sum())
        if ended.any():
            keep = (~ended).nonzero().squeeze(1)
            rows = rows[keep]
            target.keep(keep)
            draft.keep(keep)
    return produced, scores, stats


@torch.no_grad()
def speculative_greedy(
    model: nn.Module,
    draft: nn.Module,
    src: Tensor,
    *,
    k: int = 4,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    max_len: int | None = None,
    min_len: int = 0,
) -> tuple[DecodeOutput, SpeculationStats]:
    """Greedy translations of ``(n, s)`` right-padded sources by ``model``, ``k`` tokens at a
    time proposed by ``draft`` (an encoder-decoder with the same vocabulary and special ids).

    Returns the same :class:`DecodeOutput` as :func:`~formers.decoding.greedy_search` (its
    ``scores`` are the target's log-probabilities of the outputs) and the speculation's stats.
    """
    check_lengths(max_len_a, max_len_b, max_len, min_len)
    if k < 1:
        raise ValueError(f"k (tokens proposed per pass) must be >= 1, got {k}")
    for name in ("pad_id", "bos_id", "eos_id"):
        if getattr(draft, name) != getattr(model, name):
            raise ValueError(f"the draft's {name} differs from the model's")
    target, proposer = _Seq2Seq(model, src), _Seq2Seq(draft, src)
    limits = max_lengths(target.state.src_lengths, max_len_a, max_len_b, max_len).to(src.device)

    pick = greedy_pick(model, limits, min_len)
    n = src.size(0)
    seq = torch.full((n, 1 + int(limits.max()) + k + 1), model.pad_id, device=src.device)
    seq[:, 0] = model.bos_id
    produced, scores, stats = _speculate(target, proposer, seq, 1, limits, k, model.eos_id, pick)
    width = int(produced.max())
    tokens = seq[:, 1 : 1 + width].clone()
    columns = torch.arange(width, device=src.device)
    tokens[columns[None, :] >= produced[:, None]] = model.pad_id
    return DecodeOutput(tokens, produced, scores), stats


@torch.no_grad()
def speculative_generate(
    model: nn.Module, draft: nn.Module, prompt: list[int], *, max_new_tokens: int, k: int = 4
) -> tuple[list[int], SpeculationStats]:
    """``max_new_tokens`` greedy tokens of the decoder-only ``model`` after ``prompt`` (fewer
    when it emits its EOS), ``k`` at a time proposed by ``draft``: the tokens of
    ``generate(model, prompt, temperature=0)``. Past the context (the smaller of the two
    models'), the rest is plain :func:`~formers.inference.generate.generate`, whose window then
    slides; its passes count one per token."""
    from formers.inference.generate import generate

    if k < 1:
        raise ValueError(f"k (tokens proposed per pass) must be >= 1, got {k}")
    if not prompt:
        raise ValueError("speculative generation needs a non-empty prompt")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    room = min(max_new_tokens, min(model.context_length, draft.context_length) - len(prompt))
    out: list[int] = []
    stats = SpeculationStats()
    if room >= 1:  # the tokens that fit in the context
        out, stats = _speculate_in_context(model, draft, prompt, room, k)
    left = max_new_tokens - len(out)
    if left and (model.eos_id is None or not out or out[-1] != model.eos_id):
        rest = generate(model, prompt + out, max_new_tokens=left, temperature=0.0)
        stats.target_passes += len(rest)
        stats.tokens += len(rest)
        out += rest
    return out, stats


def _speculate_in_context(
    model: nn.Module, draft: nn.Module, prompt: list[int], new: int, k: int
) -> tuple[list[int], SpeculationStats]:
    """``new`` tokens after ``prompt`` (fewer at an EOS), all within both models' context."""
    device = next(model.parameters()).device
    seq = torch.zeros((1, len(prompt) + new + k + 1), dtype=torch.long, device=device)
    seq[0, : len(prompt)] = torch.tensor(prompt, device=device)
    limits = torch.tensor([new], device=device)

    def pick(logits: Tensor, step: int, rows: Tensor) -> tuple[Tensor, Tensor]:
        best = F.log_softmax(logits.float(), dim=-1).max(dim=-1)
        return best.indices, best.values

    with eval_mode(model, draft):
        produced, _, stats = _speculate(
            _LanguageModel(model), _LanguageModel(draft), seq, len(prompt), limits, k,
            model.eos_id, pick,
        )  # fmt: skip
    start = len(prompt)
    return seq[0, start : start + int(produced[0])].tolist(), stats
