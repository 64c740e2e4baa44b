"""``formers train CONFIG [--set key=value ...]``: train any task from a TOML recipe.

Data-parallel on N processes (GPUs, or CPU processes with gloo)::

    torchrun --nproc_per_node N -m formers train CONFIG [...]
    torchrun --nproc_per_node N --no-python formers train CONFIG [...]

Each process trains a replica on its share of every step's batches (see
:mod:`formers.training.trainer`); rank 0 writes the run directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a model (translate, lm, mlm or classify) from a TOML recipe",
        description="Train a model from a TOML recipe. Data-parallel on N processes: "
        "torchrun --nproc_per_node N -m formers train CONFIG (or torchrun "
        "--nproc_per_node N --no-python formers train CONFIG); rank 0 writes the run directory.",
    )
    p.add_argument("config", help="a TOML recipe, e.g. configs/multi30k_en_de_cpu.toml")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-3 (repeatable)",
    )  # fmt: skip
    p.add_argument("--run-dir", help="output directory (default: runs/CONFIG_NAME)")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument(
        "--resume", action="store_true",
        help="continue from the latest checkpoint (after repairing what a kill left)",
    )  # fmt: skip
    runs.add_argument(
        "--overwrite", action="store_true",
        help="delete the previous run in the run directory and start again (without it or "
        "--resume, a directory that holds a run is refused)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from formers.training.config import load_experiment
    from formers.training.distributed import Distributed
    from formers.training.trainer import Trainer

    config = load_experiment(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    distributed = Distributed.from_env()  # one process unless launched by torchrun
    try:
        trainer = Trainer(
            config, run_dir, resume=args.resume, overwrite=args.overwrite,
            progress=not args.no_progress, distributed=distributed,
        )  # fmt: skip
        state = trainer.fit()
    finally:
        distributed.destroy()
    if distributed.is_main:
        print(f"done: step {state['step']}, epoch {state['epoch']}, best {state['best']}; "
              f"{run_dir}")  # fmt: skip
    return 0
