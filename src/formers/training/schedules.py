"""Learning-rate schedules.

The paper's schedule (Vaswani et al. 2017, arXiv 1706.03762, eq. 3):
``lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``, a linear warmup then decay with the
inverse square root of the step. :func:`inverse_sqrt` is the same shape parameterized by its
peak learning rate (fairseq's ``inverse_sqrt``), which is easier to tune.

Both return a multiplier for :class:`torch.optim.lr_scheduler.LambdaLR` over a base lr of 1.0;
the first optimizer step is step 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def noam(d_model: int, warmup: int, scale: float = 1.0) -> Callable[[int], float]:
    """``scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` (the paper: scale 1)."""
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")

    def factor(step: int) -> float:
        step = max(step, 1)
        return scale * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)

    return factor


def inverse_sqrt(peak_lr: float, warmup: int) -> Callable[[int], float]:
    """Linear warmup to ``peak_lr`` at step ``warmup``, then ``peak_lr * sqrt(warmup / step)``."""
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")

    def factor(step: int) -> float:
        step = max(step, 1)
        return peak_lr * min(step / warmup, (warmup / step) ** 0.5)

    return factor


def cosine(
    peak_lr: float, warmup: int, decay_steps: int, min_lr: float = 0.0
) -> Callable[[int], float]:
    """Linear warmup to ``peak_lr``, then a half cosine down to ``min_lr`` at ``decay_steps``
    (Loshchilov & Hutter 2016, arXiv 1608.03983, without restarts), then ``min_lr``.

    nanoGPT's schedule; its warmup reaches ``peak_lr * (step + 1) / (warmup + 1)`` at 0-based
    step ``step``, this one ``peak_lr * step / warmup`` at 1-based step ``step`` (the same ramp).
    """
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    if decay_steps <= warmup:
        raise ValueError(f"decay_steps ({decay_steps}) must be > warmup ({warmup})")

    def factor(step: int) -> float:
        step = max(step, 1)
        if step < warmup:
            return peak_lr * step / warmup
        if step >= decay_steps:
            return min_lr
        progress = (step - warmup) / (decay_steps - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak_lr - min_lr)

    return factor


def lr_lambda(train: Any, d_model: int) -> Callable[[int], float]:
    """The multiplier of ``[train]``'s schedule for :class:`~torch.optim.lr_scheduler.LambdaLR`
    (which counts from 0, while the first optimizer step is step 1); ``constant`` warms up
    linearly to ``lr`` and stays there."""
    t = train
    if t.schedule == "noam":
        factor = noam(d_model, t.warmup, t.noam_scale)
    elif t.schedule == "inverse_sqrt":
        factor = inverse_sqrt(t.lr, t.warmup)
    elif t.schedule == "cosine":
        factor = cosine(t.lr, t.warmup, t.decay_steps or t.max_steps, t.min_lr)
    else:
        factor = lambda step: t.lr * min(1.0, step / t.warmup)  # noqa: E731
    return lambda i: factor(i + 1)
