"""The on-disk layout of a checkpoint directory, and how directories are written safely.

A checkpoint is a flat directory of these files (``formers.training.checkpoint`` writes them)::

    config.json            {"format": 1, "architecture": "transformer", "model": {...}, ...}
    model.safetensors      the weights (tied weights stored once)
    tokenizer.model        the SentencePiece model, if the checkpoint has a tokenizer
    trainer_state.json     step, epoch, RNG states, scheduler state, ...: what training resumes from
    optimizer.safetensors  the optimizer's tensors ...
    optimizer.json         ... and the rest of its state (see formers.training.optimizer_state)

Nothing is ever unpickled: tensors are read with safetensors, everything else is JSON.
:func:`load_weights` checks the stored tensors against the model before loading, and names those
that are missing, unexpected or of the wrong shape.

Writes are atomic: :func:`atomic_directory` fills a hidden temporary sibling directory
(``.NAME.tmp-*``), fsyncs it, and only then renames it to the final name, so a crash (or Ctrl-C)
leaves either the previous checkpoint or the new one under that name, never a half-written one.
An existing checkpoint is replaced by renaming it away (``.NAME.old-*``), renaming the new one in,
and deleting the old one; :func:`remove_directory` renames a checkpoint to ``.NAME.deleting-*``
before deleting it. A process killed in the middle leaves those hidden siblings behind, and one
killed between the two renames of a replacement leaves no ``NAME`` at all: :func:`recover_hidden`
restores such a checkpoint from its complete ``.NAME.old-*`` copy and deletes the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import load_model as load_safetensors_model
from torch import nn

from formers.data.tokenizers import FILES as TOKENIZER_KINDS
from formers.inference.layout import standard_layout
from formers.models.config_base import ConfigError
from formers.models.registry import ARCHITECTURES, get_family

FORMAT = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"  # SentencePiece; see formers.data.tokenizers for all
# every tokenizer's file: SentencePiece, characters, WordPiece, the synthetic tasks' symbols
TOKENIZER_FILES = tuple(TOKENIZER_KINDS)
STATE_FILE = "trainer_state.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_JSON_FILE = "optimizer.json"
TASK_STATE_FILE = "task_state.safetensors"  # e.g. a recurrent model's segment memory
CHECKPOINT_FILES = frozenset(
    {
        CONFIG_FILE,
        WEIGHTS_FILE,
        *TOKENIZER_FILES,
        STATE_FILE,
        OPTIMIZER_TENSORS_FILE,
        OPTIMIZER_JSON_FILE,
        TASK_STATE_FILE,
    }
)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit; the message says which and why."""


def require_directory(directory: str | os.PathLike) -> Path:
    """``directory`` as a Path, after checking that it is an existing directory."""
    path = Path(directory)
    if not path.exists():
        raise CheckpointError(f"no checkpoint directory at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; a checkpoint is a directory")
    return path


def require_file(directory: Path, name: str) -> Path:
    """``directory / name``, after checking that the file exists."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {directory} has no {name}: is it a complete formers checkpoint?"
        )
    return path


def read_json(path: Path) -> Any:
    """Parse a JSON file, naming the file and the position of a syntax error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path} is not UTF-8 text ({error.reason})") from None


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def read_config(directory: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``, checked for format and architecture."""
    path = require_file(directory, CONFIG_FILE)
    config = read_json(path)
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path} has no 'model' section: it is not a formers checkpoint")
    version = config.get("format")
    if not isinstance(version, int) or version > FORMAT:
        raise CheckpointError(
            f"{path} has format {version!r}; this version of formers reads format {FORMAT} "
            "(upgrade formers to read newer checkpoints)"
        )
    architecture = config.get("architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{path}: unknown architecture {architecture!r}; formers reads "
            f"{', '.join(ARCHITECTURES)}"
        )
    return config


def model_config(config: dict[str, Any], path: Path) -> Any:
    """The model config (of the checkpoint's family) of a ``config.json`` read from ``path``."""
    values = config["model"]
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}/{CONFIG_FILE}: 'model' must be a JSON object")
    try:
        return get_family(config.get("architecture", "transformer")).config(values)
    except ConfigError as error:
        raise CheckpointError(f"{path}/{CONFIG_FILE}: {error}") from None


def check_vocabulary(tokenizer_size: int, config: Any, where: str) -> None:
    """Refuse a tokenizer whose vocabulary is not the model's (source and target)."""
    sizes = {config.vocab_size, getattr(config, "target_vocab_size", config.vocab_size)}
    if sizes != {tokenizer_size}:
        model = " and ".join(str(s) for s in sorted(sizes))
        raise CheckpointError(
            f"{where}: the tokenizer has {tokenizer_size} tokens but the model's vocabulary has "
            f"{model}; the tokenizer and the model come from different runs"
        )


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Write a directory atomically: yield a temporary sibling, then rename it into place.

    The files written into the yielded directory are fsynced, then it replaces ``directory``.
    On any exception (Ctrl-C included) the temporary directory is removed and ``directory`` is
    left as it was. An existing ``directory`` is replaced only if it holds nothing but checkpoint
    files, so that a mistyped path cannot delete unrelated data.

    Args:
        directory: the final path.

    Yields:
        The temporary directory to fill.
    """
    final = check_target(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.iterdir():
            _fsync(file)
        _fsync(tmp)
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(final.parent)


def check_target(directory: str | os.PathLike) -> Path:
    """Check that :func:`atomic_directory` may write ``directory`` (absent, or a checkpoint it
    may replace), e.g. before the work that produces it; return its absolute path.

    Raises:
        CheckpointError: ``directory`` exists and is not a directory, or holds files that are not
            part of a checkpoint.
    """
    final = Path(os.path.abspath(directory))  # abspath, not resolve: a symlink is replaced
    if not final.name:
        raise CheckpointError(f"cannot write a checkpoint to {final}")
    if final.exists() or final.is_symlink():
        _check_replaceable(final)
    return final


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file.

    Raises:
        CheckpointError: the file is not a readable safetensors file (the message names it).
    """
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None


def load_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` strictly, after naming any tensor that does not fit."""
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    params = model.state_dict(keep_vars=True)
    tied: dict[int, list[str]] = {}  # tied weights: one tensor under several names
    for name, tensor in params.items():
        tied.setdefault(id(tensor), []).append(name)
    wrong_shape, missing, unexpected = [], [], []
    for names in tied.values():
        present = [name for name in names if name in stored]
        if not present:
            missing.append(f"{names[0]} {tuple(params[names[0]].shape)} is missing")
        unexpected += [f"{n} is tied to {present[0]} but stored apart" for n in present[1:]]
        for name in present[:1]:
            expected = tuple(params[name].shape)
            if stored[name] != expected:
                wrong_shape.append(f"{name} has shape {stored[name]}, the model expects {expected}")
    unexpected += [f"unexpected {n} {shape}" for n, shape in stored.items() if n not in params]
    problems = wrong_shape + missing + unexpected
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"checkpoint does not match the model: {'; '.join(problems[:3])}{more} ({path})"
        )
    before = tied_groups(model)
    with standard_layout(model):  # safetensors needs contiguous tied weights
        load_safetensors_model(model, str(path), strict=True)
    check_tying(model, before)
    check_finite(model, path)


def check_finite(model: nn.Module, path: Path) -> None:
    """Refuse weights with NaN or infinity (a corrupted file whose header is intact reads as
    garbage numbers; training never saves such weights), naming the first such tensor."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: tensor {name} {tuple(tensor.shape)} holds {bad} NaN or infinite "
                "value(s); the file is corrupted (or was saved from a diverged run)"
            )


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters that are one tensor (e.g. the shared embedding and the output)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def check_tying(model: nn.Module, before: list[list[str]]) -> None:
    """Weights tied in the built model must still be tied after loading."""
    now = tied_groups(model)
    if now != before:
        raise CheckpointError(f"loading changed which weights are tied: {before} -> {now}")


def remove_directory(path: Path) -> None:
    """Delete a checkpoint directory: rename it to a hidden name first, so that a crash while
    deleting never leaves a partial checkpoint under its real name."""
    trash = _hidden(path, "deleting")
    os.rename(path, trash)
    if trash.is_symlink():
        trash.unlink()
    else:
        shutil.rmtree(trash)


_HIDDEN = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old|deleting)-[0-9a-f]{12}")


def _hidden(final: Path, kind: str) -> Path:
    """A hidden sibling of ``final`` for one stage of a write: ``tmp`` (being written), ``old``
    (being replaced) or ``deleting``."""
    return final.parent / f".{final.name}.{kind}-{uuid.uuid4().hex[:12]}"


def recover_hidden(parent: str | os.PathLike) -> list[str]:
    """Clean up after a process killed while writing, replacing or deleting in ``parent``.

    A directory caught between the two renames of a replacement (its ``NAME`` missing, its
    previous version complete as ``.NAME.old-*``) is renamed back to ``NAME``; every other hidden
    sibling (``.NAME.tmp-*`` half-written, ``.NAME.old-*`` already replaced, ``.NAME.deleting-*``
    half-deleted) is deleted.

    Returns:
        What was done, one line each (empty if there was nothing to do).
    """
    root = Path(parent)
    if not root.is_dir():
        return []
    done = []
    found = sorted(
        (path for path in root.iterdir() if _HIDDEN.fullmatch(path.name)),
        key=lambda path: path.stat().st_mtime, reverse=True,  # the newest old copy first
    )  # fmt: skip
    for path in found:
        match = _HIDDEN.fullmatch(path.name)
        final = root / match["name"]
        if match["kind"] == "old" and not final.exists() and _complete(path):
            os.rename(path, final)
            done.append(f"restored {final} from {path.name} (a replacement was interrupted)")
            continue
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
        done.append(f"deleted {path.name} (left by an interrupted write)")
    return done


def _complete(path: Path) -> bool:
    """Whether a directory holds at least a checkpoint's config and weights (a half-deleted one
    may not)."""
    return path.is_dir() and all((path / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))


def _check_replaceable(final: Path) -> None:
    if not final.is_dir():
        raise CheckpointError(f"{final} exists and is not a directory; refusing to replace it")
    unknown = sorted({p.name for p in final.iterdir()} - CHECKPOINT_FILES)
    if unknown:
        raise CheckpointError(
            f"{final} exists and holds files that are not part of a checkpoint "
            f"({', '.join(unknown[:5])}); refusing to replace it: choose another directory"
        )


def _swap_in(tmp: Path, final: Path) -> None:
    if not (final.exists() or final.is_symlink()):
        os.rename(tmp, final)
        return
    old = _hidden(final, "old")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old)


def _fsync(path: Path) -> None:
    """Flush a file's (or, on POSIX, a directory's entries') data to disk."""
    if path.is_dir() and os.name != "posix":
        return  # directories cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
