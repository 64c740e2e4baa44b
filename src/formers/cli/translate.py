"""``formers translate``: translate a file (or stdin) with a trained checkpoint.

Lines are translated in batches of similar length and written in the input order, one
translation a line; with ``--nbest K`` (K > 1) each sentence gets K lines
``index<TAB>score<TAB>text``, best first, ``index`` counting input lines from 0 (as fairseq's
``H-<index>`` lines). A progress bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import sys

from formers.cli.textio import read_lines, write_lines
from formers.cli.threads import add_threads_option, set_threads
from formers.decoding import LENGTH_PENALTIES
from formers.device import resolve_device
from formers.inference.layout import use_inference_layout
from formers.inference.translate import Translation, check_translate_options, translate


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "translate", help="translate sentences (one a line) with a trained checkpoint"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--input", metavar="FILE", help="source sentences, UTF-8 (default: stdin)")
    p.add_argument("--output", metavar="FILE", help="where to write (default: stdout)")
    p.add_argument("--beam", type=int, default=4, metavar="K", help="beam size; 1: greedy (4)")
    p.add_argument("--lenpen", type=float, default=0.6, help="length penalty alpha (0.6)")
    p.add_argument(
        "--lenpen-form", default="gnmt", metavar="{" + ",".join(LENGTH_PENALTIES) + "}",
        help="gnmt: divide scores by ((5 + n) / 6) ** alpha (GNMT, as the paper); power: by "
        "n ** alpha (fairseq's --lenpen, Hugging Face's length_penalty) (gnmt)",
    )  # fmt: skip
    p.add_argument("--nbest", type=int, default=1, metavar="N", help="outputs per line (1)")
    p.add_argument(
        "--max-tokens", type=int, default=4096, metavar="N", help="source tokens a batch (4096)"
    )
    p.add_argument("--max-len-a", type=float, default=1.0, metavar="A", help="see --max-len-b")
    p.add_argument(
        "--max-len-b", type=int, default=50, metavar="B", help="outputs of <= A * len + B tokens"
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
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


def run(args: argparse.Namespace) -> int:
    check_translate_options(
        beam=args.beam, nbest=args.nbest, max_tokens=args.max_tokens,
        max_len_a=args.max_len_a, max_len_b=args.max_len_b, lenpen=args.lenpen,
        lenpen_form=args.lenpen_form,
    )  # fmt: skip
    device = resolve_device(args.device)
    set_threads(args.threads)
    sentences = read_lines(args.input)
    if not sentences:
        raise ValueError(f"no sentences to translate in {args.input or '<stdin>'}")

    from formers.training.checkpoint import load_model  # the trainer's heavier imports: lazily

    model, tokenizer, _ = load_model(args.checkpoint, device=device)
    use_inference_layout(model)  # faster decoding steps on a CPU; same outputs
    if tokenizer is None:
        raise ValueError(
            f"checkpoint {args.checkpoint} has no tokenizer.model; translating text needs "
            "the tokenizer the model was trained with"
        )
    results = translate(
        model, tokenizer, sentences, beam=args.beam, lenpen=args.lenpen,
        lenpen_form=args.lenpen_form, nbest=args.nbest,
        max_tokens=args.max_tokens, max_len_a=args.max_len_a, max_len_b=args.max_len_b,
        device=device, progress=sys.stderr.isatty(),
    )  # fmt: skip
    if args.nbest > 1:
        write_lines(format_nbest(results), args.output)
    else:
        write_lines((_one_line(hyps[0].text) for hyps in results), args.output)
    return 0
