"""Running a model for inference without losing the caller's mode.

Validation during training, translation and generation all need the same three things: dropout
off (``model.eval()``), no autograd (``torch.inference_mode``), and the model back in the mode it
was in afterwards, also when the work in between raises or is interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and ``torch.inference_mode`` inside the block; the model's ``training`` flag
    (of every submodule, as ``model.train(flag)`` sets it) is restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """The ``modules`` in eval mode inside the block, as cheap as possible: only those whose own
    ``training`` flag is set are switched (``eval()`` walks every submodule, which costs more
    than a decoding step of a small model), and switched back on the way out."""
    switched = [m for m in modules if m.training]
    for m in switched:
        m.eval()
    try:
        yield
    finally:
        for m in switched:
            m.train()
