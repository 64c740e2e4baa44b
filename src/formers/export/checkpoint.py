"""Export a checkpoint directory: check what can be exported before loading the weights, then
write the target runtime's model, the tokenizer and an ``export.json`` that says where they came
from, into a directory that appears whole or not at all."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from formers.export.common import ExportError, check_out, output_directory

TARGETS = ("ct2", "onnx")
QUANTIZATIONS = {"ct2": ("int8", "int8_float32", "int16", "float16", "bfloat16", "float32")}
MANIFEST = "export.json"


def _architecture(checkpoint: str | os.PathLike) -> str:
    from formers.training.checkpoint_io import read_config, require_directory

    return read_config(require_directory(checkpoint)).get("architecture", "transformer")


def _exporter(to: str) -> tuple[Callable[[str], None], Callable[..., Path]]:
    """``(check, export)`` for a target: ``check(architecture)`` refuses early."""
    if to == "ct2":
        from formers.export.ct2 import check_ct2, export_ct2

        return check_ct2, export_ct2
    if to == "onnx":
        from formers.export.onnx import check_onnx, export_onnx

        return check_onnx, export_onnx
    raise ExportError(f"unknown export target {to!r}; choose one of {', '.join(TARGETS)}")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    *,
    force: bool = False,
    quantization: str | None = None,
) -> Path:
    """Export the checkpoint directory ``checkpoint`` to runtime ``to`` into directory ``out``.

    Args:
        checkpoint: a formers checkpoint directory (``config.json``, weights, tokenizer).
        to: ``"ct2"`` (CTranslate2) or ``"onnx"`` (ONNX Runtime).
        out: the new directory; an existing one is refused unless ``force``.
        force: replace an existing ``out`` directory (only once the export has succeeded).
        quantization: for ``ct2``, CTranslate2's weight type (e.g. ``"int8"``).

    Returns:
        The absolute path of ``out``.

    Raises:
        ExportError: an unknown target, an architecture or option the target cannot express
            (named), a quantization the target does not offer, or ``out`` in the way.
        CheckpointError: the checkpoint cannot be read.
    """
    check, export = _exporter(to)
    if quantization is not None and quantization not in QUANTIZATIONS.get(to, ()):
        offered = ", ".join(QUANTIZATIONS.get(to, ())) or "none"
        raise ExportError(
            f"quantization {quantization!r} is not offered for {to} (offered: {offered})"
        )
    check_out(out, force=force)  # before the work, not after
    architecture = _architecture(checkpoint)
    check(architecture)

    from formers.training.checkpoint import load_model, require_tokenizer

    model, tokenizer, _ = load_model(checkpoint)
    require_tokenizer(tokenizer, checkpoint, f"exporting to {to}")
    options: dict[str, Any] = {"quantization": quantization} if quantization else {}
    with output_directory(out, force=force) as tmp:
        export(model, tokenizer, architecture, tmp, **options)
        tokenizer.save(tmp)
        manifest = {
            "from": Path(checkpoint).name,
            "architecture": architecture,
            "to": to,
            "quantization": quantization or "float32",
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return check_out(out, force=True)
