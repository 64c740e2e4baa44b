"""Which subcommand serves which model family, and a check made before loading any weights."""

from __future__ import annotations

import os
from typing import Any

# the command that runs a checkpoint of each family
COMMAND_OF_FAMILY = {
    "transformer": "formers translate",
    "gpt": "formers generate",
    "bert": "formers predict",
}
_WHAT = {
    "transformer": "an encoder-decoder (translation) model",
    "gpt": "a decoder-only language model",
    "bert": "a BERT-style encoder",
}


def require_architecture(
    checkpoint: str | os.PathLike, wanted: str, command: str
) -> dict[str, Any]:
    """The checkpoint's ``config.json``, after checking that it holds a ``wanted`` model.

    Args:
        checkpoint: the checkpoint directory.
        wanted: the family the command runs (``"transformer"``, ``"gpt"`` or ``"bert"``).
        command: the command, for the message (e.g. ``"formers generate"``).

    Raises:
        ValueError: the checkpoint holds another family; the message names it and the command
            to use instead. (A missing or broken checkpoint raises ``CheckpointError``.)
    """
    from formers.training.checkpoint_io import read_config, require_directory

    config: dict[str, Any] = read_config(require_directory(checkpoint))
    found = config.get("architecture", "transformer")
    if found != wanted:
        instead = COMMAND_OF_FAMILY.get(found)
        raise ValueError(
            f"{checkpoint} holds {_WHAT.get(found, repr(found))} ({found!r}); {command} needs "
            f"{_WHAT[wanted]} ({wanted!r})" + (f"; use {instead} for this one" if instead else "")
        )
    return config
