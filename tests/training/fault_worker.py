"""A training process for test_fault_injection.py that SIGKILLs itself at a chosen point.

``python fault_worker.py EXPERIMENT_JSON RUN_DIR [--resume] [--kill POINT@STEP]`` trains like
``formers train`` (the experiment as a JSON object of tables). With ``--kill`` the process
kills itself with SIGKILL (no cleanup, no ``finally``: as ``kill -9`` or a power cut would) the
first time it reaches POINT once the trainer is at step STEP or later. The points are the
moments of the save sequence where a kill can leave something behind:

- ``write_step``: while a ``step_N`` checkpoint is half written (in its hidden temporary);
- ``before_best``: after ``step_N`` is written and pruned, before ``best`` is written;
- ``swap_best``: between the two renames that replace ``best`` (no ``best`` at all);
- ``prune``: while an old step checkpoint is being deleted;
- ``after_valid_log``: after a validation is logged, before its ``step_N`` is written;
- ``torn_log``: halfway through writing a line of ``log.jsonl``.

The patches wrap the library's own functions; nothing in ``formers`` knows about them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from pathlib import Path

from formers.training import checkpoint, checkpoint_io
from formers.training.config import experiment_from_dict
from formers.training.trainer import Trainer

POINTS = ("write_step", "before_best", "swap_best", "prune", "after_valid_log", "torn_log")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hidden(final: Path, kind: str) -> Path:
    """The hidden sibling a replacement (``old``) or a deletion (``deleting``) renames to (the
    layout of formers.training.checkpoint_io)."""
    return final.parent / f".{final.name}.{kind}-{uuid.uuid4().hex[:12]}"


def arm(point: str, step: int, trainer: Trainer) -> None:
    """Patch the library so that the process dies at ``point`` once at ``step`` or later."""

    def due() -> bool:
        return trainer.state["step"] >= step

    if point == "write_step":
        original_write = checkpoint.save_optimizer_state

        def write_then_die(state, directory):
            original_write(state, directory)  # the weights and optimizer are in the temporary
            if due() and Path(directory).name.startswith(".step_"):
                die()

        checkpoint.save_optimizer_state = write_then_die
    elif point == "before_best":
        original_save = trainer.save

        def save(name=None):
            if name == "best" and due():
                die()
            return original_save(name)

        trainer.save = save
    elif point == "swap_best":
        original_swap = checkpoint_io._swap_in

        def swap_then_die(tmp, final):
            if final.name == "best" and final.exists() and due():
                os.rename(final, hidden(final, "old"))  # the first rename only
                die()
            original_swap(tmp, final)

        checkpoint_io._swap_in = swap_then_die
    elif point == "prune":

        def remove_then_die(path):
            if due():
                os.rename(path, hidden(path, "deleting"))
                die()
            checkpoint_io.remove_directory(path)

        checkpoint.remove_directory = remove_then_die
    elif point in ("after_valid_log", "torn_log"):
        original_log = trainer._log

        def log(record):
            if point == "torn_log" and due() and record.get("type") == "train":
                line = json.dumps(record)
                with open(trainer.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
                    f.write(line[: len(line) // 2])  # half a line, no newline
                die()
            original_log(record)
            if point == "after_valid_log" and due() and record.get("type") == "valid":
                die()

        trainer._log = log
    else:
        raise SystemExit(f"unknown kill point {point!r}; choose one of {', '.join(POINTS)}")


def main(argv: list[str]) -> None:
    experiment = experiment_from_dict(json.loads(Path(argv[0]).read_text()))
    run_dir = Path(argv[1])
    trainer = Trainer(experiment, run_dir, resume="--resume" in argv, progress=False)
    if "--kill" in argv:
        point, _, step = argv[argv.index("--kill") + 1].partition("@")
        arm(point, int(step or 0), trainer)
    trainer.fit()


if __name__ == "__main__":
    main(sys.argv[1:])
