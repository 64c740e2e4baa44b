"""The speculative-decoding rows of ``runtimes.py``: trained checkpoints decoded greedily, plainly
and with a draft model proposing ``k`` tokens a pass (:mod:`formers.decoding.speculative`),
interleaved; tokens/s, the speed-up, the mean accepted block (tokens per target pass) and
whether the outputs are identical to plain greedy's.

- a language model (``--lm-target`` and ``--lm-draft``): prompts cut from the text's validation
  part, ``--lm-new-tokens`` new characters each, one prompt at a time; with
  ``--lm-blockwise-steps N``, also blockwise parallel decoding (:mod:`formers.decoding.blockwise`)
  with proposal heads for the largest ``k + 1`` trained here for ``N`` steps on the text's
  training part (the model frozen), a block of ``k + 1`` per pass (the model's token and ``k``
  guesses, as many proposals as the draft's);
- a translation model (``--mt-target`` and ``--mt-draft``): the first ``--mt-sentences`` sources
  of ``--mt-sources``, one at a time and in one batch; with ``--mt-heads FILE`` (from ``formers
  heads``), also blockwise parallel decoding (:mod:`formers.decoding.blockwise_seq2seq`), blocks
  of ``k + 1`` for each ``k`` the heads allow.
"""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from formers.decoding import greedy_search
from formers.decoding.blockwise import BlockwiseHeads, blockwise_generate, fit_heads, load_heads
from formers.decoding.blockwise_seq2seq import blockwise_greedy
from formers.decoding.speculative import speculative_generate, speculative_greedy
from formers.inference.generate import generate
from formers.inference.layout import use_inference_layout
from formers.training.checkpoint import load_model


def _timed(run: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.inference_mode():
            out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _compare(runs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, Any]]:
    """Interleaved: one round of each, ``rounds`` times; the median time and the last output."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    outs: dict[str, Any] = {}
    for k in range(rounds):
        for name in runs if k % 2 == 0 else list(runs)[::-1]:
            elapsed, outs[name] = _timed(runs[name], 1)
            times[name].append(elapsed)
    _compare.times = times  # type: ignore[attr-defined]  (per-round seconds, for the JSON)
    return {name: (statistics.median(times[name]), outs[name]) for name in runs}


def _load(directory: str) -> torch.nn.Module:
    model, tokenizer, _ = load_model(directory)
    return use_inference_layout(model), tokenizer


def language_model_rows(args: Any) -> dict[str, Any]:
    target, tokenizer = _load(args.lm_target)
    draft, _ = _load(args.lm_draft)
    text = Path(args.lm_text).read_text()
    valid = text[int(len(text) * 0.9) :]
    step = len(valid) // (args.lm_prompts + 1)
    prompts = [tokenizer.encode(valid[i * step : i * step + args.lm_prompt_chars])
               for i in range(args.lm_prompts)]  # fmt: skip
    n = args.lm_new_tokens
    runs: dict[str, Callable[[], Any]] = {
        "greedy": lambda: [generate(target, p, max_new_tokens=n, temperature=0.0) for p in prompts]
    }
    for k in args.k:
        runs[f"speculative_k{k}"] = lambda k=k: [
            speculative_generate(target, draft, p, max_new_tokens=n, k=k) for p in prompts
        ]
    heads_info = None
    if args.lm_blockwise_steps:
        heads, heads_info = _blockwise_heads(target, tokenizer, text, max(args.k) + 1, args)
        for k in args.k:
            runs[f"blockwise_k{k}"] = lambda k=k: [
                blockwise_generate(target, heads.first(k + 1), p, max_new_tokens=n) for p in prompts
            ]
    found = _compare(runs, args.rounds)
    plain_time, plain = found["greedy"]
    tokens = sum(len(o) for o in plain)
    rounds = _compare.times  # type: ignore[attr-defined]
    rows: dict[str, Any] = {"greedy": {"tokens_per_s": tokens / plain_time,
                                       "seconds_per_round": rounds["greedy"]}}  # fmt: skip
    for name, (elapsed, outs) in found.items():
        if name == "greedy":
            continue
        passes = sum(stats.target_passes for _, stats in outs)
        rows[name] = {
            "tokens_per_s": tokens / elapsed,
            "seconds_per_round": rounds[name],
            "speed_up": plain_time / elapsed,
            "tokens_per_target_pass": sum(stats.tokens for _, stats in outs) / passes,
            "identical_outputs": sum(o == p for (o, _), p in zip(outs, plain, strict=True)),
        }
    return {"target": args.lm_target, "draft": args.lm_draft, "prompts": len(prompts),
            "new_tokens": n, "parameters": {"target": target.num_parameters(),
                                            "draft": draft.num_parameters()},
            "blockwise_heads": heads_info, "rows": rows}  # fmt: skip


def _blockwise_heads(model: Any, tokenizer: Any, text: str, k: int,
                     args: Any) -> tuple[BlockwiseHeads, dict[str, Any]]:  # fmt: skip
    """Proposal heads for blocks of up to ``k``, trained on the first 90% of ``text``."""
    train = torch.tensor(tokenizer.encode(text[: int(len(text) * 0.9)]))
    heads = BlockwiseHeads(model.config.d_model, k)
    start = time.perf_counter()
    losses = fit_heads(model, heads, train, steps=args.lm_blockwise_steps, seed=args.seed)
    info = {"k": k, "steps": args.lm_blockwise_steps, "seconds": time.perf_counter() - start,
            "first_loss": losses[0], "last_loss": sum(losses[-20:]) / len(losses[-20:]),
            "parameters": sum(p.numel() for p in heads.parameters())}  # fmt: skip
    return heads.eval(), info


def translation_rows(args: Any) -> dict[str, Any]:
    target, tokenizer = _load(args.mt_target)
    draft, _ = _load(args.mt_draft)
    with gzip.open(args.mt_sources, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f][: args.mt_sentences]
    ids = [tokenizer.encode(line) for line in lines]
    width = max(map(len, ids))
    batch = torch.tensor([row + [target.pad_id] * (width - len(row)) for row in ids])
    ones = [torch.tensor([row]) for row in ids]
    result: dict[str, Any] = {"target": args.mt_target, "draft": args.mt_draft,
                              "heads": args.mt_heads, "sentences": len(lines)}  # fmt: skip
    heads = None
    if args.mt_heads:
        heads = load_heads(args.mt_heads, target.config.d_model, "encoder-decoder")
        result["heads_k"] = heads.k
    result["rows"] = {}
    for label, batches in (("batch1", ones), (f"batch{len(lines)}", [batch])):
        runs: dict[str, Callable[[], Any]] = {
            "greedy": lambda batches=batches: [greedy_search(target, b) for b in batches]
        }
        for k in args.k:
            runs[f"speculative_k{k}"] = lambda k=k, batches=batches: [
                speculative_greedy(target, draft, b, k=k) for b in batches
            ]
        for k in args.k if heads is not None else ():
            if k + 1 <= heads.k:
                runs[f"blockwise_k{k}"] = lambda k=k, batches=batches: [
                    blockwise_greedy(target, heads.first(k + 1), b) for b in batches
                ]
        found = _compare(runs, args.rounds)
        plain_time, plain = found["greedy"]
        tokens = sum(int(o.lengths.sum()) for o in plain)
        rows: dict[str, Any] = {"greedy": {"tokens_per_s": tokens / plain_time}}
        for name, (elapsed, outs) in found.items():
            if name == "greedy":
                continue
            same = sum(
                torch.equal(o.tokens, p.tokens) for (o, _), p in zip(outs, plain, strict=True)
            )
            passes = sum(stats.target_passes for _, stats in outs)
            rows[name] = {
                "tokens_per_s": tokens / elapsed,
                "speed_up": plain_time / elapsed,
                "tokens_per_target_pass": sum(stats.tokens for _, stats in outs) / passes,
                "identical_batches": f"{same} of {len(outs)}",
            }
        result["rows"][label] = rows
    return result
