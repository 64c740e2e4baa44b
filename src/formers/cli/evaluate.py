"""``formers evaluate``: corpus BLEU and chrF of a translation file with sacreBLEU.

Prints the BLEU line (with n-gram precisions and brevity penalty), chrF, and the signature of
each; ``--json`` adds the same as one JSON object on the last line. ``--tokenized`` scores
tokenized, lowercased text multi-bleu style (see :mod:`formers.evaluation.bleu`).
"""

from __future__ import annotations

import argparse
import json

from formers.cli.textio import read_lines
from formers.evaluation import corpus_scores


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("evaluate", help="score translations with sacreBLEU (BLEU, chrF)")
    p.add_argument("--hypotheses", required=True, metavar="FILE", help="system output, UTF-8")
    p.add_argument("--references", required=True, metavar="FILE", help="references, UTF-8")
    p.add_argument(
        "--tokenized",
        action="store_true",
        help="texts are tokenized: BLEU with tokenize=none, lowercased (multi-bleu style)",
    )
    p.add_argument("--json", action="store_true", help="also print the scores as a JSON line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    hypotheses = read_lines(args.hypotheses)
    references = read_lines(args.references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{args.hypotheses} has {len(hypotheses)} lines but {args.references} has "
            f"{len(references)}; they must be line-aligned"
        )
    if not hypotheses:
        raise ValueError(f"{args.hypotheses} and {args.references} are empty: nothing to score")
    scores = corpus_scores(hypotheses, references, tokenized=args.tokenized)
    print(scores["bleu_details"])
    print(f"  signature: {scores['bleu_signature']}")
    print(f"chrF2 = {scores['chrf']:.2f}")
    print(f"  signature: {scores['chrf_signature']}")
    if args.json:
        print(json.dumps(scores))
    return 0
