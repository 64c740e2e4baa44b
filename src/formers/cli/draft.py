"""``--draft DIR`` and ``--draft-k K`` of ``formers translate`` and ``formers generate``:
speculative greedy decoding (:mod:`formers.decoding.speculative`) with a smaller checkpoint
trained on the same data; and ``--heads FILE`` of both: blockwise parallel decoding
(:mod:`formers.decoding.blockwise` and :mod:`formers.decoding.blockwise_seq2seq`) with proposal
heads from ``formers heads``. The output is the model's own greedy output; only the speed
changes."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn


def add_draft_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--draft", metavar="DIR",
        help="a smaller checkpoint with the same tokenizer that proposes tokens for the model to "
        "check several at a time (greedy only; the output is unchanged)",
    )  # fmt: skip
    parser.add_argument(
        "--draft-k", type=int, default=4, metavar="K", help="tokens the draft proposes (4)"
    )


def add_heads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heads", metavar="FILE",
        help="blockwise-decoding proposal heads from 'formers heads': several tokens checked "
        "per pass (greedy only; the output is unchanged; faster or not depending on the model, "
        "see the README)",
    )  # fmt: skip


def check_draft_options(args: argparse.Namespace, *, greedy: bool, how: str) -> None:
    """Refuse, before loading, a draft or heads with sampling or beams, both at once, or a bad
    ``--draft-k``."""
    heads = getattr(args, "heads", None)
    if heads is not None:
        if args.draft is not None:
            raise ValueError("give --draft or --heads, not both")
        if not greedy:
            raise ValueError(f"--heads decodes greedily: use {how}")
    if args.draft is None:
        return
    if not greedy:
        raise ValueError(f"--draft decodes greedily: use {how}")
    if not 1 <= args.draft_k <= 16:
        raise ValueError(f"--draft-k must be an integer in [1, 16], got {args.draft_k}")


def load_draft(
    args: argparse.Namespace, tokenizer: Any, kind: str, device: torch.device
) -> nn.Module | None:
    """The draft model, checked to share the model's tokenizer (``None`` without ``--draft``)."""
    if args.draft is None:
        return None
    from formers.cli.families import require_architecture
    from formers.inference.layout import use_inference_layout
    from formers.training.checkpoint import load_model

    require_architecture(args.draft, kind, "--draft")
    draft, draft_tokenizer, _ = load_model(args.draft, device=device)
    size = tokenizer.vocab_size
    same = draft_tokenizer is not None and draft_tokenizer.vocab_size == size
    if not same or list(draft_tokenizer.pieces(range(size))) != list(tokenizer.pieces(range(size))):
        raise ValueError(
            f"--draft {args.draft}: its tokenizer is not the model's; a draft must be trained "
            "with the same tokenizer"
        )
    return use_inference_layout(draft)


def load_blockwise_heads(args: argparse.Namespace, model: nn.Module, kind: str) -> nn.Module | None:
    """The ``--heads`` file, checked to fit ``model``, of ``kind`` (``"decoder-only"`` or
    ``"encoder-decoder"``) (``None`` without ``--heads``)."""
    if getattr(args, "heads", None) is None:
        return None
    from formers.decoding.blockwise import load_heads, require_hidden_states

    require_hidden_states(model, "--heads")
    heads = load_heads(args.heads, d_model=model.config.d_model, kind=kind)
    return heads.to(next(model.parameters()).device)
