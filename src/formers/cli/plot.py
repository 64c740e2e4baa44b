"""``formers plot``: training curves of one or more runs as a picture.

Reads each run directory's ``log.jsonl`` (:mod:`formers.viz.curves`) and draws the training loss,
the learning rate and the validation metrics against the step and the wall time, the runs
overlaid. Needs matplotlib (``pip install formers[viz]``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.cli.textio import check_output

SUFFIXES = (".png", ".svg", ".pdf")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "plot", help="training curves of runs (loss, lr, validation) against step and time"
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of formers train")
    p.add_argument("--out", required=True, metavar="FILE", help="output: FILE.png, .svg or .pdf")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.out, "--out")
    suffix = Path(args.out).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"--out {args.out}: unknown picture type {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    from formers.viz.curves import plot_curves, read_curves

    curves = [read_curves(run_dir) for run_dir in args.runs]  # every run checked before drawing
    try:
        rows = plot_curves(curves, args.out)
    except ImportError as error:
        raise ValueError(str(error)) from None
    print(f"wrote {args.out}: {', '.join(rows)} of {', '.join(c.name for c in curves)}")
    return 0
