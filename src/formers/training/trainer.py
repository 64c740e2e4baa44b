"""The training loop: the paper's recipe (arXiv 1706.03762, section 5) and its descendants.

Adam (0.9, 0.98, 1e-9) or AdamW with decoupled weight decay on matrices (nanoGPT), warmup then
inverse-square-root or cosine decay, label smoothing, residual and attention dropout, gradient
clipping and accumulation, bf16/fp16 autocast on CUDA. What is read, built and minimized comes
from a task (:mod:`formers.training.tasks`: translate, lm, mlm, classify). Validation every epoch
or every N steps; checkpoints of the last N and of the best validation; early stopping;
``resume`` continues exactly where a run stopped (same batches, RNG states, optimizer and
schedule), and Ctrl-C saves a checkpoint before exiting.

A run directory holds::

    experiment.json        the resolved configuration
    tokenizer.model        the tokenizer (or chars.json / tokenizer.json), made on the first start
    log.jsonl              one JSON object per logged step and per validation, each with the
                           time (UTC) and the training wall seconds so far (summed over resumes)
    cache/                 encoded data
    checkpoints/step_N/    checkpoints (see formers.training.checkpoint); checkpoints/best/
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from formers.device import resolve_device
from formers.training.config import ExperimentConfig
from formers.training.schedules import cosine, inverse_sqrt, noam
from formers.training.tasks import make_task


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype, or None for fp32 (always on CPU: autocast there is slower)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def build_optimizer(
    model: nn.Module, kind: str, *, betas: tuple[float, float], eps: float, weight_decay: float,
    fused: bool,
) -> torch.optim.Optimizer:  # fmt: skip
    """Adam with L2 weight decay on every parameter (fairseq's translation recipe), or AdamW
    (Loshchilov & Hutter 2017, arXiv 1711.05101) decaying only matrices and embeddings, not
    biases and norm gains (GPT-2 / nanoGPT). The base lr is 1; the schedule sets the rate."""
    if kind == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=1.0, betas=betas, eps=eps, weight_decay=weight_decay,
            fused=fused,
        )  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1.0, betas=betas, eps=eps, fused=fused)


class Trainer:
    """Train a model on the task the config names.

    Args:
        config: the experiment.
        run_dir: where the tokenizer, logs and checkpoints go.
        resume: continue from the latest checkpoint in ``run_dir`` (error if there is none).
        progress: show a progress bar.
    """

    def __init__(
        self, config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
        progress: bool = True,
    ) -> None:  # fmt: skip
        self.cfg, self.run_dir, self.progress = config, Path(run_dir), progress
        # "seconds": wall time spent in fit() (training and validation), summed over resumes
        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "batches_done": 0, "best": None, "bad_validations": 0,
            "seconds": 0.0,
        }  # fmt: skip
        self._clock: float | None = None  # perf_counter at the last _tick, while fit() runs
        self.train_cfg = config.train
        if self.train_cfg.threads:
            torch.set_num_threads(self.train_cfg.threads)
        self.device = resolve_device(self.train_cfg.device)
        self.dtype = autocast_dtype(self.device, self.train_cfg.precision)
        self._seed(self.train_cfg.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "experiment.json").write_text(json.dumps(config.to_dict(), indent=2))
        self.task = make_task(config, self.run_dir, self.device, self._log)
        self.tokenizer, self.model = self.task.tokenizer, self.task.model
        self.model_config = self.task.model_config
        t = self.train_cfg
        self.optimizer = build_optimizer(
            self.model, t.optimizer, betas=(t.beta1, t.beta2), eps=t.eps,
            weight_decay=t.weight_decay, fused=self.device.type in ("cpu", "cuda"),
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor())
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self._interrupted = False
        if resume:
            self._resume()

    # --- setup -------------------------------------------------------------------------------

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _lr_factor(self):
        t = self.train_cfg
        if t.schedule == "noam":
            factor = noam(self.model_config.d_model, t.warmup, t.noam_scale)
        elif t.schedule == "inverse_sqrt":
            factor = inverse_sqrt(t.lr, t.warmup)
        elif t.schedule == "cosine":
            factor = cosine(t.lr, t.warmup, t.decay_steps or t.max_steps, t.min_lr)
        else:
            factor = lambda step: t.lr * min(1.0, step / t.warmup)  # noqa: E731
        return lambda i: factor(i + 1)  # LambdaLR counts from 0; the first step is step 1

    def _resume(self) -> None:
        from formers.training.checkpoint import list_checkpoints, load_training_state

        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
        state = load_training_state(checkpoints[-1], self.model, self.optimizer)
        self.scheduler.load_state_dict(state.pop("scheduler"))
        state.pop("rng")  # load_training_state has restored the RNG states
        self.state.update(state)
        tqdm.write(f"resumed from {checkpoints[-1]} at step {self.state['step']}")

    # --- logging and checkpoints -------------------------------------------------------------

    def _tick(self) -> None:
        """Add the wall time since the last tick to ``state["seconds"]``."""
        now = time.perf_counter()
        if self._clock is not None:
            self.state["seconds"] += now - self._clock
        self._clock = now

    def _log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to log.jsonl with the time (UTC) and, during :meth:`fit`, the
        training seconds so far."""
        record = {**record, "time": datetime.datetime.now(datetime.UTC).isoformat("T", "seconds")}
        if self._clock is not None:
            self._tick()
            record["seconds"] = round(self.state["seconds"], 1)
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, name: str | None = None) -> Path:
        """Checkpoint the current step as ``checkpoints/step_N`` (or ``checkpoints/NAME``)."""
        from formers.training.checkpoint import prune_checkpoints, save_checkpoint

        self._tick()
        step = self.state["step"]
        directory = self.run_dir / "checkpoints" / (name or f"step_{step:08d}")
        # save_checkpoint adds the RNG states, and load_training_state restores them
        state = {**self.state, "scheduler": self.scheduler.state_dict()}
        save_checkpoint(
            directory, self.model, self.model_config.to_dict(), tokenizer=self.tokenizer,
            optimizer=self.optimizer, state=state,
        )  # fmt: skip
        if name is None:
            prune_checkpoints(self.run_dir, self.train_cfg.keep_last)
        return directory

    # --- the loop ----------------------------------------------------------------------------

    def _train_step(self, group: list[Any]) -> dict[str, float]:
        t = self.train_cfg
        batches = [self.task.collate(item) for item in group]
        count = sum(b.count for b in batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = nll_sum = 0.0
        for batch in batches:
            with torch.autocast(
                self.device.type, self.dtype or torch.float32, enabled=bool(self.dtype)
            ):
                loss, nll = self.task.loss(self.model, batch)
            self.scaler.scale(loss / max(count, 1)).backward()  # normalized by the whole update
            loss_sum += float(loss.detach())
            nll_sum += float(nll)
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(
            self.model.parameters(), t.clip_norm if t.clip_norm > 0 else math.inf
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {
            "loss": loss_sum / max(count, 1),
            "nll": nll_sum / max(count, 1),
            "tokens": sum(b.tokens for b in batches),
            "grad_norm": float(grad_norm),
        }

    def validate(self) -> dict[str, Any] | None:
        """Validate, log, checkpoint, and track the best result; return the metrics."""
        metrics = self.task.validate(self.model)
        if metrics is None:
            self.save()
            return None
        key = self.task.metric
        if key not in metrics:
            raise ValueError(
                f"[train] best_metric={key!r} is not measured by task {self.cfg.task!r}; "
                f"it measures {sorted(k for k, v in metrics.items() if isinstance(v, float))}"
            )
        value = metrics[key]
        higher = self.task.higher_is_better(key)
        better = self.state["best"] is None or (
            value > self.state["best"] if higher else value < self.state["best"]
        )
        if better:
            self.state["best"], self.state["bad_validations"] = value, 0
        else:
            self.state["bad_validations"] += 1
        record = {"type": "valid", "step": self.state["step"], "epoch": self.state["epoch"]}
        self._log({**record, **metrics, "best": self.state["best"]})
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        tqdm.write(f"step {self.state['step']} validation: {summary}")
        self.save()
        if better:
            self.save("best")
        return metrics

    @contextlib.contextmanager
    def _deferred_interrupt(self):
        """The first Ctrl-C stops the loop at the next step boundary (so that the checkpoint is
        consistent); a second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            tqdm.write("stopping after this step (Ctrl-C again to abort without saving)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _done(self) -> bool:
        if self._interrupted:
            return True
        t, s = self.train_cfg, self.state
        if t.max_steps and s["step"] >= t.max_steps:
            return True
        if t.max_epochs and s["epoch"] >= t.max_epochs:
            return True
        return bool(t.patience and s["bad_validations"] >= t.patience)

    def fit(self) -> dict[str, Any]:
        """Train until max_steps / max_epochs / early stopping; return the final state."""
        self._interrupted = False
        t = self.train_cfg
        steps_per_epoch = math.ceil(len(self.task.epoch_batches(0)) / t.update_freq)
        bar = tqdm(
            total=t.max_steps or t.max_epochs * steps_per_epoch,
            initial=self.state["step"],
            disable=not self.progress,
            unit="step",
        )  # fmt: skip  (a total, so that the bar shows an ETA)
        self.model.train()
        self._clock = time.perf_counter()
        try:
            with self._deferred_interrupt():
                self._loop(bar)
        finally:
            bar.close()
        if self._interrupted:
            path = self.save()
            tqdm.write(f"interrupted: saved {path}; continue with --resume")
            raise KeyboardInterrupt
        if not (self.run_dir / "checkpoints" / f"step_{self.state['step']:08d}").exists():
            self.save()
        self._tick()
        self._clock = None
        return dict(self.state)

    def _loop(self, bar: tqdm) -> None:
        t, s = self.train_cfg, self.state
        window_tokens, window_start = 0, time.perf_counter()
        while not self._done():
            batches = self.task.epoch_batches(s["epoch"])
            while s["batches_done"] < len(batches) and not self._done():
                group = batches[s["batches_done"] : s["batches_done"] + t.update_freq]
                stats = self._train_step(group)
                s["step"] += 1
                s["batches_done"] += len(group)
                window_tokens += stats["tokens"]
                bar.update(1)
                if s["step"] % t.log_every == 0 or s["step"] == 1:
                    elapsed = time.perf_counter() - window_start
                    lr = self.scheduler.get_last_lr()[0]
                    rate = window_tokens / max(elapsed, 1e-9)
                    ppl = math.exp(min(stats["nll"], 100.0))
                    self._log({
                        "type": "train", "step": s["step"], "epoch": s["epoch"], "lr": lr,
                        "tokens_per_s": rate, "ppl": ppl, **stats,
                    })  # fmt: skip
                    bar.set_postfix(
                        loss=f"{stats['loss']:.3f}", ppl=f"{ppl:.1f}", lr=f"{lr:.2e}",
                        tok_s=f"{rate:.0f}",
                    )  # fmt: skip
                    window_tokens, window_start = 0, time.perf_counter()
                if t.validate_every and s["step"] % t.validate_every == 0:
                    self.validate()
            if s["batches_done"] >= len(batches) and not self._interrupted:
                s["epoch"] += 1
                s["batches_done"] = 0
                if not t.validate_every:
                    self.validate()
