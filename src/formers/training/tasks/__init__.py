"""Training tasks: what to read, which model to build, what loss to minimize, how to validate."""

from __future__ import annotations

from pathlib import Path

import torch

from formers.training.config import ExperimentConfig
from formers.training.tasks.base import Batch, Log, Task

__all__ = ["Batch", "Task", "make_task"]


def make_task(config: ExperimentConfig, run_dir: Path, device: torch.device, log: Log) -> Task:
    """The task the config names (``translate``, ``lm``, ``mlm`` or ``classify``)."""
    if config.task == "translate":
        from formers.training.tasks.translation import TranslationTask as cls
    elif config.task == "lm":
        from formers.training.tasks.language_model import LanguageModelTask as cls
    elif config.task == "classify":
        from formers.training.tasks.encoder import ClassificationTask as cls
    else:
        from formers.training.tasks.encoder import MaskedLMTask as cls
    return cls(config, run_dir, device, log)
