"""``formers export``: hand a trained checkpoint to another runtime.

``--to ct2`` writes a CTranslate2 model (``ctranslate2.Translator`` for translation checkpoints,
``ctranslate2.Generator`` for language models), optionally with int8 or float16 weights
(``--quantization``); ``--to onnx`` writes ONNX graphs for ONNX Runtime. The tokenizer and an
``export.json`` manifest go beside the model. An existing ``--out`` is replaced only with
``--force``, and only once the export has succeeded.
"""

from __future__ import annotations

import argparse

from formers.export.checkpoint import QUANTIZATIONS, TARGETS


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("export", help="export a checkpoint to CTranslate2 or ONNX Runtime")
    p.add_argument("--to", required=True, choices=TARGETS, help="the target runtime")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write")
    p.add_argument(
        "--quantization", metavar="TYPE",
        help=f"ct2 only: weight type ({', '.join(QUANTIZATIONS['ct2'])}; default float32)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing --out directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from formers.export import export_checkpoint

    out = export_checkpoint(
        args.checkpoint, args.to, args.out, force=args.force, quantization=args.quantization
    )
    print(f"exported {args.checkpoint} to {args.to}: {out}")
    return 0
