"""``formers heads``: train blockwise parallel decoding's proposal heads for a language model
checkpoint (:mod:`formers.decoding.blockwise`; the model is frozen), for ``formers generate
--temperature 0 --heads FILE``. The text is read as the ``lm`` task reads it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from formers.cli.families import require_architecture
from formers.cli.threads import add_threads_option, set_threads


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "heads",
        help="train blockwise-decoding proposal heads for a language model (the model frozen)",
        description=__doc__,
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--text", required=True, metavar="FILE", help="training text (plain or .gz)")
    p.add_argument("--out", required=True, metavar="FILE", help="the heads (.safetensors)")
    p.add_argument("--k", type=int, default=4, help="block size: the model's token + k-1 guesses")
    p.add_argument("--steps", type=int, default=1000, help="training steps (1000)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step (16)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    add_threads_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 2 <= args.k <= 16:
        raise ValueError(f"--k must be an integer in [2, 16], got {args.k}")
    if args.steps < 1 or args.batch_size < 1 or not args.lr > 0:
        raise ValueError("--steps and --batch-size must be >= 1 and --lr > 0")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"--out {out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: its parent folder does not exist")
    set_threads(args.threads)
    require_architecture(args.checkpoint, "decoder-only", "formers heads")
    from formers.data.text import read_text
    from formers.decoding.blockwise import (
        BlockwiseHeads,
        fit_heads,
        require_hidden_states,
        save_heads,
    )
    from formers.inference.perplexity import encode_text
    from formers.training.checkpoint import load_model, require_tokenizer

    model, tokenizer, _ = load_model(args.checkpoint, device="cpu")
    require_tokenizer(tokenizer, args.checkpoint, "reading the text")
    require_hidden_states(model, f"formers heads on {args.checkpoint}")
    tokens = encode_text(tokenizer, read_text(args.text))
    heads = BlockwiseHeads(model.config.d_model, args.k)
    start = time.perf_counter()
    losses = fit_heads(model, heads, tokens, steps=args.steps, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed)  # fmt: skip
    save_heads(heads, out)
    last = losses[-min(20, len(losses)) :]
    print(
        f"heads for blocks of {args.k}: loss {losses[0]:.3f} -> {sum(last) / len(last):.3f} in "
        f"{args.steps} steps ({time.perf_counter() - start:.0f} s); wrote {out}",
        file=sys.stderr,
    )
    return 0
