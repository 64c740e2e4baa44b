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
instead. Batches: each row keeps what it accepted. Every pass feeds each live row a block of
the same width; the cache keeps every slot, and a row's rejected guesses (and slots past its
limit) become padding that is never attended to again, its positions counting its kept tokens
only (:meth:`~formers.nn.kv_cache.DecoderCache.extend`). So a row accepts in a batch what it
accepts alone (tested), at the price of a cache that grows by a block per pass. Finished rows
leave the batch. Deviations from the paper: greedy only; no fine-tuning of the model.

Shapes: b live rows, s source length, t target length, d model width, V vocabulary, m block.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from formers.decoding.base import DecodeOutput, check_lengths, max_lengths, pad_ids
from formers.decoding.blockwise import BlockwiseHeads, propose, train_heads
from formers.decoding.sequential import greedy_search
from formers.decoding.speculative import SpeculationStats, greedy_pick, truncate
from formers.nn.modes import eval_mode

# at most this many rows in one call of the output projection for a pass's logits and guesses
# together; above, two calls (the guesses of the last kept token only): a projection call reads
# the whole weight, which costs about as much as a few rows of products on a CPU
FUSED_ROWS = 32


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
    bar = tqdm(total=len(order), unit="sent", disable=not progress, desc="distil")
    with eval_mode(model), bar:
        for start in range(0, len(order), batch_size):
            chunk = [i for i in order[start : start + batch_size] if sources[i]]
            if chunk:
                src = pad_ids([sources[i] for i in chunk], model.pad_id, device)
                out = greedy_search(model, src, **limits)
                for i, row, n in zip(chunk, out.tokens, out.lengths.tolist(), strict=True):
                    found[i] = [t for t in row[:n].tolist() if t != model.eos_id]
            bar.update(min(batch_size, len(order) - start))
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
    progress: bool = False,
) -> list[float]:
    """Train ``heads`` on ``(source, target)`` id pairs (no BOS or EOS; the target may be the
    model's own output, :func:`greedy_targets`) with ``model`` frozen and teacher forcing: at
    each target position head ``i`` learns the token ``i + 1`` places after the model's next one
    (cross-entropy, AdamW). Returns the loss of every step (the mean over heads); ``progress``:
    a progress bar on stderr."""
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"{len(sources)} sources and {len(targets)} targets: give equal, >0")
    pairs = [i for i in range(len(sources)) if sources[i]]
    if not pairs:
        raise ValueError("every source is empty")
    device = next(model.parameters()).device
    pad, bos, eos = model.pad_id, model.bos_id, model.eos_id
    generator = torch.Generator().manual_seed(seed)

    def loss() -> Tensor:
        chosen = [pairs[i] for i in torch.randint(0, len(pairs), (batch_size,),
                                                  generator=generator).tolist()]  # fmt: skip
        src = pad_ids([sources[i] for i in chosen], pad, device)  # (b, s)
        tgt = pad_ids([[bos, *targets[i], eos] for i in chosen], pad, device)  # (b, t + 1)
        with torch.no_grad():
            mask = model.source_mask(src)
            hidden = model.decode_hidden(tgt[:, :-1], model.encode(src, mask), mask)  # (b, t, d)
        return heads.loss(hidden, model.generator, tgt[:, 1:], ignore_index=pad)

    return train_heads(model, heads, loss, steps=steps, lr=lr, progress=progress)


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
    with eval_mode(model, heads):
        state = model.init_decoding(src)
        limits = max_lengths(state.src_lengths, max_len_a, max_len_b, max_len).to(src.device)

        pick = greedy_pick(model, limits, min_len)
        n = src.size(0)
        bos = torch.full((n, 1), model.bos_id, device=src.device)
        hidden = model.decode_hidden(bos, state.memory, state.memory_mask, cache=state.cache)
        state.memory = None  # projected into the cross-attention caches
        if n == 1:  # the lean loop: Python numbers, a truncated cache, no padding
            return _one_row(model, heads, state, int(limits[0]), pick, hidden[:, -1])
        seq = torch.full((n, int(limits.max()) + heads.k), model.pad_id, device=src.device)
        return _loop(model, heads, state, seq, limits, pick, hidden[:, -1])


def _loop(model, heads, state, seq, limits, pick_rows, hidden):
    """Blocks until every row has ended, each row keeping what it accepted; ``hidden``:
    ``(n, d)``, the states after BOS. A row's rejected guesses stay in the cache as padding
    (their slots never attended to again, its positions counting its real tokens only)."""
    n, k = seq.size(0), heads.k
    device = seq.device
    rows = torch.arange(n, device=device)  # the source of each live row
    gen = torch.zeros(n, dtype=torch.long, device=device)  # tokens each live row produced
    produced = limits.clone()
    scores = torch.zeros(n, device=device)
    stats = SpeculationStats(target_passes=n)  # the pass from BOS
    first, first_lp = pick_rows(model.generator(hidden), gen, rows)  # (b,)
    guesses = propose(heads, model.generator, hidden)  # (b, k - 1)
    while True:
        # a row whose next token is its last (EOS, or at its limit) ends without another pass
        last = (first == model.eos_id) | (gen + 1 >= limits[rows])
        if last.any():
            done = rows[last]
            seq[done, gen[last]], produced[done] = first[last], gen[last] + 1
            scores[done] += first_lp[last]
            stats.tokens += done.numel()
            live = _keep(~last, state, rows, gen, first, first_lp, guesses)
            if live is None:
                break
            rows, gen, first, first_lp, guesses = live
        room = limits[rows] - gen  # (b,) >= 2: tokens each row may still produce
        m = min(k, int(room.max()))
        slots = torch.arange(m, device=device)
        block = torch.cat([first[:, None], guesses[:, : m - 1]], dim=1)  # (b, m)
        real = slots[None, :] < room[:, None]  # (b, m): no slot past a row's limit
        b = rows.numel()
        hidden = model.decode_hidden(block, None, state.memory_mask, cache=state.cache, mask=real)
        fused = b * m * k <= FUSED_ROWS
        if fused:  # the model's logits and every slot's guesses in one read of the projection
            every = _every(model, heads, hidden)  # (b, m, k, V)
            logits = every[:, :, 0]
        else:
            logits = model.generator(hidden)  # (b, m, V)
        steps = (gen[:, None] + 1 + slots[None, :]).flatten()  # (b * m,): the step each slot picks
        choice, chosen_lp = pick_rows(logits.flatten(0, 1), steps, rows.repeat_interleave(m))
        choice, chosen_lp = choice.view(b, m), chosen_lp.view(b, m)  # greedy after each prefix
        agree = (choice[:, :-1] == block[:, 1:]) & real[:, 1:]
        accepted = 1 + agree.long().cumprod(dim=1).sum(dim=1)  # (b,): each row's own
        kept = slots[None, :] < accepted[:, None]  # (b, m)
        state.cache.keys[:, -m:] &= kept  # rejected guesses become padding
        is_eos = (block == model.eos_id) & kept
        hit = is_eos.any(dim=1)  # an accepted EOS ends the row there
        count = torch.where(hit, is_eos.float().argmax(dim=1) + 1, accepted)  # (b,) new tokens
        counted = slots[None, :] < count[:, None]
        cols = gen[:, None] + slots[None, :]  # (b, m)
        seq[rows[:, None].expand(b, m)[counted], cols[counted]] = block[counted]
        lps = torch.cat([first_lp[:, None], chosen_lp[:, :-1]], dim=1)  # (b, m): of each token
        scores[rows] += (lps * counted).sum(dim=1)
        stats.tokens += int(count.sum())
        stats.target_passes += b
        stats.drafted += int(real[:, 1:].sum())
        gen = gen + count
        ended = hit | (gen >= limits[rows])
        produced[rows[ended]] = gen[ended]
        at = torch.arange(b, device=device)
        first, first_lp = choice[at, accepted - 1], chosen_lp[at, accepted - 1]
        if fused:  # the guesses after the last kept token
            guesses = every[at, accepted - 1, 1:].argmax(dim=-1)
        else:
            guesses = propose(heads, model.generator, hidden[at, accepted - 1])
        if ended.any():
            live = _keep(~ended, state, rows, gen, first, first_lp, guesses)
            if live is None:
                break
            rows, gen, first, first_lp, guesses = live
    width = int(produced.max())
    tokens = seq[:, :width].clone()
    tokens[torch.arange(width, device=device)[None, :] >= produced[:, None]] = model.pad_id
    return DecodeOutput(tokens, produced, scores), stats


def _keep(alive: Tensor, state: Any, *per_row: Tensor) -> tuple[Tensor, ...] | None:
    """The ``per_row`` tensors of the rows still ``alive`` (``(b,)``), whose decoding state keeps
    only them; ``None`` when no row is."""
    keep = alive.nonzero().squeeze(1)
    if not keep.numel():
        return None
    state.reorder(keep)
    return tuple(t[keep] for t in per_row)


def _every(model: nn.Module, heads: BlockwiseHeads, hidden: Tensor) -> Tensor:
    """``(..., m, d)`` states -> ``(..., m, k, V)``: at each slot, the model's logits and the
    heads' guesses, in one call of the output projection (its weight read once)."""
    states = torch.cat([hidden[..., None, :], heads.states(hidden)], dim=-2)  # (..., m, k, d)
    return model.generator(states)


def _one_row(model, heads, state, limit, pick, hidden) -> tuple[DecodeOutput, SpeculationStats]:
    """One source: what :func:`_loop` does, with Python numbers and a cache cut back to the kept
    tokens after each pass (no padding, so the plain causal path). ``hidden``: ``(1, d)``."""
    k, eos = heads.k, model.eos_id
    row = torch.zeros(heads.k, dtype=torch.long, device=hidden.device)  # pick's row ids
    stats = SpeculationStats(target_passes=1)  # the pass from BOS
    first, first_lp = pick(model.generator(hidden), 0, row[:1])  # (1,)
    guesses = propose(heads, model.generator, hidden)[0]  # (k - 1,)
    out: list[int] = []
    score = first_lp.new_zeros(())
    while True:
        if int(first) == eos or len(out) + 1 >= limit:  # its last token: no pass needed
            out.append(int(first))
            score = score + first_lp[0]
            stats.tokens += 1
            break
        m = min(k, limit - len(out))
        block = torch.cat([first, guesses[: m - 1]])  # (m,)
        hidden = model.decode_hidden(block[None], None, state.memory_mask, cache=state.cache)[0]
        every = _every(model, heads, hidden)  # (m, k, V)
        steps = torch.arange(len(out) + 1, len(out) + 1 + m, device=block.device)
        choice, chosen_lp = pick(every[:, 0], steps, row[:m])  # (m,): greedy after each prefix
        accepted = 1 + int((choice[:-1] == block[1:]).long().cumprod(dim=0).sum())
        new = block[:accepted].tolist()
        count = new.index(eos) + 1 if eos in new else accepted
        out += new[:count]
        score = score + first_lp[0] + chosen_lp[: count - 1].sum()
        stats.tokens += count
        stats.target_passes += 1
        stats.drafted += m - 1
        if eos in new or len(out) >= limit:  # an accepted EOS ends it (count stops there)
            break
        truncate(state.cache, 1 + len(out))  # BOS and the kept tokens
        first, first_lp = choice[accepted - 1 : accepted], chosen_lp[accepted - 1 : accepted]
        guesses = every[accepted - 1, 1:].argmax(dim=-1)
    tokens = torch.tensor([out], device=hidden.device)
    lengths = torch.tensor([len(out)], device=hidden.device)
    return DecodeOutput(tokens, lengths, score.reshape(1)), stats
