"""``formers average``: average the weights of checkpoints into one (the paper's last step).

Either name the checkpoints (``--checkpoints DIR [DIR ...]``) or take the last N of a training
run (``--run RUN_DIR --last N``: its ``checkpoints/step_*`` directories, ``best`` excluded).
"""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "average", help="average the weights of several checkpoints into one checkpoint"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoints", nargs="+", metavar="DIR", help="checkpoint directories to average"
    )
    source.add_argument(
        "--run", dest="run_dir", metavar="RUN_DIR", help="a training run's directory"
    )
    p.add_argument(
        "--last", type=int, metavar="N", help="with --run: average its last N checkpoints"
    )
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="checkpoint to write")
    p.set_defaults(run=run)  # --run's value goes to args.run_dir: args.run is this function


def run(args: argparse.Namespace) -> int:
    from formers.training.checkpoint import average_checkpoints, list_checkpoints

    if args.run_dir is not None:
        if args.last is None or args.last < 1:
            raise ValueError("--run needs --last N with N >= 1 (the paper averaged the last 5)")
        found = list_checkpoints(args.run_dir)
        if len(found) < args.last:
            raise ValueError(
                f"--last {args.last}: {args.run_dir} has only {len(found)} step "
                f"checkpoint(s) in its checkpoints/ directory"
            )
        directories = found[-args.last :]
    else:
        if args.last is not None:
            raise ValueError("--last goes with --run; with --checkpoints, name the directories")
        directories = args.checkpoints
    out = average_checkpoints(directories, args.out)
    print(f"averaged {len(directories)} checkpoint(s) into {out}:")
    for directory in directories:
        print(f"  {directory}")
    return 0
