"""What every exporter shares: its error, the lazy import of the target runtime, and writing the
output directory whole or not at all."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

EXTRAS = {"ctranslate2": "ct2", "onnxruntime": "onnx", "onnx": "onnx", "onnxscript": "onnx"}


class ExportError(ValueError):
    """A checkpoint cannot be exported: its family or one of its options has no equivalent in
    the target runtime (the message names it), or the output directory is in the way."""


def require_module(name: str, purpose: str) -> ModuleType:
    """Import an optional runtime package, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        extra = EXTRAS.get(name, name)
        raise ExportError(
            f"{purpose} needs the {name} package: pip install 'formers[{extra}]'"
        ) from None


def check_out(out: str | os.PathLike, *, force: bool) -> Path:
    """The absolute output path, refused when it exists unless ``force`` (and then only when it
    is a directory), before any work is done."""
    path = Path(os.path.abspath(out))
    if path.exists() or path.is_symlink():
        if not force:
            raise ExportError(f"{path} already exists; pass --force (force=True) to replace it")
        if not path.is_dir():
            raise ExportError(f"{path} exists and is not a directory; refusing to replace it")
    if not path.parent.is_dir():
        raise ExportError(f"the parent folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def output_directory(out: str | os.PathLike, *, force: bool) -> Iterator[Path]:
    """Yield a hidden sibling to fill; on success it replaces ``out``, on any error (Ctrl-C
    included) it is removed and ``out`` is left as it was."""
    final = check_out(out, force=force)
    tmp = final.with_name(f".{final.name}.export-tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a previous kill's leftover
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.export-old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
