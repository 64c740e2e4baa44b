"""``--threads N``: how many CPU threads PyTorch may use, shared by the commands that run a model.

0 (the default) leaves PyTorch's own choice (usually one thread a physical core). A smaller
count leaves cores to other work, e.g. a training run beside ``formers serve``.
"""

from __future__ import annotations

import argparse

import torch


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` (default 0: PyTorch's default) to a subcommand's parser."""
    parser.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads (0: PyTorch's default)"
    )


def set_threads(threads: int) -> None:
    """Apply ``--threads``: ``torch.set_num_threads(threads)``, or nothing for 0.

    Raises:
        ValueError: a negative count.
    """
    if threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: PyTorch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
