"""``formers heads``: train blockwise parallel decoding's proposal heads for a checkpoint, the
model frozen (:mod:`formers.decoding.blockwise`), for ``formers generate --temperature 0 --heads
FILE`` or ``formers translate --beam 1 --heads FILE``.

A language model's heads learn from ``--text`` (read as the ``lm`` task reads it). A translation
model's learn from ``--source`` lines: by default on the model's own greedy translations of
them (the paper's distillation: the heads learn what the model will say), or on the references
of ``--target``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from formers.cli.threads import add_threads_option, set_threads


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "heads",
        help="train blockwise-decoding proposal heads for a language or translation model "
        "(the model frozen)",
        description=__doc__,
    )  # fmt: skip
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--text", metavar="FILE", help="a language model's training text (or .gz)")
    p.add_argument(
        "--source", metavar="FILE", help="a translation model's source sentences (or .gz)"
    )
    p.add_argument(
        "--target", metavar="FILE",
        help="their references (default: the model's own greedy translations)",
    )  # fmt: skip
    p.add_argument(
        "--sentences", type=int, metavar="N", help="use the first N sentences (default: all)"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the heads (.safetensors)")
    p.add_argument("--k", type=int, default=4, help="block size: the model's token + k-1 guesses")
    p.add_argument("--steps", type=int, default=1000, help="training steps (1000)")
    p.add_argument("--batch-size", type=int, help="windows (16) or sentence pairs (64) per step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    add_threads_option(p)
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> Path:
    if not 2 <= args.k <= 16:
        raise ValueError(f"--k must be an integer in [2, 16], got {args.k}")
    if args.steps < 1 or (args.batch_size is not None and args.batch_size < 1) or not args.lr > 0:
        raise ValueError("--steps and --batch-size must be >= 1 and --lr > 0")
    if args.sentences is not None and args.sentences < 1:
        raise ValueError(f"--sentences must be >= 1, got {args.sentences}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"--out {out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: its parent folder does not exist")
    return out


def _kind(args: argparse.Namespace) -> str:
    """The checkpoint's kind, after checking that the data options fit it."""
    from formers.cli.families import checkpoint_family

    _, family = checkpoint_family(args.checkpoint)
    if family.kind == "decoder-only":
        if args.text is None or args.source or args.target or args.sentences:
            raise ValueError(
                f"{args.checkpoint} holds a language model: give --text (not --source, "
                "--target or --sentences)"
            )
    elif family.kind == "encoder-decoder":
        if args.source is None or args.text:
            raise ValueError(
                f"{args.checkpoint} holds a translation model: give --source (and optionally "
                "--target), not --text"
            )
    else:
        raise ValueError(
            f"{args.checkpoint} holds {family.what} ({family.name!r}), which does not decode: "
            "formers heads needs a language or translation model"
        )
    return family.kind


def run(args: argparse.Namespace) -> int:
    out = _check(args)
    set_threads(args.threads)
    kind = _kind(args)
    from formers.decoding.blockwise import BlockwiseHeads, require_hidden_states, save_heads
    from formers.training.checkpoint import load_model, require_tokenizer

    model, tokenizer, _ = load_model(args.checkpoint, device="cpu")
    require_tokenizer(tokenizer, args.checkpoint, "reading the training text")
    require_hidden_states(model, f"formers heads on {args.checkpoint}")
    heads = BlockwiseHeads(model.config.d_model, args.k)
    start = time.perf_counter()
    fit = _fit_language_model if kind == "decoder-only" else _fit_translation
    losses, what = fit(args, model, tokenizer, heads)
    save_heads(heads, out, kind=kind)
    last = losses[-min(20, len(losses)) :]
    print(
        f"heads for blocks of {args.k}, {what}: loss {losses[0]:.3f} -> "
        f"{sum(last) / len(last):.3f} in {args.steps} steps "
        f"({time.perf_counter() - start:.0f} s); wrote {out}",
        file=sys.stderr,
    )
    return 0


def _fit_language_model(args: argparse.Namespace, model: Any, tokenizer: Any,
                        heads: Any) -> tuple[list[float], str]:  # fmt: skip
    from formers.data.text import read_text
    from formers.decoding.blockwise import fit_heads
    from formers.inference.perplexity import encode_text

    tokens = encode_text(tokenizer, read_text(args.text))
    losses = fit_heads(model, heads, tokens, steps=args.steps, batch_size=args.batch_size or 16,
                       lr=args.lr, seed=args.seed, progress=sys.stderr.isatty())  # fmt: skip
    return losses, f"on {tokens.numel()} tokens"


def _fit_translation(args: argparse.Namespace, model: Any, tokenizer: Any,
                     heads: Any) -> tuple[list[float], str]:  # fmt: skip
    from formers.cli.textio import read_lines
    from formers.decoding.blockwise_seq2seq import fit_translation_heads, greedy_targets
    from formers.inference.translate import output_limit

    sources = [tokenizer.encode(line) for line in read_lines(args.source)][: args.sentences]
    if args.target is not None:
        targets = [tokenizer.encode(line) for line in read_lines(args.target)][: args.sentences]
        if len(targets) != len(sources):
            raise ValueError(f"--target has {len(targets)} lines where --source has {len(sources)}")
        what = f"on {len(sources)} references"
    else:
        print(f"formers heads: translating {len(sources)} sentences (the targets)",
              file=sys.stderr)  # fmt: skip
        targets = greedy_targets(model, sources, max_len=output_limit(model),
                                 progress=sys.stderr.isatty())  # fmt: skip
        what = f"on the model's translations of {len(sources)} sentences"
    losses = fit_translation_heads(model, heads, sources, targets, steps=args.steps,
                                   batch_size=args.batch_size or 64, lr=args.lr,
                                   seed=args.seed, progress=sys.stderr.isatty())  # fmt: skip
    return losses, what
