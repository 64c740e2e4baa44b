"""``formers generate``: continue a prompt with a trained language model (a ``gpt`` checkpoint).

The prompt is printed first, then the continuation as it is produced, token by token (as
nanoGPT's ``sample.py`` prints its samples); ``--no-stream`` prints it all at the end instead.
The text of each new token is found by :class:`formers.inference.detokenize.IncrementalDecoder`,
so that words made of several pieces and characters made of several bytes come out right.
``--temperature 0`` is greedy decoding; ``--seed`` makes sampling reproducible.
"""

from __future__ import annotations

import argparse
import sys

from formers.cli.draft import (
    add_draft_options,
    add_heads_option,
    check_draft_options,
    load_blockwise_heads,
    load_draft,
)
from formers.cli.families import require_architecture
from formers.cli.threads import add_threads_option, set_threads
from formers.decoding.options import RANGES
from formers.inference.detokenize import IncrementalDecoder
from formers.inference.generate import (
    check_generate_options,
    check_memory_option,
    generate_stream,
)
from formers.inference.int8 import add_int8_option, decoding_device, prepare_for_decoding

# positions per layer: as many as --max-new-tokens may add
MAX_MEMORY = int(RANGES["max_new_tokens"].high)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "generate", help="continue a prompt with a trained language model (gpt checkpoint)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument(
        "--prompt", default="", help="text to continue (default: empty, starting from BOS)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=200, metavar="N", help="tokens to generate (200)"
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature; 0: greedy (1.0)"
    )
    p.add_argument(
        "--top-k", type=int, default=0, metavar="K", help="sample from the K best; 0: all (0)"
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling; 1: off (1.0)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    p.add_argument(
        "--memory", type=int, default=None, metavar="M",
        help="positions each layer remembers (models with segment memory, transformer_xl; "
        "default: the trained memory)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_int8_option(p)
    add_draft_options(p)
    add_heads_option(p)
    add_threads_option(p)
    p.add_argument(
        "--no-stream", action="store_true", help="print the text at the end, not token by token"
    )
    p.set_defaults(run=run)


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad sampling options before the checkpoint is loaded."""
    check_generate_options(
        args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, cli=True
    )
    if args.memory is not None and not 1 <= args.memory <= MAX_MEMORY:
        raise ValueError(f"--memory must be in [1, {MAX_MEMORY:,}], got {args.memory}")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    check_draft_options(args, greedy=args.temperature == 0, how="--temperature 0")
    device = decoding_device(args.device, int8=args.int8)
    set_threads(args.threads)

    require_architecture(args.checkpoint, "decoder-only", "formers generate")

    # the trainer's heavier imports: lazily
    from formers.training.checkpoint import load_model, require_tokenizer

    model, tokenizer, _ = load_model(args.checkpoint, device=device)
    model = prepare_for_decoding(model, int8=args.int8)
    require_tokenizer(tokenizer, args.checkpoint, "generating text")
    check_memory_option(model, args.memory)
    prompt = tokenizer.encode(args.prompt)
    if not prompt and model.bos_id is None:
        raise ValueError(
            "the prompt is empty and this model has no BOS token to start from; give a --prompt"
        )
    draft = load_draft(args, tokenizer, "decoder-only", device)
    heads = load_blockwise_heads(args, model, "decoder-only")
    if heads is not None:
        from formers.decoding.blockwise import blockwise_generate

        tokens, _ = blockwise_generate(model, heads, prompt, max_new_tokens=args.max_new_tokens)
        args.no_stream = True
    elif draft is not None:
        from formers.decoding.speculative import speculative_generate

        tokens, _ = speculative_generate(
            model, draft, prompt, max_new_tokens=args.max_new_tokens, k=args.draft_k
        )
        args.no_stream = True
    # generate_stream checks the options and the prompt's length now, before anything is printed
    else:
        tokens = generate_stream(
            model, prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            top_k=args.top_k, top_p=args.top_p, seed=args.seed, memory=args.memory,
        )  # fmt: skip
    decoder = IncrementalDecoder(tokenizer, prompt)
    out = sys.stdout
    if args.no_stream:
        out.write(f"{args.prompt}{''.join(decoder.pieces(tokens))}\n")
    else:
        out.write(args.prompt)
        out.flush()
        for text in decoder.pieces(tokens):
            out.write(text)
            out.flush()
        out.write("\n")
    out.flush()
    return 0
