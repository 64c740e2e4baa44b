"""``formers translate``: translate a file (or stdin) with a trained checkpoint.

Lines are translated in batches of similar length and written in the input order, one
translation a line; with ``--nbest K`` (K > 1) each sentence gets K lines
``index<TAB>score<TAB>text``, best first, ``index`` counting input lines from 0 (as fairseq's
``H-<index>`` lines). A progress bar goes to stderr when it is a terminal.

Decoding options not given on the command line come from the checkpoint's recipe (the
``[decode]`` table that training saves in ``config.json``), else from :class:`DecodeConfig`'s
defaults (the paper's beam 4 and alpha 0.6); a line on stderr says which came from the recipe.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from formers.cli.draft import (
    add_draft_options,
    add_heads_option,
    check_draft_options,
    load_blockwise_heads,
    load_draft,
)
from formers.cli.families import require_architecture
from formers.cli.textio import check_output, read_lines, write_lines
from formers.cli.threads import add_threads_option, set_threads
from formers.decoding import LENGTH_PENALTIES
from formers.inference.int8 import add_int8_option, decoding_device, prepare_for_decoding
from formers.inference.translate import (
    Translation,
    check_translate_options,
    output_limit,
    translate,
)
from formers.training.config import recipe_decode

DEFAULTS = recipe_decode({})  # a checkpoint without a recipe: DecodeConfig's defaults


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate", help="translate sentences (one a line) with a trained checkpoint"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--input", metavar="FILE", help="source sentences, UTF-8 (default: stdin)")
    p.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    # None: the checkpoint's [decode] value, else DEFAULTS (shown in the help)
    d = DEFAULTS
    p.add_argument("--beam", type=int, metavar="K", help=f"beam size; 1: greedy ({d['beam']})")
    p.add_argument("--lenpen", type=float, help=f"length penalty alpha ({d['lenpen']})")
    p.add_argument(
        "--lenpen-form", metavar="{" + ",".join(LENGTH_PENALTIES) + "}",
        help="gnmt: divide scores by ((5 + n) / 6) ** alpha (GNMT, as the paper); power: by "
        f"n ** alpha (fairseq's --lenpen, Hugging Face's length_penalty) ({d['lenpen_form']})",
    )  # fmt: skip
    p.add_argument("--nbest", type=int, default=1, metavar="N", help="outputs per line (1)")
    p.add_argument(
        "--max-tokens", type=int, metavar="N", help=f"source tokens a batch ({d['max_tokens']})"
    )
    p.add_argument(
        "--max-len-a", type=float, metavar="A", help=f"see --max-len-b ({d['max_len_a']})"
    )
    p.add_argument(
        "--max-len-b", type=int, metavar="B",
        help=f"outputs of <= A * len + B tokens ({d['max_len_b']})",
    )  # fmt: skip
    p.epilog = (
        "Decoding options not given here come from the checkpoint's recipe ([decode] in its "
        "config.json) when it has one; the values in parentheses are the defaults otherwise."
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_int8_option(p)
    add_draft_options(p)
    add_heads_option(p)
    add_threads_option(p)
    p.set_defaults(run=run)


def format_nbest(results: list[list[Translation]]) -> list[str]:
    """``index<TAB>score<TAB>text`` lines, every hypothesis of every sentence."""
    return [
        f"{index}\t{hyp.score:.4f}\t{_one_line(hyp.text)}"
        for index, hyps in enumerate(results)
        for hyp in hyps
    ]


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())  # the output format is one translation a line


def decode_options(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """The decoding options: each flag given, else the checkpoint ``config``'s recipe value,
    else the default (see :func:`~formers.training.config.recipe_decode`)."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    return {**recipe_decode(config), **given}


def run(args: argparse.Namespace) -> int:
    given = decode_options(args, {})  # the flags, over the defaults
    check_translate_options(nbest=args.nbest, cli=True, **given)  # first
    check_output(args.output)  # before decoding, not after
    check_draft_options(args, greedy=given["beam"] == 1, how="--beam 1")
    device = decoding_device(args.device, int8=args.int8)
    set_threads(args.threads)
    require_architecture(args.checkpoint, "encoder-decoder", "formers translate")  # before reading
    sentences = read_lines(args.input)
    if not sentences:
        raise ValueError(f"no sentences to translate in {args.input or '<stdin>'}")

    # the trainer's heavier imports: lazily
    from formers.training.checkpoint import load_model, require_tokenizer

    model, tokenizer, config = load_model(args.checkpoint, device=device)
    model = prepare_for_decoding(model, int8=args.int8)
    require_tokenizer(tokenizer, args.checkpoint, "translating text")
    recipe = config.get("decode") or {}
    options = decode_options(args, config)
    from_recipe = [k for k in DEFAULTS if k in recipe and getattr(args, k) is None]
    if from_recipe:
        used = ", ".join(f"{k}={options[k]}" for k in from_recipe)
        print(f"formers translate: from the checkpoint's [decode]: {used}", file=sys.stderr)
    check_translate_options(nbest=args.nbest, cli=True, **options)
    check_draft_options(args, greedy=options["beam"] == 1, how="--beam 1")  # the recipe's too
    draft = load_draft(args, tokenizer, "encoder-decoder", device)
    heads = load_blockwise_heads(args, model, "encoder-decoder")
    results = translate(
        model, tokenizer, sentences, nbest=args.nbest, device=device,
        progress=sys.stderr.isatty(), draft=draft, draft_k=args.draft_k, heads=heads, **options,
    )  # fmt: skip
    if args.nbest > 1:
        write_lines(format_nbest(results), args.output)
    else:
        write_lines((_one_line(hyps[0].text) for hyps in results), args.output)
    cut = [i + 1 for i, hyps in enumerate(results) if hyps[0].truncated]
    if cut:  # a translation cut at the limit looks finished: say so
        lines = ", ".join(map(str, cut[:10])) + (" ..." if len(cut) > 10 else "")
        limit = f"{options['max_len_a']} x source length + {options['max_len_b']}"
        positions = output_limit(model)
        within = f", at most the model's {positions} positions" if positions else ""
        print(
            f"formers translate: warning: {len(cut)} of {len(results)} translations reached the "
            f"length limit ({limit}{within}) and may be cut short: lines {lines}",
            file=sys.stderr,
        )
    return 0
