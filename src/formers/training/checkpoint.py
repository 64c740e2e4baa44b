"""Checkpoints: save a model (with tokenizer, optimizer and trainer state), load it back.

A checkpoint is a directory (layout in :mod:`formers.training.checkpoint_io`): weights in
safetensors, config and trainer state in JSON, the optimizer state split between the two (see
:mod:`formers.training.optimizer_state`), the tokenizer's own file. Loading never unpickles, so
a checkpoint from an untrusted source cannot run code.

:func:`save_checkpoint` writes atomically (a temporary directory, fsync, rename), so a crash or
Ctrl-C while saving leaves the previous checkpoint intact. In a run directory, checkpoints live in
``checkpoints/step_{step:08d}`` and ``checkpoints/best`` (:func:`list_checkpoints`,
:func:`prune_checkpoints`); :func:`average_checkpoints` averages several into one.

Tied weights (the paper's shared embeddings and pre-softmax projection) are stored once, by
safetensors' ``save_model``, and are still one parameter after loading.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save_file
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from formers import __version__
from formers.device import resolve_device
from formers.inference.layout import standard_layout
from formers.models.config_base import ConfigError
from formers.models.registry import family_of_config, get_family
from formers.training.averaging import average_checkpoints
from formers.training.checkpoint_io import (
    CONFIG_FILE,
    FORMAT,
    STATE_FILE,
    TASK_STATE_FILE,
    TOKENIZER_FILES,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_directory,
    check_vocabulary,
    load_weights,
    model_config,
    read_config,
    read_json,
    read_tensors,
    remove_directory,
    require_directory,
    require_file,
    write_json,
)
from formers.training.optimizer_state import load_optimizer_state, save_optimizer_state
from formers.training.rng import capture_rng_state, restore_rng_state

if TYPE_CHECKING:
    from formers.data.tokenizer import Tokenizer
    from formers.nn.encoder_decoder import EncoderDecoder

__all__ = [
    "CheckpointError",
    "average_checkpoints",
    "capture_rng_state",
    "list_checkpoints",
    "load_model",
    "load_training_state",
    "prune_checkpoints",
    "require_tokenizer",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINTS_DIR = "checkpoints"
TOKENIZER_KEY = "tokenizer_file"  # config.json: the tokenizer's file, when saved with one
BEST = "best"
_STEP_DIR = re.compile(r"step_(\d+)")


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    config: dict[str, Any],
    *,
    tokenizer: Tokenizer | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    task_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically, replacing an existing checkpoint there.

    Args:
        directory: the checkpoint directory to write.
        model: the model (a DDP or ``torch.compile`` wrapper is unwrapped).
        config: the model's config, either ``TransformerConfig.to_dict()`` or a dict with that
            under ``"model"`` and other JSON-able sections (e.g. the run's recipe) beside it.
        tokenizer: saved as ``tokenizer.model``; its vocabulary must be the model's.
        optimizer: its ``state_dict()`` is saved (without pickle).
        state: JSON-able trainer state (step, epoch, scheduler ``state_dict()``, ...), written to
            ``trainer_state.json`` (also when only ``optimizer`` is given) with the RNG states
            under ``"rng"`` (captured now, unless ``state`` has them). JSON turns int dict keys
            into strings and tuples into lists.
        task_tensors: the training task's tensors (a recurrent model's memory), written to
            ``task_state.safetensors`` when there are any.

    Returns:
        ``directory`` as a Path.

    Raises:
        CheckpointError: the config is invalid or not the model's, the tokenizer's vocabulary is
            not the model's, ``state`` is not JSON-able, or ``directory`` exists and holds files
            that are not part of a checkpoint.
    """
    model = _unwrap(model)
    full_config, cfg = _checkpoint_config(model, config)
    if tokenizer is not None:
        check_vocabulary(tokenizer.vocab_size, cfg, f"cannot save {directory}")
    state_text = None
    if state is not None or optimizer is not None:  # resuming needs both
        state = dict(state or {})
        state.setdefault("rng", capture_rng_state())
        state_text = _dumps_state(state)
    with atomic_directory(directory) as tmp:
        with standard_layout(model):  # safetensors needs contiguous tied weights
            save_safetensors_model(model, str(tmp / WEIGHTS_FILE))
        if tokenizer is not None:  # recorded, so that loading can name it if it goes missing
            tokenizer.save(tmp)
            saved = [name for name in TOKENIZER_FILES if (tmp / name).is_file()]
            full_config = {**full_config, TOKENIZER_KEY: saved[0]} if saved else full_config
        write_json(tmp / CONFIG_FILE, full_config)
        if optimizer is not None:
            save_optimizer_state(optimizer.state_dict(), tmp)
        if state_text is not None:
            (tmp / STATE_FILE).write_text(state_text, encoding="utf-8")
        if task_tensors:
            save_file(task_tensors, str(tmp / TASK_STATE_FILE))
    return Path(directory)


def load_task_tensors(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The training task's tensors saved with a checkpoint (empty when it saved none).

    Raises:
        CheckpointError: the file is there but unreadable.
    """
    path = Path(directory) / TASK_STATE_FILE
    return read_tensors(path) if path.is_file() else {}


def load_model(
    directory: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> tuple[EncoderDecoder, Tokenizer | None, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights.

    The caller's random state is left as it was (building initializes weights at random).

    Args:
        directory: a checkpoint directory.
        device: where the model goes (``"auto"``: CUDA if available).

    Returns:
        ``(model, tokenizer, config)``: the model in eval mode, the tokenizer (``None`` if the
        checkpoint has none) and the contents of ``config.json``.

    Raises:
        CheckpointError: a directory or file is missing, ``config.json`` is not valid JSON or
            names an unknown architecture, the weights do not fit the config (the message names
            the tensors), or the tokenizer's vocabulary is not the model's.
    """
    path = require_directory(directory)
    config = read_config(path)
    cfg = model_config(config, path)
    weights = require_file(path, WEIGHTS_FILE)
    tokenizer = _load_tokenizer(path, cfg, config)
    with torch.random.fork_rng(devices=[]):
        model = get_family(config.get("architecture", "transformer")).build(cfg)
    load_weights(model, weights)
    model.to(resolve_device(device))
    return model.eval(), tokenizer, config


def load_training_state(
    directory: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Restore weights, optimizer state and RNG states from a checkpoint, to resume training.

    Args:
        directory: a checkpoint written with ``optimizer`` and ``state``.
        model: the model to load the weights into (built from the same config).
        optimizer: the optimizer to restore (``None``: weights and state only).

    Returns:
        The trainer state passed to :func:`save_checkpoint` (with ``"rng"``, already restored).

    Raises:
        CheckpointError: a file is missing or unreadable, or the weights or optimizer state do
            not fit ``model`` and ``optimizer``.
    """
    path = require_directory(directory)
    state_file = require_file(path, STATE_FILE)
    weights = require_file(path, WEIGHTS_FILE)
    state = read_json(state_file)
    if not isinstance(state, dict):
        raise CheckpointError(f"{state_file} must hold a JSON object")
    optimizer_state = load_optimizer_state(path) if optimizer is not None else None
    model = _unwrap(model)
    load_weights(model, weights)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"the optimizer state in {path} does not fit the optimizer: {error}"
            ) from None
    if isinstance(state.get("rng"), dict):
        restore_rng_state(state["rng"])
    return state


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoints/step_N`` directories of a run, oldest step first (``best`` excluded)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"no run directory at {run}")
    root = run / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` latest step checkpoints of a run.

    ``checkpoints/best`` is never deleted, nor the step checkpoint it links to if it is a symlink.

    Returns:
        The deleted directories.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last must be >= 0, got {keep_last}")
    checkpoints = list_checkpoints(run_dir)
    best = Path(run_dir) / CHECKPOINTS_DIR / BEST
    protected = best.resolve() if best.is_symlink() else None
    removed = []
    for path in checkpoints[: max(len(checkpoints) - keep_last, 0)]:
        if path.resolve() != protected:
            remove_directory(path)
            removed.append(path)
    return removed


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``torch.compile`` and/or (Distributed)DataParallel wrapper."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _checkpoint_config(model: nn.Module, config: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The JSON of ``config.json``, and the model config checked against the model's own."""
    values, extra = (config["model"], config) if "model" in config else (config, {})
    own = getattr(model, "config", None)
    family = family_of_config(own) if own is not None else get_family("transformer")
    try:
        cfg = family.config(dict(values))
    except ConfigError as error:
        raise CheckpointError(f"cannot save a checkpoint: {error}") from None
    if own is not None and own != cfg:
        differ = [
            f"{k} ({v!r}; the model has {getattr(own, k)!r})"
            for k, v in cfg.to_dict().items()
            if getattr(own, k) != v
        ]
        raise CheckpointError(
            f"the config given to save_checkpoint is not the model's: {', '.join(differ)}"
        )
    fixed = {"format": FORMAT, "architecture": family.name, "formers_version": __version__}
    full = {**fixed, **{k: v for k, v in extra.items() if k not in fixed}, "model": cfg.to_dict()}
    try:
        json.dumps(full)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint config is not JSON-able: {error}") from None
    return full, cfg


def _dumps_state(state: dict[str, Any]) -> str:
    """One top-level key a line, each value compact (the RNG states are thousands of ints)."""
    lines = []
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"trainer state keys must be strings, got {key!r}")
        try:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, default=_to_json)}")
        except (TypeError, ValueError) as error:
            raise CheckpointError(
                f"trainer state {key!r} cannot be saved as JSON: {error}"
            ) from None
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray | torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a {type(value).__name__} is not JSON-able")


def require_tokenizer(tokenizer: Any, directory: str | os.PathLike, purpose: str) -> Any:
    """``tokenizer``, or an error saying that the checkpoint has none and that ``purpose``
    (e.g. ``"translating text"``) needs one."""
    if tokenizer is None:
        raise CheckpointError(
            f"checkpoint {directory} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            f"{purpose} needs the tokenizer the model was trained with"
        )
    return tokenizer


def _load_tokenizer(path: Path, cfg: Any, config: dict[str, Any]) -> Any:
    from formers.data.tokenizers import load_tokenizer

    recorded = config.get(TOKENIZER_KEY)
    if isinstance(recorded, str) and not (path / recorded).is_file():
        raise CheckpointError(
            f"checkpoint {path} has no {recorded}, the tokenizer it was saved with; copy it "
            "back (the run directory has one)"
        )
    tokenizer = load_tokenizer(path)
    if tokenizer is not None:
        check_vocabulary(tokenizer.vocab_size, cfg, f"the tokenizer in {path}")
    return tokenizer
