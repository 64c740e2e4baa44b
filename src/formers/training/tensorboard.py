"""TensorBoard event files beside ``log.jsonl``, for those who watch runs in TensorBoard (as
fairseq's and Hugging Face's users do): ``[train] tensorboard = true``.

Every ``train`` record of the log becomes scalars ``train/loss``, ``train/nll``, ``train/ppl``,
``train/lr``, ``train/tokens_per_s`` and ``train/grad_norm`` at its step, and every ``valid``
record ``valid/<metric>`` for each number it holds (loss, BLEU, chrF, accuracy, ...). The files
go to ``RUN_DIR/tensorboard`` (``tensorboard --logdir RUN_DIR/tensorboard``), written by PyTorch's
own ``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package (in the
``viz`` extra). A resumed run appends new event files to the same folder; the trainer flushes
them when ``fit()`` ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from formers.training.run_dir import TENSORBOARD_DIR

TRAIN_SCALARS = ("loss", "nll", "ppl", "lr", "tokens_per_s", "grad_norm")
NOT_METRICS = ("step", "epoch", "best", "seconds", "tokens")  # numbers of a valid record


def require_tensorboard() -> Any:
    """PyTorch's ``SummaryWriter`` class.

    Raises:
        ValueError: the ``tensorboard`` package is not installed (the message says how).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "[train] tensorboard = true needs the tensorboard package: pip install "
            "'formers[viz]' (or tensorboard)"
        ) from None
    return SummaryWriter


class TensorBoardLog:
    """Writes the log's training and validation records as TensorBoard scalars.

    Args:
        run_dir: the run directory; the event files go to its ``tensorboard`` folder.

    Raises:
        ValueError: the ``tensorboard`` package is not installed (the message says how).
    """

    def __init__(self, run_dir: str | Path) -> None:
        summary_writer = require_tensorboard()
        self.directory = Path(run_dir) / TENSORBOARD_DIR
        self.writer = summary_writer(str(self.directory))

    def write(self, record: dict[str, Any]) -> None:
        """Add the scalars of one log record (records of other types are ignored)."""
        kind, step = record.get("type"), record.get("step")
        if kind not in ("train", "valid") or not isinstance(step, int):
            return
        for name, value in record.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if (kind == "train" and name in TRAIN_SCALARS) or (
                kind == "valid" and name not in NOT_METRICS
            ):
                self.writer.add_scalar(f"{kind}/{name}", value, global_step=step)

    def flush(self) -> None:
        """Write what is pending to the event file."""
        self.writer.flush()
