"""``formers``: the command-line entry point; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from formers import __version__
from formers.cli import (
    attention,
    average,
    convert,
    data,
    demo,
    evaluate,
    export,
    generate,
    heads,
    info,
    perplexity,
    plot,
    predict,
    serve,
    train,
    translate,
)

# in the order `formers --help` lists them
COMMANDS = (
    demo, train, info, translate, generate, heads, predict, attention, serve, evaluate,
    perplexity, average, plot, convert, export, data,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="formers",
        description="The Transformer of 'Attention Is All You Need' and its family.",
    )
    parser.add_argument("--version", action="version", version=f"formers {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    # bad input, or a run that diverged: one clear line, no traceback
    except (ValueError, FileNotFoundError, ArithmeticError) as error:
        print(f"formers {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"formers {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
