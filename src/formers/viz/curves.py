"""Training curves from run directories: loss, learning rate and validation metrics against the
step and the wall time, several runs overlaid (matplotlib, ``pip install formers[viz]``).

Everything comes from a run's ``log.jsonl`` (:mod:`formers.training.trainer`): ``train`` records
give the training loss and the learning rate, ``valid`` records the validation metrics (loss,
BLEU, chrF, accuracy: whichever the run logged), and each record's ``seconds`` is the training
wall time so far (summed over resumes). After a resume the log may repeat steps that the resumed
run computed again; the later record of a step wins. A last line torn by a kill is skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from formers.viz.heatmap import require_matplotlib

LOG_FILE = "log.jsonl"
# validation metrics drawn when a run logged them, in this order
VALID_METRICS = ("loss", "bleu", "chrf", "accuracy")
TRAIN_METRICS = ("loss", "lr")


@dataclass
class RunCurves:
    """The series of one run: ``train[name]`` and ``valid[name]`` are ``(step, seconds, value)``
    triples in step order."""

    name: str
    train: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    valid: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)


def read_curves(run_dir: str | os.PathLike) -> RunCurves:
    """The curves of the run in ``run_dir``.

    Raises:
        FileNotFoundError: the directory or its ``log.jsonl`` does not exist.
        ValueError: a line that is not JSON (but the last), or no training record at all.
    """
    directory = Path(run_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory (give a run directory)")
    path = directory / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {LOG_FILE}: it is not a run directory of formers train (or the "
            "run has not logged anything yet)"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    records: dict[tuple[str, int], dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # torn by a kill: the next --resume truncates it
                continue
            raise ValueError(f"{path}, line {number}: not JSON") from None
        if record.get("type") in ("train", "valid") and isinstance(record.get("step"), int):
            records[(record["type"], record["step"])] = record  # a resumed run's repeat wins
    curves = RunCurves(directory.resolve().name)
    for (kind, step), record in sorted(records.items(), key=lambda item: item[0][1]):
        table = curves.train if kind == "train" else curves.valid
        for name in TRAIN_METRICS if kind == "train" else VALID_METRICS:
            value = record.get(name)
            if isinstance(value, int | float):
                table.setdefault(name, []).append((step, float(record.get("seconds", 0.0)), value))
    if not curves.train:
        raise ValueError(f"{path} has no training record to plot")
    return curves


def plot_curves(runs: list[RunCurves], path: str | os.PathLike, *, dpi: int = 110) -> list[str]:
    """Draw every run's curves into one figure: a row per quantity (training loss, learning
    rate, each validation metric any run logged), against the step (left) and the wall time in
    minutes (right), runs overlaid. Returns the row titles.

    Args:
        runs: from :func:`read_curves`.
        path: image file; its suffix chooses the format (``.png``, ``.svg``, ``.pdf``).
        dpi: resolution of raster formats.
    """
    plt = require_matplotlib()
    rows = [("train", name) for name in TRAIN_METRICS if any(name in r.train for r in runs)]
    rows += [("valid", name) for name in VALID_METRICS if any(name in r.valid for r in runs)]
    titles = [f"{'validation' if kind == 'valid' else 'training'} {name}" for kind, name in rows]
    titles = [t.replace("training lr", "learning rate") for t in titles]
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 2.6 * len(rows)), squeeze=False)
    for (kind, name), title, (by_step, by_time) in zip(rows, titles, axes, strict=True):
        for run in runs:
            series = (run.train if kind == "train" else run.valid).get(name)
            if not series:
                continue
            steps, seconds, values = zip(*series, strict=True)
            style = dict(marker="o", markersize=3) if kind == "valid" else {}
            by_step.plot(steps, values, label=run.name, **style)
            by_time.plot([s / 60 for s in seconds], values, label=run.name, **style)
        for ax, x in ((by_step, "step"), (by_time, "wall time (min)")):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(x, fontsize=8)
            ax.grid(alpha=0.3)
            if name == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return titles
