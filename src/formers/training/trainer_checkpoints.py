"""The trainer's checkpoint steps: write the current step, and resume from the latest.

A mixin of :class:`~formers.training.trainer.Trainer`, kept apart so that each file holds one
concept: it reads and writes the trainer's ``state`` (step, epoch, best, seconds, ...), the
model, optimizer, scheduler and grad scaler, the task's own tensors (a recurrent model's segment
memory) and every rank's random states, so that a resumed run continues exactly
(:mod:`formers.training.checkpoint` writes atomically; :mod:`formers.training.run_dir` repairs
what a kill left before this runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class CheckpointSteps:
    """``save`` and ``_resume`` for the :class:`~formers.training.trainer.Trainer` (which sets
    every attribute they use)."""

    state: dict[str, Any]
    run_dir: Path

    def _resume(self) -> None:
        from formers.training.checkpoint import (
            list_checkpoints,
            load_task_tensors,
            load_training_state,
        )

        checkpoints = list_checkpoints(self.run_dir) if self.run_dir.is_dir() else []
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume: no checkpoint in {self.run_dir / 'checkpoints'} (a run stopped "
                "before its first checkpoint starts again with --overwrite)"
            )
        state = load_training_state(checkpoints[-1], self.model, self.optimizer)
        self.task.load_training_tensors(load_task_tensors(checkpoints[-1]))
        self.scheduler.load_state_dict(state.pop("scheduler"))
        scaler_state = state.pop("grad_scaler", None)  # None: not an fp16 run
        if scaler_state is not None:
            self.scaler.load_state_dict(scaler_state)
        state.pop("rng")  # load_training_state has restored the RNG states (rank 0's)
        self.dist.restore_rng_states(state.pop("rng_ranks", None), self._seed)
        self.state.update(state)
        self._saved_step = self.state["step"]
        self._log({"type": "resume", "step": self.state["step"]})
        self._say(f"resumed from {checkpoints[-1]} at step {self.state['step']}")

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the current step as ``checkpoints/step_N`` (or ``checkpoints/NAME``).

        Under torchrun every rank must call this (it gathers their RNG states); rank 0 writes.
        """
        from formers.training.checkpoint import prune_checkpoints, save_checkpoint

        self._tick()
        step = self.state["step"]
        directory = self.run_dir / "checkpoints" / (name or f"step_{step:08d}")
        if name is None:
            self._saved_step = step
        # save_checkpoint adds the RNG states, and load_training_state restores them
        state = {**self.state, "scheduler": self.scheduler.state_dict()}
        if self.scaler.is_enabled():  # fp16: the loss scale and its growth count
            state["grad_scaler"] = self.scaler.state_dict()
        if self.dist.enabled:  # "rng": rank 0's, as for one process; "rng_ranks": everyone's
            ranks = self.dist.gather_rng_states()
            if not self.dist.is_main:
                return directory
            state.update(rng=ranks[0], rng_ranks=ranks)
        config = {"model": self.model_config.to_dict(), **self.task.checkpoint_sections()}
        save_checkpoint(
            directory, self.model, config, tokenizer=self.tokenizer, optimizer=self.optimizer,
            state=state, task_tensors=self.task.training_tensors(),
        )  # fmt: skip
        if name is None:
            prune_checkpoints(self.run_dir, self.train_cfg.keep_last)
        return directory
