"""Rank 0's setup (tokenizer, data cache) may take longer than the collectives' timeout."""

import os
import subprocess
import sys
from pathlib import Path

from training.test_distributed import pytestmark  # noqa: F401 (skips without gloo)

WORKER = Path(__file__).with_name("ddp_setup_worker.py")


def _launch(mode: str, seconds: float) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(WORKER), mode, str(seconds),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_the_others_wait_for_a_setup_longer_than_the_default_timeout():
    done = _launch("setup", 5.0)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "rank 0 done" in done.stdout and "rank 1 done" in done.stdout


def test_a_plain_barrier_would_have_timed_out():
    """The control: the same wait on the default group (2 s timeout) fails."""
    done = _launch("default", 5.0)
    assert done.returncode != 0
    assert "rank 1 done" not in done.stdout
    assert "timed out" in done.stderr.lower()
