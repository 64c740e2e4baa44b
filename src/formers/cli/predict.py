"""``formers predict``: run a BERT checkpoint on texts, one a line (a file or stdin).

What it prints depends on the checkpoint's head, one output line per input line:

=======================  ===================================================================
checkpoint               output
=======================  ===================================================================
classification head      the predicted label (``--probabilities``: ``label<TAB>p0<TAB>p1...``)
masked LM head           the text with each [MASK] filled by the best token (``--top-k K``: a
                         JSON object per line, ``{"text": ..., "masks": [[{"token", "probability"},
                         ...], ...]}``, the K best tokens of each mask)
any (``--embed``)        the mean-pooled, normalized sentence embedding as a JSON list
=======================  ===================================================================

Input must be UTF-8 (a bad byte is an error naming the line). Texts are batched by length and
padded; the attention mask covers the padding, so results do not depend on ``--batch-size``.
See :mod:`formers.inference.encoder` for the Python functions underneath.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from formers.cli.families import require_architecture
from formers.cli.textio import check_output, read_lines, write_lines
from formers.cli.threads import add_threads_option, set_threads
from formers.device import resolve_device

if TYPE_CHECKING:
    from formers.inference.encoder import FilledText


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "predict", help="classify texts, fill [MASK]s or embed sentences with a BERT checkpoint"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--input", metavar="FILE", help="texts, one a line, UTF-8 (default: stdin)")
    p.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts a batch (32)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_threads_option(p)
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="classification: print label<TAB>p0<TAB>p1... (the class probabilities)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="masked LM: also list the K best tokens of each [MASK] (JSON lines)",
    )
    p.add_argument(
        "--embed",
        action="store_true",
        help="print mean-pooled, L2-normalized sentence embeddings (JSON lines)",
    )
    p.set_defaults(run=run)


def _mode(model_config: dict[str, Any], args: argparse.Namespace) -> str:
    """``"embed"``, ``"classify"`` or ``"fill"``, after checking the options fit the head."""
    if args.embed:
        given = [o for o, on in (("--probabilities", args.probabilities),
                                 ("--top-k", args.top_k is not None)) if on]  # fmt: skip
        if given:
            raise ValueError(f"--embed prints embeddings only; drop {' and '.join(given)}")
        return "embed"
    if model_config.get("num_labels", 0) > 0:
        if args.top_k is not None:
            raise ValueError("--top-k is for masked LM checkpoints; this one classifies")
        return "classify"
    if model_config.get("mlm_head", False):
        if args.probabilities:
            raise ValueError(
                "--probabilities is for classification checkpoints; this one has a masked LM "
                "head (use --top-k K to see the probabilities of each [MASK]'s candidates)"
            )
        return "fill"
    raise ValueError(
        f"{args.checkpoint} is a BERT body without a head (no classifier, no masked LM head); "
        "pass --embed for sentence embeddings"
    )


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    check_output(args.output)  # before the model runs, not after
    device = resolve_device(args.device)
    set_threads(args.threads)
    config = require_architecture(args.checkpoint, "encoder-only", "formers predict")
    mode = _mode(config["model"], args)
    texts = read_lines(args.input)
    if not texts:
        raise ValueError(f"no texts in {args.input or '<stdin>'}: give one text a line")

    from formers.inference import encoder  # torch-heavy imports: lazily
    from formers.training.checkpoint import load_model

    model, tokenizer, checkpoint_config = load_model(args.checkpoint, device=device)
    cut = {"batch_size": args.batch_size, "max_length": encoder.encode_length(checkpoint_config)}
    if tokenizer is None or not hasattr(tokenizer, "mask_id"):
        raise ValueError(
            f"checkpoint {args.checkpoint} has no WordPiece tokenizer (tokenizer.json); "
            "predicting needs the tokenizer the model was trained with"
        )
    if mode == "embed":
        vectors = encoder.embed(model, tokenizer, texts, **cut)
        lines = (json.dumps(v) for v in vectors.tolist())
    elif mode == "classify":
        probs = encoder.classify(model, tokenizer, texts, **cut)
        labels = probs.argmax(dim=-1).tolist()
        if args.probabilities:
            lines = (
                "\t".join([str(label), *(f"{p:.6f}" for p in row)])
                for label, row in zip(labels, probs.tolist(), strict=True)
            )
        else:
            lines = (str(label) for label in labels)
    else:
        filled = encoder.fill_masks(model, tokenizer, texts, top_k=args.top_k or 1, **cut)
        if args.top_k is None:
            lines = (" ".join(f.text.splitlines()) for f in filled)
        else:
            lines = (json.dumps(_fill_json(f), ensure_ascii=False) for f in filled)
    write_lines(lines, args.output)
    return 0


def _fill_json(filled: FilledText) -> dict[str, Any]:
    masks = [[{"token": t, "probability": p} for t, p in mask] for mask in filled.candidates]
    return {"text": filled.text, "masks": masks}
