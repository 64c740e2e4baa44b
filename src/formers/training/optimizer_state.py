"""An optimizer's ``state_dict()`` saved without pickle: tensors in safetensors, the rest in JSON.

``optimizer.state_dict()`` is a tree of dicts (some keyed by int parameter ids), lists, tuples,
numbers, strings, ``None`` and tensors. :func:`flatten_state` splits it into a JSON-able tree and
a flat ``{name: tensor}`` dict, with names that follow the path (``state.0.exp_avg``). In the JSON
tree, markers keep what JSON alone would lose, so that :func:`unflatten_state` rebuilds an
identical tree, types included (Adam's ``betas`` stay a tuple, parameter ids stay ints):

- a tensor becomes ``{"__tensor__": "state.0.exp_avg"}`` (this also records which keys held
  tensors: Adam's ``step`` is a 0-d tensor, other optimizers keep it as an int);
- a tuple becomes ``{"__tuple__": [...]}``;
- a dict with a key that is not a string becomes ``{"__items__": [[key, value], ...]}``.

Files: ``optimizer.safetensors`` (the tensors) and ``optimizer.json`` (the tree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from formers.training.checkpoint_io import (
    OPTIMIZER_JSON_FILE,
    OPTIMIZER_TENSORS_FILE,
    CheckpointError,
    read_json,
    read_tensors,
    require_file,
    write_json,
)

TENSOR, TUPLE, ITEMS = "__tensor__", "__tuple__", "__items__"
_MARKERS = {TENSOR, TUPLE, ITEMS}
_SCALARS = (bool, int, float, str, type(None))


def flatten_state(tree: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a state dict into a JSON-able tree and its tensors (moved to the CPU).

    Raises:
        CheckpointError: the tree holds something that is not a tensor, container or JSON scalar.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: list[str]) -> Any:
        if isinstance(value, torch.Tensor):
            name = ".".join(path) or "tensor"
            if name in tensors:  # e.g. a key "a.b" beside a nested a -> b
                name = f"{name}~{len(tensors)}"
            tensors[name] = value.detach().cpu().contiguous()
            return {TENSOR: name}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and not _MARKERS & set(value):
                return {k: walk(v, [*path, k]) for k, v in value.items()}
            for k in value:
                if not isinstance(k, _SCALARS):
                    raise CheckpointError(f"optimizer state key {k!r} at {path} is not a scalar")
            return {ITEMS: [[k, walk(v, [*path, str(k)])] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {TUPLE: [walk(v, [*path, str(i)]) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, [*path, str(i)]) for i, v in enumerate(value)]
        if isinstance(value, _SCALARS):
            return value
        raise CheckpointError(
            f"optimizer state at {'.'.join(path)} is a {type(value).__name__}, which cannot be "
            "saved without pickle (only tensors, numbers, strings, lists, tuples and dicts can)"
        )

    return walk(tree, []), tensors


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the state dict that :func:`flatten_state` split."""
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1 and TENSOR in tree:
        name = tree[TENSOR]
        if name not in tensors:
            raise CheckpointError(f"{OPTIMIZER_TENSORS_FILE} has no tensor {name!r}")
        return tensors[name]
    if len(tree) == 1 and TUPLE in tree:
        return tuple(unflatten_state(v, tensors) for v in tree[TUPLE])
    if len(tree) == 1 and ITEMS in tree:
        return {k: unflatten_state(v, tensors) for k, v in tree[ITEMS]}
    return {k: unflatten_state(v, tensors) for k, v in tree.items()}


def save_optimizer_state(state_dict: dict[str, Any], directory: Path) -> None:
    """Write ``optimizer.safetensors`` and ``optimizer.json`` into ``directory``."""
    tree, tensors = flatten_state(state_dict)
    # moments of column-major weights (inference layout) are column-major too
    tensors = {name: t.contiguous() for name, t in tensors.items()}
    save_file(tensors, str(directory / OPTIMIZER_TENSORS_FILE))
    write_json(directory / OPTIMIZER_JSON_FILE, tree)


def load_optimizer_state(directory: Path) -> dict[str, Any]:
    """Read back the state dict written by :func:`save_optimizer_state`."""
    tree = read_json(require_file(directory, OPTIMIZER_JSON_FILE))
    tensors = read_tensors(require_file(directory, OPTIMIZER_TENSORS_FILE))
    return unflatten_state(tree, tensors)
