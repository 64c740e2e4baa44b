"""A run directory's life: one run per directory, started again only when asked, and repaired
when it resumes after a kill.

The policies (the README's "Checkpoints" paragraph states them too):

- **A fresh start refuses a directory that holds a previous run** (its ``experiment.json``,
  ``log.jsonl``, tokenizer or ``checkpoints/``): it would overwrite that run's ``best``, prune its
  checkpoints and append to its log. :func:`check_run_directory` raises before anything is
  written, naming ``--resume``, ``--overwrite`` and ``--run-dir``.
- **``overwrite`` deletes the previous run's files** (:func:`clear_run`). The encoded-data cache
  stays: its files are keyed by the data and the tokenizer, so a new tokenizer never reads them.
- **``resume`` repairs what a kill can leave** (:func:`repair_run`): the hidden temporaries of
  interrupted writes (a checkpoint caught between the two renames of a replacement is restored);
  step checkpoints beyond ``keep_last`` (a kill between writing ``step_N`` and pruning);
  ``checkpoints/best`` one validation behind (a kill between writing ``step_N`` and ``best``:
  the step checkpoint records the step of its best validation, and ``best`` is copied again
  from that step's checkpoint); and ``log.jsonl``: records of steps after the checkpoint (they
  will be trained again, and logged again) and a torn last line are dropped.

A run directory holds::

    experiment.json        the resolved configuration
    tokenizer.model        the tokenizer (or chars.json / tokenizer.json), made on the first start
    log.jsonl              one JSON object per logged step and per validation, each with the
                           time (UTC) and the training wall seconds so far (summed over resumes)
    cache/                 encoded data
    checkpoints/step_N/    checkpoints (see formers.training.checkpoint); checkpoints/best/
    tensorboard/           TensorBoard event files, with [train] tensorboard = true
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from formers.training.checkpoint import (
    BEST,
    CHECKPOINTS_DIR,
    list_checkpoints,
    prune_checkpoints,
)
from formers.training.checkpoint_io import (
    STATE_FILE,
    TOKENIZER_FILES,
    CheckpointError,
    atomic_directory,
    read_json,
    recover_hidden,
)

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
EXPERIMENT_FILE = "experiment.json"
RUN_FILES = (EXPERIMENT_FILE, LOG_FILE, *TOKENIZER_FILES)  # with checkpoints/: a run's own


class RunDirectoryError(ValueError):
    """A run directory cannot be used as asked; the message says why and what to do."""


def previous_run(run_dir: str | os.PathLike) -> list[str]:
    """The files and folders of a previous run in ``run_dir`` (empty: none)."""
    run = Path(run_dir)
    found = [name for name in RUN_FILES if (run / name).exists()]
    for folder in (CHECKPOINTS_DIR, TENSORBOARD_DIR):  # TensorBoard's event files, if any
        path = run / folder
        if path.is_dir() and any(path.iterdir()):
            found.append(f"{folder}/")
    return found


def check_run_directory(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> None:
    """Refuse a fresh start over a previous run (read-only: safe on every process at once).

    Raises:
        RunDirectoryError: both ``resume`` and ``overwrite``, or neither and ``run_dir`` holds a
            previous run.
    """
    if resume and overwrite:
        raise RunDirectoryError("--resume continues a run and --overwrite deletes it: pick one")
    if resume or overwrite:
        return
    found = previous_run(run_dir)
    if found:
        raise RunDirectoryError(
            f"{run_dir} holds a previous run ({', '.join(found)}); continue it with --resume, "
            "start it again with --overwrite (deletes its log and checkpoints), or give "
            "another --run-dir"
        )


def clear_run(run_dir: str | os.PathLike) -> list[str]:
    """Delete a previous run's files (not the data cache); return what was deleted."""
    run = Path(run_dir)
    deleted = previous_run(run)
    for name in deleted:
        path = run / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return deleted


def prepare_run(
    run_dir: str | os.PathLike, *, resume: bool, overwrite: bool, keep_last: int
) -> list[str]:
    """Before a run starts (on one process): delete the previous run (``overwrite``), or repair
    what a kill left before resuming; return what was done, one line each, for the user."""
    if overwrite:
        deleted = clear_run(run_dir)
        return [f"--overwrite: deleted {', '.join(deleted)} in {run_dir}"] if deleted else []
    if resume and Path(run_dir).is_dir():
        return [f"--resume: {line}" for line in repair_run(run_dir, keep_last)]
    return []


def repair_run(run_dir: str | os.PathLike, keep_last: int) -> list[str]:
    """Before resuming: undo what a kill left in ``run_dir`` (see the module docstring).

    Returns:
        What was repaired, one line each.
    """
    run = Path(run_dir)
    done = recover_hidden(run / CHECKPOINTS_DIR)
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        return done
    state = _state(checkpoints[-1])
    records, torn = read_log(run)
    done += _repair_best(run, state, records)  # before pruning: it may copy an older step
    done += [f"deleted {p.name} (beyond keep_last = {keep_last})"
             for p in prune_checkpoints(run, keep_last)]  # fmt: skip
    step = state.get("step")
    if isinstance(step, int) and (torn or any(_step(r, 0) > step for r in records)):
        kept = [r for r in records if _step(r, 0) <= step]
        write_log(run, kept)
        dropped = len(records) - len(kept)
        done.append(
            f"log.jsonl: dropped {dropped} record(s) after step {step}, which is trained again"
            + (", and a torn last line" if torn else "")
        )
    return done


def read_log(run_dir: Path) -> tuple[list[dict[str, Any]], bool]:
    """``log.jsonl``'s records, and whether its last line was torn (not JSON: a kill while
    appending); a bad line elsewhere is an error."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return [], False
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                return records, True
            raise RunDirectoryError(f"{path} line {number} is not JSON") from None
        records.append(record)
    return records, False


def write_log(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``log.jsonl`` atomically with ``records``."""
    path = run_dir / LOG_FILE
    tmp = path.with_name(f".{LOG_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _step(record: dict[str, Any], default: int) -> int:
    step = record.get("step")
    return step if isinstance(step, int) else default


def _state(checkpoint: Path) -> dict[str, Any]:
    state = read_json(checkpoint / STATE_FILE) if (checkpoint / STATE_FILE).is_file() else {}
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint / STATE_FILE} must hold a JSON object")
    return state


def _repair_best(run: Path, state: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Copy ``best`` again from the checkpoint of the step whose validation was the best, when
    ``best`` is missing or from another step."""
    if state.get("best") is None:
        return []
    best_step = state.get("best_step")
    if best_step is None:  # a checkpoint written before best_step was recorded: the log says
        best_step = _best_step_from_log(records, state["best"], _step(state, -1))
    if best_step is None:
        return []
    best = run / CHECKPOINTS_DIR / BEST
    if best.is_dir() and _step(_state(best), -1) == best_step:
        return []
    source = run / CHECKPOINTS_DIR / f"step_{best_step:08d}"
    if not source.is_dir():
        return [
            f"warning: {best} is not the checkpoint of the best validation (step {best_step}), "
            f"and {source.name} is gone; it cannot be repaired"
        ]
    with atomic_directory(best) as tmp:
        for file in source.iterdir():
            shutil.copy2(file, tmp / file.name)
    return [f"rewrote {best} from {source.name}, the best validation's (it was behind)"]


def _best_step_from_log(records: list[dict[str, Any]], best: float, upto: int) -> int | None:
    """The first validation (up to step ``upto``) after which the best value was ``best``."""
    for record in records:
        if record.get("type") == "valid" and record.get("best") == best:
            step = _step(record, -1)
            return step if 0 <= step <= upto else None
    return None
