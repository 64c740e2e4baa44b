"""``formers info``: a preset's configuration and exact parameter count."""

from __future__ import annotations

import argparse
import json

import torch

from formers.models.transformer import PRESETS, build_transformer, preset_config


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="show a model preset's configuration and size")
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("--vocab-size", type=int, default=37000, help="shared vocabulary size")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = preset_config(args.preset, vocab_size=args.vocab_size)
    with torch.device("meta"):  # count without allocating weights
        model = build_transformer(config)
    print(json.dumps(config.to_dict(), indent=2))
    print(f"parameters: {model.num_parameters():,}")
    return 0
