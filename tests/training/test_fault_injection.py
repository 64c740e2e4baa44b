"""Kill -9 at every point of the save sequence, resume each time: nothing lost, nothing stale.

A run is SIGKILLed seven times (fault_worker.py lists the points: half-written step checkpoint,
between ``step_N`` and ``best``, between the two renames that replace ``best``, while pruning,
between logging a validation and saving its step, halfway through a log line) and resumed after
each kill. Its final weights, optimizer state and trainer state, its ``best`` checkpoint, the
step checkpoints kept and its logged steps and validations must equal those of a run that was
never interrupted, with no hidden temporary left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from data.helpers import tiny_pairs, write_lines
from safetensors.torch import load_file

from formers.data.tokenizer import Tokenizer

WORKER = Path(__file__).with_name("fault_worker.py")
STEPS, EVERY, KEEP = 24, 4, 2
# (kill point, at or after step): each process dies there, the next one resumes
KILLS = [
    ("write_step", 8),  # step_8 half written: resume from step_4
    ("before_best", 12),  # step_12 written, best still step 8's
    ("swap_best", 16),  # best renamed away, the new one not yet in: no best at all
    ("prune", 20),  # step_12 half deleted after step_20 was written (and best is behind)
    ("after_valid_log", 24),  # validation 24 logged, step_24 never written: resume from 20
    ("torn_log", 22),  # half a log line
    ("before_best", 24),  # the last validation: only a repair on resume can fix best
]
VOLATILE = {"time", "seconds", "tokens_per_s"}  # wall-clock values


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault_corpus")
    pairs, valid = tiny_pairs(120, seed=0), tiny_pairs(16, seed=1)
    paths = {
        "train_src": write_lines(root / "train.en", [s for s, _ in pairs]),
        "train_tgt": write_lines(root / "train.de", [t for _, t in pairs]),
        "valid_src": write_lines(root / "valid.en", [s for s, _ in valid]),
        "valid_tgt": write_lines(root / "valid.de", [t for _, t in valid]),
    }
    tokenizer = Tokenizer.train([x for pair in pairs for x in pair], 60)
    tokenizer.save(root)
    config = {
        "data": {k: str(v) for k, v in paths.items()},
        "tokenizer": {"path": str(root / "tokenizer.model")},
        "model": {"preset": "transformer_tiny", "d_model": 32, "d_ff": 64, "num_heads": 2,
                  "num_encoder_layers": 1, "num_decoder_layers": 1, "dropout": 0.1},
        "train": {"max_tokens": 300, "lr": 3e-3, "warmup": 4, "max_steps": STEPS,
                  "max_epochs": 0, "validate_every": EVERY, "valid_bleu": False,
                  "best_metric": "loss", "log_every": 1, "device": "cpu", "threads": 1,
                  "keep_last": KEEP},
    }  # fmt: skip
    path = root / "experiment.json"
    path.write_text(json.dumps(config))
    return path


def run_worker(experiment: Path, run_dir: Path, *args: str) -> int:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(experiment), str(run_dir), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"worker {args} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode


def steps_and_validations(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in VOLATILE}
        for r in records
        if r["type"] in ("train", "valid")
    ]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("model.safetensors", "optimizer.safetensors"):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].equal(y[key]), f"{a.name}/{name}: {key} differs"
    assert (a / "optimizer.json").read_text() == (b / "optimizer.json").read_text()
    states = [json.loads((c / "trainer_state.json").read_text()) for c in (a, b)]
    for state in states:
        state.pop("seconds")
    assert states[0] == states[1], f"{a} and {b}: the trainer states differ"


def test_kills_during_saving_lose_nothing(experiment, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_worker(experiment, straight) == 0
    best_step = json.loads((straight / "checkpoints/best/trainer_state.json").read_text())["step"]
    assert best_step == STEPS, "the last validation must be the best (the last kill needs it)"

    resume: list[str] = []
    for point, step in KILLS:
        code = run_worker(experiment, killed, *resume, "--kill", f"{point}@{step}")
        assert code == -signal.SIGKILL, f"the worker was not killed at {point}@{step}"
        resume = ["--resume"]
    assert run_worker(experiment, killed, "--resume") == 0

    a, b = straight / "checkpoints", killed / "checkpoints"
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in a.iterdir())
    assert sorted(p.name for p in a.iterdir()) == ["best", "step_00000020", "step_00000024"]
    for name in ("step_00000020", "step_00000024", "best"):
        assert_same_checkpoint(a / name, b / name)
    assert steps_and_validations(killed) == steps_and_validations(straight)
