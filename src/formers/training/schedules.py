"""Learning-rate schedules.

The paper's schedule (Vaswani et al. 2017, arXiv 1706.03762, eq. 3):
``lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``, a linear warmup then decay with the
inverse square root of the step. :func:`inverse_sqrt` is the same shape parameterized by its
peak learning rate (fairseq's ``inverse_sqrt``), which is easier to tune.

Both return a multiplier for :class:`torch.optim.lr_scheduler.LambdaLR` over a base lr of 1.0;
the first optimizer step is step 1.
"""

from __future__ import annotations

from collections.abc import Callable


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
