"""Blockwise parallel decoding for encoder-decoders (Stern, Shazeer and Uszkoreit 2018, arXiv
1811.03115, whose experiments are translation): greedy translations, a block of up to ``k``
tokens checked per pass of the decoder.

The heads are :class:`~formers.decoding.blockwise.BlockwiseHeads` on the decoder's last hidden
states (the paper's frozen setting: only the heads are trained, :func:`fit_translation_heads`).
Each pass feeds a block: the model's own greedy token, then the heads' ``k - 1`` guesses. The
pass gives the model's greedy choice after every prefix of the block; the longest run of guesses
that match those choices is accepted, and the state at the last accepted token yields the next
block. Every accepted token is the one :func:`~formers.decoding.greedy_search` picks, with its
rules (no padding or BOS, no EOS before ``min_len``, EOS forced at the limit): the output is
greedy search's (tested in float64; in float32 a pass over several positions may round a near-tie
differently from single steps).

Training targets: the paper distils its heads on the model's own greedy outputs (sequence-level
knowledge distillation); :func:`greedy_targets` makes them, and the references can be used
instead. Batches: as in :mod:`formers.decoding.speculative`, the rows keep the same number of
tokens each pass (the fewest any live row accepted), so the caches stay rectangular; finished
rows leave the batch. Deviations from the paper: greedy only; no fine-tuning of the model.

Shapes: b live rows, s source length, t target length, d model width, V vocabulary, m block.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.decoding.base import DecodeOutput, check_lengths, constrain, max_lengths
from formers.decoding.blockwise import BlockwiseHeads, frozen, propose, train_step
from formers.decoding.sequential import greedy_search
from formers.decoding.speculative import SpeculationStats, truncate


def _padded(rows: list[list[int]], pad_id: int, device: torch.device) -> Tensor:
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out.to(device)


@torch.no_grad()
def greedy_targets(
    model: nn.Module,
    sources: list[list[int]],
    *,
    batch_size: int = 64,
    progress: bool = False,
    **limits: Any,
) -> list[list[int]]:
    """The model's greedy translations of ``sources`` (ids, no EOS), in their order:
    distillation targets for :func:`fit_translation_heads`. ``limits``: as for
    :func:`~formers.decoding.greedy_search`; ``progress``: a progress bar on stderr."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # batches of like length
    found: list[list[int]] = [[] for _ in sources]  # an empty source keeps an empty target
    was = model.training
    model.eval()
    try:
        with tqdm(total=len(order), unit="sent", disable=not progress, desc="distil") as bar:
            for start in range(0, len(order), batch_size):
                chunk = [i for i in order[start : start + batch_size] if sources[i]]
                if chunk:
                    src = _padded([sources[i] for i in chunk], model.pad_id, device)
                    out = greedy_search(model, src, **limits)
                    for i, row, n in zip(chunk, out.tokens, out.lengths.tolist(), strict=True):
                        found[i] = [t for t in row[:n].tolist() if t != model.eos_id]
                bar.update(min(batch_size, len(order) - start))
    finally:
        model.train(was)
    return found


def fit_translation_heads(
    model: nn.Module,
    heads: BlockwiseHeads,
    sources: list[list[int]],
    targets: list[list[int]],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``heads`` on ``(source, target)`` id pairs (no BOS or EOS; the target may be the
    model's own output, :func:`greedy_targets`) with ``model`` frozen and teacher forcing: at
    each target position head ``i`` learns the token ``i + 1`` places after the model's next one
    (cross-entropy, AdamW). Returns the loss of every step (the mean over heads)."""
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"{len(sources)} sources and {len(targets)} targets: give equal, >0")
    pairs = [i for i in range(len(sources)) if sources[i]]
    if not pairs:
        raise ValueError("every source is empty")
    device = next(model.parameters()).device
    pad, bos, eos = model.pad_id, model.bos_id, model.eos_id
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr)

    def loss() -> Tensor:
        chosen = [pairs[i] for i in torch.randint(0, len(pairs), (batch_size,),
                                                  generator=generator).tolist()]  # fmt: skip
        src = _padded([sources[i] for i in chosen], pad, device)  # (b, s)
        tgt = _padded([[bos, *targets[i], eos] for i in chosen], pad, device)  # (b, t + 1)
        with torch.no_grad():
            mask = model.source_mask(src)
            hidden = model.decode_hidden(tgt[:, :-1], model.encode(src, mask), mask)  # (b, t, d)
        return heads.loss(hidden, model.generator, tgt[:, 1:], ignore_index=pad)

    with frozen(model):
        return [train_step(optimizer, heads, loss()) for _ in range(steps)]


@torch.no_grad()
def blockwise_greedy(
    model: nn.Module,
    heads: BlockwiseHeads,
    src: Tensor,
    *,
    max_len_a: float = 1.0,
    max_len_b: int = 50,
    max_len: int | None = None,
    min_len: int = 0,
) -> tuple[DecodeOutput, SpeculationStats]:
    """Greedy translations of ``(n, s)`` right-padded sources by ``model`` (an encoder-decoder
    with ``decode_hidden``), a block of up to ``heads.k`` tokens per decoder pass.

    Returns greedy search's :class:`DecodeOutput` (``scores``: the log-probabilities of the
    outputs) and the stats (``target_passes`` counts the first pass, from BOS, too: plain greedy
    search makes one pass per token).
    """
    check_lengths(max_len_a, max_len_b, max_len, min_len)
    was = model.training, heads.training
    model.eval(), heads.eval()
    try:
        state = model.init_decoding(src)
        limits = max_lengths(state.src_lengths, max_len_a, max_len_b, max_len).to(src.device)

        def pick(logits: Tensor, step: int, rows: Tensor) -> tuple[Tensor, Tensor]:
            lprobs = F.log_softmax(logits.float(), dim=-1)
            constrain(
                lprobs, step, limits[rows], pad_id=model.pad_id, bos_id=model.bos_id,
                eos_id=model.eos_id, min_len=min_len,
            )  # fmt: skip
            best = lprobs.max(dim=-1)
            return best.indices, best.values

        n = src.size(0)
        seq = torch.full((n, int(limits.max()) + heads.k), model.pad_id, device=src.device)
        bos = torch.full((n, 1), model.bos_id, device=src.device)
        hidden = model.decode_hidden(bos, state.memory, state.memory_mask, cache=state.cache)
        state.memory = None  # projected into the cross-attention caches
        return _loop(model, heads, state, seq, limits, pick, hidden[:, -1])
    finally:
        model.train(was[0]), heads.train(was[1])


def _loop(model, heads, state, seq, limits, pick, hidden) -> tuple[DecodeOutput, SpeculationStats]:
    """Blocks until every row has ended; ``hidden``: ``(n, d)``, the states after BOS."""
    n = seq.size(0)
    rows = torch.arange(n, device=seq.device)  # the source of each live row
    produced = limits.clone()  # tokens per row (until an EOS ends it sooner)
    scores = torch.zeros(n, device=seq.device)
    stats = SpeculationStats(target_passes=n)  # the pass from BOS
    first, first_lp = pick(model.generator(hidden), 0, rows)  # (b,): the model's next tokens
    guesses = propose(heads, model.generator, hidden)  # (b, k - 1)
    gen = 0  # tokens produced so far by every live row
    while True:
        # a row whose next token is its last (EOS, or at its limit) ends without another pass
        last = (first == model.eos_id) | (gen + 1 >= limits[rows])
        if last.any():
            done = rows[last]
            seq[done, gen], produced[done] = first[last], gen + 1
            scores[done] += first_lp[last]
            stats.tokens += done.numel()
            keep = (~last).nonzero().squeeze(1)
            rows, first, first_lp, guesses = rows[keep], first[keep], first_lp[keep], guesses[keep]
            if not rows.numel():
                break
            state.reorder(keep)
        m = min(heads.k, int(limits[rows].max()) - gen)  # >= 2: stay within the limits
        block = torch.cat([first[:, None], guesses[:, : m - 1]], dim=1)  # (b, m)
        hidden = model.decode_hidden(block, None, state.memory_mask, cache=state.cache)
        picked = [pick(model.generator(hidden[:, j]), gen + 1 + j, rows) for j in range(m)]
        choice = torch.stack([ids for ids, _ in picked], dim=1)  # (b, m): the greedy token
        chosen_lp = torch.stack([lp for _, lp in picked], dim=1)  # after each prefix of the block
        agree = (choice[:, :-1] == block[:, 1:]).long().cumprod(dim=1)
        accepted = 1 + int(agree.sum(dim=1).min())  # the same for every row
        lps = torch.cat([first_lp[:, None], chosen_lp[:, : accepted - 1]], dim=1)  # (b, accepted)
        seq[rows, gen : gen + accepted] = block[:, :accepted]
        stats.target_passes += rows.numel()
        stats.drafted += rows.numel() * (m - 1)
        # an accepted guess may be an EOS, or reach a row's limit (whose EOS is then forced)
        ended = gen + accepted >= limits[rows]
        is_eos = block[:, :accepted] == model.eos_id
        hit = is_eos.any(dim=1)
        at = gen + is_eos.float().argmax(dim=1) + 1
        produced[rows[hit]] = torch.minimum(produced[rows[hit]], at[hit])
        ended |= hit
        counted = gen + torch.arange(accepted, device=seq.device)[None, :] < produced[rows, None]
        scores[rows] += (lps * counted).sum(dim=1)
        stats.tokens += int(counted.sum())
        gen += accepted
        truncate(state.cache, 1 + gen)  # BOS and the kept tokens
        first, first_lp = choice[:, accepted - 1], chosen_lp[:, accepted - 1]
        guesses = propose(heads, model.generator, hidden[:, accepted - 1])  # after the last kept
        if ended.any():
            keep = (~ended).nonzero().squeeze(1)
            rows, first, first_lp, guesses = rows[keep], first[keep], first_lp[keep], guesses[keep]
            if not rows.numel():
                break
            state.reorder(keep)
    width = int(produced.max())
    tokens = seq[:, :width].clone()
    tokens[torch.arange(width, device=seq.device)[None, :] >= produced[:, None]] = model.pad_id
    return DecodeOutput(tokens, produced, scores), stats
