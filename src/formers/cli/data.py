"""``formers data``: fetch public data sets; ``formers data multi30k --dest DIR``."""

from __future__ import annotations

import argparse

from formers.data.download import BASE_URL, LANGUAGES, download_multi30k


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("data", help="download a public data set")
    datasets = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    m = datasets.add_parser(
        "multi30k",
        help="Multi30k task 1: raw and tokenized train, val and test_2016_flickr",
        description="Download Multi30k task 1 (raw text as DEST/SPLIT.LANG.gz, the data set's "
        "tokenized text as DEST/tok/SPLIT.lc.norm.tok.LANG.gz); files present are skipped.",
    )
    m.add_argument("--dest", required=True, help="destination directory")
    m.add_argument("--base-url", default=BASE_URL, help="URL of the data/task1/ folder")
    m.add_argument(
        "--languages", nargs="+", choices=LANGUAGES, default=list(LANGUAGES), metavar="LANG",
        help=f"languages to fetch (default: all of {' '.join(LANGUAGES)})",
    )  # fmt: skip
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(run=run_multi30k)


def run_multi30k(args: argparse.Namespace) -> int:
    fetched, present = download_multi30k(
        args.dest, base_url=args.base_url, languages=args.languages, progress=not args.quiet
    )
    print(
        f"multi30k: downloaded {len(fetched)} files, {len(present)} already present, in {args.dest}"
    )
    return 0
