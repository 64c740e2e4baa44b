"""Checkpoint averaging: one model whose weights are the mean of several checkpoints' weights.

The paper averaged the last 5 checkpoints of its base models, written at 10-minute intervals, and
the last 20 of its big models (Vaswani et al. 2017, arXiv 1706.03762, section 6.1); fairseq's
Multi30k recipe averages the last 10. Averaging smooths out the noise of the last updates, much
like a (cheaper, after-the-fact) exponential moving average of the weights.

Sums are accumulated in float64 and cast back to each tensor's dtype, so that the result does not
depend on the order of the checkpoints and averaging N copies of one checkpoint returns it exactly.
Integer tensors (none in our models) are taken from the last checkpoint. The config and the
tokenizer are copied from the last checkpoint; the checkpoints must have the same model config
and the same tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from formers.training.checkpoint_io import (
    CONFIG_FILE,
    TOKENIZER_FILES,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_directory,
    model_config,
    read_config,
    require_directory,
    require_file,
    write_json,
)


def average_checkpoints(
    directories: Sequence[str | os.PathLike], out_dir: str | os.PathLike
) -> Path:
    """Average the weights of checkpoints into a new checkpoint (weights, config, tokenizer).

    Args:
        directories: the checkpoints to average; the config and tokenizer of the last are kept.
        out_dir: the checkpoint to write (atomically; an existing checkpoint there is replaced).
            ``config.json`` records the averaged directories under ``"averaged_from"``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        CheckpointError: no checkpoints, a missing or unreadable one, or checkpoints whose model
            configs (the message names the differing keys), tokenizers or tensors differ.
    """
    paths = [require_directory(d) for d in directories]
    if not paths:
        raise CheckpointError("no checkpoints to average")
    configs = [read_config(path) for path in paths]
    for path, config in zip(paths[:-1], configs[:-1], strict=True):
        _check_same_model(path, config, paths[-1], configs[-1])
    has_tokenizer = _check_same_tokenizer(paths)
    files = [require_file(path, WEIGHTS_FILE) for path in paths]

    total: dict[str, torch.Tensor] = {}
    for file in files:
        tensors, metadata = _read(file)
        if not total:
            first, total = file, {k: _accumulator(v) for k, v in tensors.items()}
            continue
        _check_same_tensors(first, total, file, tensors)
        for name, tensor in tensors.items():
            if tensor.is_floating_point():
                total[name] += tensor
            else:
                total[name] = tensor
    averaged = {
        name: (total[name] / len(files)).to(tensor.dtype) if tensor.is_floating_point() else tensor
        for name, tensor in tensors.items()  # the last checkpoint's dtypes
    }

    config = {**configs[-1], "averaged_from": [str(path) for path in paths]}
    with atomic_directory(out_dir) as tmp:
        save_file(averaged, str(tmp / WEIGHTS_FILE), metadata=metadata)
        write_json(tmp / CONFIG_FILE, config)
        if has_tokenizer:
            for name in TOKENIZER_FILES:
                if (paths[-1] / name).is_file():
                    shutil.copyfile(paths[-1] / name, tmp / name)
    return Path(out_dir)


def _accumulator(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.float64) if tensor.is_floating_point() else tensor


def _read(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, f.metadata()  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{file} is not a readable safetensors file: {error}") from None


def _check_same_model(path: Path, config: dict[str, Any], last: Path, reference: dict) -> None:
    kinds = config.get("architecture"), reference.get("architecture")
    if kinds[0] != kinds[1]:
        raise CheckpointError(
            f"cannot average checkpoints of different architectures: {path} is {kinds[0]!r}, "
            f"{last} is {kinds[1]!r}"
        )
    ours, theirs = model_config(config, path).to_dict(), model_config(reference, last).to_dict()
    differ = [key for key in ours if ours[key] != theirs[key]]
    if differ:
        details = ", ".join(f"{k} ({ours[k]!r} vs {theirs[k]!r})" for k in differ)
        raise CheckpointError(
            f"cannot average checkpoints of different models: {path} and {last} differ in {details}"
        )


def _check_same_tokenizer(paths: list[Path]) -> bool:
    """Whether the checkpoints have a tokenizer; refuse if they do not all have the same one."""
    digests = {}
    for path in paths:
        files = [path / name for name in TOKENIZER_FILES if (path / name).is_file()]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
        digests[path] = digest.hexdigest() if files else None
    if len(set(digests.values())) > 1:
        described = ", ".join(
            f"{path} ({'tokenizer ' + d[:12] if d else 'no tokenizer'})"
            for path, d in digests.items()
        )
        raise CheckpointError(f"cannot average checkpoints with different tokenizers: {described}")
    return digests[paths[-1]] is not None


def _check_same_tensors(
    first: Path, total: dict[str, torch.Tensor], file: Path, tensors: dict[str, torch.Tensor]
) -> None:
    problems = [f"{n} is missing" for n in total if n not in tensors]
    problems += [f"{n} is not in {first}" for n in tensors if n not in total]
    problems += [
        f"{n} has shape {tuple(t.shape)} (in {first}: {tuple(total[n].shape)})"
        for n, t in tensors.items()
        if n in total and t.shape != total[n].shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"cannot average: the tensors of {file} differ: {'; '.join(problems[:3])}{more}"
        )
