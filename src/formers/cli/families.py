"""A check made before loading any weights: does the checkpoint hold the kind of model a command
runs (:data:`formers.models.registry.KINDS`)?"""

from __future__ import annotations

import os
from typing import Any


def checkpoint_family(checkpoint: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """The checkpoint's ``config.json`` and the family (:mod:`formers.models.registry`) of the
    model it describes; no weights are read."""
    from formers.models.registry import get_family
    from formers.training.checkpoint_io import read_config, require_directory

    config: dict[str, Any] = read_config(require_directory(checkpoint))
    return config, get_family(config.get("architecture", "transformer"))


def require_architecture(
    checkpoint: str | os.PathLike, wanted: str, command: str
) -> dict[str, Any]:
    """The checkpoint's ``config.json``, after checking that it holds a ``wanted`` model.

    Args:
        checkpoint: the checkpoint directory.
        wanted: the kind of model the command runs (``"encoder-decoder"``, ``"decoder-only"``
            or ``"encoder-only"``: any family of that kind).
        command: the command, for the message (e.g. ``"formers generate"``).

    Raises:
        ValueError: the checkpoint holds another kind; the message names it and the command to
            use instead. (A missing or broken checkpoint raises ``CheckpointError``.)
    """
    from formers.models.registry import KINDS

    config, found = checkpoint_family(checkpoint)
    if found.kind != wanted:
        raise ValueError(
            f"{checkpoint} holds {found.what} ({found.name!r}); {command} needs "
            f"{KINDS[wanted].what}; use {found.command} for this one"
        )
    return config
