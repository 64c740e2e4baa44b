"""``formers info``: a preset's configuration and exact parameter count, for every family."""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from formers.models.registry import ARCHITECTURES, get_family


def _presets() -> dict[str, str]:
    """Preset name -> family name."""
    return {name: family for family in ARCHITECTURES for name in get_family(family).presets}


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="show a model preset's configuration and size")
    p.add_argument("preset", choices=sorted(_presets()))
    p.add_argument(
        "--vocab-size", type=int, default=None,
        help="vocabulary size (default: the preset's own, else 37,000 as the paper's EN-DE)",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    family = get_family(_presets()[args.preset])
    values = dict(family.presets[args.preset])
    field = next(f for f in dataclasses.fields(family.config_cls) if f.name == "vocab_size")
    if args.vocab_size is not None:
        values["vocab_size"] = args.vocab_size
    elif "vocab_size" not in values and field.default is dataclasses.MISSING:
        values["vocab_size"] = 37000
    config = family.config(values)
    with torch.device("meta"):  # count without allocating weights
        model = family.build(config)
    print(json.dumps({"family": family.name, **config.to_dict()}, indent=2))
    count = sum(p.numel() for p in model.parameters())  # tied weights once
    print(f"parameters: {count:,}")
    return 0
