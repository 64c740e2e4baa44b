"""The training loop: the paper's recipe (arXiv 1706.03762, section 5) and its descendants.

Adam (0.9, 0.98, 1e-9) or AdamW with decoupled weight decay on matrices (nanoGPT), warmup then
inverse-square-root or cosine decay, label smoothing, residual and attention dropout, gradient
clipping and accumulation, bf16/fp16 autocast on CUDA. What is read, built and minimized comes
from a task (:mod:`formers.training.tasks`: translate, lm, mlm, classify). Validation every epoch
or every N steps; checkpoints of the last N and of the best validation; early stopping;
``resume`` continues exactly where a run stopped (same batches, RNG states, optimizer and
schedule), after repairing what a kill may have left (:mod:`formers.training.run_dir`); a fresh
start refuses a directory that holds a previous run unless ``overwrite`` says to delete it. Ctrl-C
saves a checkpoint before exiting; a loss or gradient that stops being finite stops the run
(:class:`DivergedError`) without saving, so that the last checkpoint is the last good one.

Under ``torchrun`` (:mod:`formers.training.distributed`) N processes train DDP replicas: a step
takes ``update_freq * N`` consecutive batches, rank r every N-th from the r-th, and the gradient
is all ranks' summed loss over the step's total count (N ranks with ``update_freq`` 1 update as
one process with ``update_freq`` N); an epoch's tail too short for a step is dropped (logged).
Rank 0 alone writes the run directory; each rank validates every N-th batch (and sentence) and
the sums are all-reduced, so all ranks get the whole set's metrics and agree on stopping.

What a run directory holds: :mod:`formers.training.run_dir`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from formers.device import resolve_device
from formers.nn.model_output import AuxiliaryLosses
from formers.training.config import ExperimentConfig
from formers.training.distributed import Distributed, unused_parameters
from formers.training.interrupt import deferred_interrupt
from formers.training.optim import autocast_dtype, build_optimizer
from formers.training.run_dir import LOG_FILE, check_run_directory, prepare_run
from formers.training.schedules import lr_lambda
from formers.training.tasks import make_task
from formers.training.tensorboard import TensorBoardLog, require_tensorboard
from formers.training.trainer_checkpoints import CheckpointSteps


class DivergedError(ArithmeticError):
    """The training loss or gradient stopped being finite; the run stopped without saving."""


class Trainer(CheckpointSteps):
    """Train a model on the task the config names.

    Args:
        config: the experiment.
        run_dir: where the tokenizer, logs and checkpoints go.
        resume: continue from the latest checkpoint in ``run_dir`` (error if there is none),
            after repairing what a kill may have left there.
        overwrite: delete a previous run in ``run_dir`` and start again (without it, a fresh
            start into a directory that holds one is refused).
        progress: show a progress bar.
        distributed: this process's place in a data-parallel run (default: from torchrun's
            environment; a single process without it).

    Raises:
        RunDirectoryError: a fresh start into a previous run's directory, or both ``resume``
            and ``overwrite``.
    """

    def __init__(
        self, config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
        overwrite: bool = False, progress: bool = True, distributed: Distributed | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.run_dir = config, Path(run_dir)
        self._tensorboard: TensorBoardLog | None = None  # [train] tensorboard: rank 0's events
        # every process checks before the process group exists: nothing is written yet
        check_run_directory(self.run_dir, resume=resume, overwrite=overwrite)
        if config.train.tensorboard:
            require_tensorboard()  # before --overwrite deletes anything
        self.dist = distributed or Distributed.from_env()
        self.progress = progress and self.dist.is_main
        # "seconds": wall time spent in fit() (training and validation), summed over resumes
        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "batches_done": 0, "best": None, "best_step": None,
            "bad_validations": 0, "seconds": 0.0,
        }  # fmt: skip
        self._clock: float | None = None  # perf_counter at the last _tick, while fit() runs
        self.train_cfg = config.train
        if self.train_cfg.threads:
            torch.set_num_threads(self.train_cfg.threads)
        self.device = self.dist.init(resolve_device(self.train_cfg.device))
        self.dtype = autocast_dtype(self.device, self.train_cfg.precision)
        self._seed(self.train_cfg.seed)
        with self.dist.main_first():  # the others read the tokenizer and cache rank 0 made
            if self.dist.is_main:
                keep = self.train_cfg.keep_last
                done = prepare_run(self.run_dir, resume=resume, overwrite=overwrite, keep_last=keep)
                for line in done:  # what --overwrite deleted, or what --resume repaired
                    self._say(line)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / "experiment.json").write_text(
                    json.dumps(config.to_dict(), indent=2)
                )
                if self.train_cfg.tensorboard:
                    self._tensorboard = TensorBoardLog(self.run_dir)
            self.task = make_task(config, self.run_dir, self.device, self._log)
        if self.dist.rank > 0:  # its own dropout; DDP gives it rank 0's initial weights
            self._seed(self.train_cfg.seed + self.dist.rank)
        self.tokenizer, self.model = self.task.tokenizer, self.task.model
        self.model_config = self.task.model_config
        t = self.train_cfg
        self.optimizer = build_optimizer(
            self.model, t.optimizer, betas=(t.beta1, t.beta2), eps=t.eps,
            weight_decay=t.weight_decay, fused=self.device.type in ("cpu", "cuda"),
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.train_cfg, self.model_config.d_model)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self._interrupted = False  # Ctrl-C seen by this process
        self._stop = False  # ... and agreed by all processes at the last step boundary
        self._saved_step: int | None = None  # the step of the last step_N checkpoint
        self._validated_step: int | None = None  # the step of the last validation
        if resume:
            self._resume()
        # what the task's loss calls: DDP's forward hooks its backward into the gradient sync
        unused = []
        if self.dist.enabled:  # e.g. BERT's pooler under MLM: DDP must know
            batch = self.task.collate(self.task.epoch_batches(0)[0])
            unused = unused_parameters(self.model, lambda: self._loss(self.model, batch)[0])
            if unused:
                self._say(f"DDP: no gradient for {', '.join(unused)}; find_unused_parameters on")
        self.ddp_model = self.dist.wrap(self.model, find_unused=bool(unused))

    # --- setup -------------------------------------------------------------------------------

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # --- logging -------------------------------------------------------------------------

    def _tick(self) -> None:
        """Add the wall time since the last tick to ``state["seconds"]``."""
        now = time.perf_counter()
        if self._clock is not None:
            self.state["seconds"] += now - self._clock
        self._clock = now

    def _say(self, message: str) -> None:
        """Print a message (rank 0 only)."""
        if self.dist.is_main:
            tqdm.write(message)

    def _log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to log.jsonl with the time (UTC) and, during :meth:`fit`, the
        training seconds so far (rank 0 only: the records are global)."""
        if not self.dist.is_main:
            return
        record = {**record, "time": datetime.datetime.now(datetime.UTC).isoformat("T", "seconds")}
        if self._clock is not None:
            self._tick()
            record["seconds"] = round(self.state["seconds"], 1)
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            self._tensorboard.write(record)

    # --- the loop ----------------------------------------------------------------------------

    def _loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's ``(loss_sum, nll_sum)`` of a batch, under autocast when configured, plus
        the auxiliary losses its modules added (:mod:`formers.nn.model_output`), each a mean
        per unit, so counted ``batch.count`` times in the sum."""
        dtype = self.dtype or torch.float32
        autocast = torch.autocast(self.device.type, dtype, enabled=bool(self.dtype))
        with autocast, AuxiliaryLosses() as aux:
            loss, nll = self.task.loss(model, batch)
        extra = aux.total()
        return (loss, nll) if extra is None else (loss + extra * batch.count, nll)

    def _train_step(self, group: list[Any]) -> dict[str, float]:
        """One update from ``group`` (this rank's share of the step's batches); the statistics
        returned are over all ranks. Also agrees on whether Ctrl-C stops the run here."""
        t, ranks = self.train_cfg, self.dist.world_size
        batches = [self.task.collate(item) for item in group]
        (count,) = self.dist.all_reduce_sum([sum(b.count for b in batches)])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = nll_sum = 0.0
        for i, batch in enumerate(batches):
            # DDP averages the gradients over the ranks in the last micro-batch's backward;
            # times `ranks`, that makes the sum of all ranks' losses over the total count
            defer = self.dist.enabled and i < len(batches) - 1
            with self.ddp_model.no_sync() if defer else contextlib.nullcontext():
                loss, nll = self._loss(self.ddp_model, batch)
                self.scaler.scale(loss * ranks / max(count, 1)).backward()
            loss_sum += float(loss.detach())
            nll_sum += float(nll)
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(
            self.model.parameters(), t.clip_norm if t.clip_norm > 0 else math.inf
        )
        # all ranks see the same (all-reduced) gradient; fp16's scaler skips non-finite ones
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            raise self._diverged("gradient norm", float(grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        tokens = sum(b.tokens for b in batches)
        if self.dist.enabled:
            totals = self.dist.all_reduce_sum([loss_sum, nll_sum, tokens, self._interrupted])
            loss_sum, nll_sum, tokens, self._stop = *totals[:3], totals[3] > 0
        if not math.isfinite(loss_sum):
            raise self._diverged("training loss", loss_sum)
        return {
            "loss": loss_sum / max(count, 1),
            "nll": nll_sum / max(count, 1),
            "tokens": int(tokens),
            "grad_norm": float(grad_norm),
        }

    def _diverged(self, what: str, value: float) -> DivergedError:
        step, lr = self.state["step"] + 1, self.scheduler.get_last_lr()[0]
        kept = (
            f"the last checkpoint, step {self._saved_step}, is intact (--resume continues from "
            "it)" if self._saved_step is not None else "no checkpoint was written yet"
        )  # fmt: skip
        return DivergedError(
            f"step {step}: the {what} is {value}; stopped without saving this step, and {kept}. "
            f"Lower [train] lr (the rate was {lr:.3g}), or clip gradients with clip_norm"
        )

    def validate(self) -> dict[str, Any] | None:
        """Validate, log, checkpoint, and track the best result; return the metrics."""
        metrics = self.task.validate(self.model, self.dist)
        self._validated_step = self.state["step"]
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
        if better:  # best_step: so that --resume can repair a best that a kill left behind
            self.state["best"], self.state["bad_validations"] = value, 0
            self.state["best_step"] = self.state["step"]
        else:
            self.state["bad_validations"] += 1
        record = {"type": "valid", "step": self.state["step"], "epoch": self.state["epoch"]}
        self._log({**record, **metrics, "best": self.state["best"]})
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        self._say(f"step {self.state['step']} validation: {summary}")
        self.save()
        if better:
            self.save("best")
        return metrics

    def _on_interrupt(self) -> None:
        """The first Ctrl-C: stop at the next step boundary (a consistent checkpoint)."""
        self._interrupted = True
        self._say("stopping after this step (Ctrl-C again to abort without saving)")

    def _stopping(self) -> bool:
        """Whether Ctrl-C stops the run (under torchrun: as agreed in the last step)."""
        return self._stop if self.dist.enabled else self._interrupted

    def _done(self) -> bool:
        if self._stopping():
            return True
        t, s = self.train_cfg, self.state
        if t.max_steps and s["step"] >= t.max_steps:
            return True
        if t.max_epochs and s["epoch"] >= t.max_epochs:
            return True
        return bool(t.patience and s["bad_validations"] >= t.patience)

    def fit(self) -> dict[str, Any]:
        """Train until max_steps / max_epochs / early stopping; return the final state.

        The final weights are always validated: when the last step falls between two
        ``validate_every`` checks (or mid-epoch), one more validation follows it."""
        self._interrupted = self._stop = False
        t = self.train_cfg
        per_step, need = self._batches_per_step()
        batches = len(self.task.epoch_batches(0))
        if self.dist.enabled and batches < need:
            raise ValueError(
                f"an epoch has {batches} batches, fewer than one step takes (update_freq x "
                f"processes = {per_step}); use smaller batches or fewer processes"
            )
        steps_per_epoch = (batches - need) // per_step + 1  # the steps _loop takes
        bar = tqdm(
            total=t.max_steps or t.max_epochs * steps_per_epoch,
            initial=self.state["step"],
            disable=not self.progress,
            unit="step",
        )  # fmt: skip  (a total, so that the bar shows an ETA)
        self.model.train()
        self._clock = time.perf_counter()
        start_step = self.state["step"]
        try:
            with deferred_interrupt(self._on_interrupt):
                self._loop(bar)
                step = self.state["step"]
                if step > start_step and step != self._validated_step and not self._stopping():
                    self.validate()  # the final weights, when the last step fell between checks
        finally:
            bar.close()
            if self._tensorboard is not None:
                self._tensorboard.flush()
        if self._stopping():
            path = self.save()
            self.dist.barrier()
            self._say(f"interrupted: saved {path}; continue with --resume")
            raise KeyboardInterrupt
        if self._saved_step != self.state["step"]:
            self.save()
        self.dist.barrier()  # the last checkpoint is written when fit() returns, on every rank
        self._tick()
        self._clock = None
        return dict(self.state)

    def _batches_per_step(self) -> tuple[int, int]:
        """``(batches a step takes, fewest it may take)``: one process takes an epoch's last,
        partial step; several drop it, so that every rank has its share."""
        per_step = self.train_cfg.update_freq * self.dist.world_size
        return per_step, per_step if self.dist.enabled else 1

    def _loop(self, bar: tqdm) -> None:
        t, s = self.train_cfg, self.state
        window_tokens, window_start = 0, time.perf_counter()
        per_step, need = self._batches_per_step()
        while not self._done():
            batches = self.task.epoch_batches(s["epoch"])
            while s["batches_done"] + need <= len(batches) and not self._done():
                group = batches[s["batches_done"] : s["batches_done"] + per_step]
                stats = self._train_step(self.dist.shard(group))
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
            if s["batches_done"] + need > len(batches) and not self._stopping():
                if s["batches_done"] < len(batches):
                    dropped = len(batches) - s["batches_done"]
                    self._log({"type": "epoch", "step": s["step"], "epoch": s["epoch"],
                               "dropped_batches": dropped})  # fmt: skip
                s["epoch"] += 1
                s["batches_done"] = 0
                if not t.validate_every:
                    self.validate()
