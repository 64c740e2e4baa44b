"""Training tasks: what to read, which model to build, what loss to minimize, how to validate."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from formers.training.config import TASKS, ExperimentConfig
from formers.training.tasks.base import Batch, Log, Task

__all__ = ["Batch", "Task", "make_task"]


def make_task(config: ExperimentConfig, run_dir: Path, device: torch.device, log: Log) -> Task:
    """The task the config names (``translate``, ``lm``, ``mlm`` or ``classify``: see
    :data:`formers.training.config.TASKS`)."""
    module, _, name = TASKS[config.task].cls.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(config, run_dir, device, log)
