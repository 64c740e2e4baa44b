"""What every Hugging Face converter shares: reading a model directory without pickle, checking
tensor names and shapes with errors that name them, and importing ``transformers`` lazily.

The converters themselves (checkpoint names such as GPT-2's ``c_attn`` or BERT's
``attention.self.query``) live in ``formers.models.<family>.convert`` and nowhere else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor

WEIGHT_FILES = ("model.safetensors",)


class ConversionError(ValueError):
    """A Hugging Face model cannot be converted: wrong architecture, missing or mismatched
    tensors, or a file that is not there. The message names what is wrong."""


def require_transformers() -> ModuleType:
    """Import ``transformers`` or say how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConversionError(
            "this needs the Hugging Face extras: pip install 'formers[hf]'"
        ) from None
    return transformers


def read_hf_directory(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``config.json`` and the safetensors weights of a local Hugging Face model directory.

    Sharded checkpoints (``model.safetensors.index.json``) are read shard by shard. Pickled
    ``pytorch_model.bin`` files are refused: loading them can run code.
    """
    from safetensors.torch import load_file

    path = Path(directory)
    if not path.is_dir():
        raise ConversionError(f"{path} is not a directory (expected a Hugging Face model folder)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{path} has no config.json: it is not a Hugging Face model folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConversionError(f"{config_file} is not valid JSON: {error}") from None
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    elif index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        files = [path / name for name in shards]
    else:
        found = sorted(p.name for p in path.iterdir())
        hint = (
            " (pytorch_model.bin is a pickle, which formers does not load; convert it to "
            "safetensors with transformers' save_pretrained(..., safe_serialization=True))"
            if "pytorch_model.bin" in found
            else ""
        )
        raise ConversionError(f"{path} has no model.safetensors{hint}; it holds {found}")
    state: dict[str, Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return config, state


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    given: Mapping[str, Tensor],
    where: str,
    *,
    ignore: tuple[str, ...] = (),
) -> None:
    """Raise :class:`ConversionError` naming missing, unexpected and mis-shaped tensors.

    Args:
        expected: tensor name -> shape that the conversion needs.
        given: the tensors found.
        where: what is being read (for the message), e.g. a directory.
        ignore: name suffixes that may be present without being needed (e.g. buffers that
            Hugging Face saves, such as ``attn.bias`` masks or ``position_ids``).
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(n for n in set(given) - set(expected) if not n.endswith(ignore))
    mismatched = sorted(
        f"{n} {tuple(given[n].shape)} (expected {tuple(expected[n])})"
        for n in set(expected) & set(given)
        if tuple(given[n].shape) != tuple(expected[n])
    )
    problems = []
    if missing:
        problems.append(f"missing tensors {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_short(unexpected)}")
    if mismatched:
        problems.append(f"mismatched shapes {_short(mismatched)}")
    if problems:
        raise ConversionError(f"{where}: " + "; ".join(problems))


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{f', ... ({len(names) - limit} more)' if len(names) > limit else ''}]"
