"""``formers perplexity``: how well a language model checkpoint predicts a text.

The text is read as the ``lm`` task reads it (:func:`formers.inference.perplexity.encode_text`);
``--valid-fraction F`` keeps its last ``F`` (the task's ``valid_fraction`` split, so that a
recipe's validation text is scored again). A GPT reads consecutive windows of its context; a
model with segment memory (Transformer-XL) reads the text as one stream of ``--segment`` tokens
with each ``--memory`` given (several make one row each, the same weights). One line per row,
and ``--json`` one JSON object per row.
"""

from __future__ import annotations

import argparse
import json
import time

from formers.cli.families import require_architecture
from formers.cli.threads import add_threads_option, set_threads
from formers.device import resolve_device


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "perplexity", help="cross-entropy and perplexity of a language model on a text"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--text", required=True, metavar="FILE", help="the text (plain or .gz)")
    p.add_argument(
        "--valid-fraction", type=float, default=0.0, metavar="F",
        help="score only the text's last F (the lm task's valid_fraction split); 0: all of it",
    )  # fmt: skip
    p.add_argument(
        "--memory", type=int, nargs="+", default=None, metavar="M",
        help="memory lengths to evaluate with (models with segment memory; default: the "
        "trained one)",
    )  # fmt: skip
    p.add_argument(
        "--segment", type=int, default=None, metavar="L",
        help="segment length (models with segment memory; default: the trained one)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=12, metavar="B", help="windows per batch (GPT; 12)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_threads_option(p)
    p.add_argument("--json", action="store_true", help="print each row as a JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.valid_fraction < 1.0:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    for memory in args.memory or ():
        if memory < 0:
            raise ValueError(f"--memory must be >= 0 (0: every segment alone), got {memory}")
    if args.segment is not None and args.segment < 1:
        raise ValueError(f"--segment must be >= 1, got {args.segment}")
    device = resolve_device(args.device)
    set_threads(args.threads)
    require_architecture(args.checkpoint, "decoder-only", "formers perplexity")

    from formers.data.text import read_text, split_text
    from formers.inference.perplexity import encode_text, stream_loss, window_loss
    from formers.nn.recurrent_lm import RecurrentLM
    from formers.training.checkpoint import load_model, require_tokenizer

    text = read_text(args.text)
    if args.valid_fraction:
        text = split_text(text, args.valid_fraction)[1]
    model, tokenizer, _ = load_model(args.checkpoint, device=device)
    require_tokenizer(tokenizer, args.checkpoint, "scoring a text")
    recurrent = isinstance(model, RecurrentLM)
    if not recurrent and (args.memory is not None or args.segment is not None):
        raise ValueError(
            "--memory and --segment are for models with segment memory (transformer_xl); "
            f"this checkpoint's model reads windows of its context ({model.context_length})"
        )
    ids = encode_text(tokenizer, text)
    if len(ids) < 2:
        raise ValueError(f"{args.text} has {len(ids)} token(s): nothing to predict")
    rows = []
    if recurrent:
        segment = args.segment or model.segment_length
        for memory in args.memory or [model.memory_length]:
            start = time.perf_counter()
            result = stream_loss(model, ids, segment=segment, memory=memory, device=device)
            rows.append({**result, "segment": segment, "memory": memory,
                         "seconds": round(time.perf_counter() - start, 2)})  # fmt: skip
    else:
        start = time.perf_counter()
        result = window_loss(
            model, ids, context=model.context_length, batch_size=args.batch_size, device=device
        )
        rows.append({**result, "context": model.context_length,
                     "seconds": round(time.perf_counter() - start, 2)})  # fmt: skip
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            reading = (
                f"segment {row['segment']}, memory {row['memory']}" if "memory" in row
                else f"windows of {row['context']}"
            )  # fmt: skip
            print(
                f"loss {row['loss']:.4f}  ppl {row['ppl']:.3f}  over {row['tokens']} tokens "
                f"({reading}; {row['seconds']} s)"
            )
    return 0
