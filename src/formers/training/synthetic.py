"""A compact training loop for the synthetic tasks (the demo and the copy-task test).

It uses the paper's recipe in miniature: Adam (0.9, 0.98, 1e-9), linear warmup then inverse
square root decay, label smoothing. The full trainer (data files, checkpoints, validation) is
separate; this loop exists so that a fresh install can show a model learning in seconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from formers.data.synthetic import PAD, SyntheticTask
from formers.decoding import greedy_search
from formers.training.losses import sequence_cross_entropy
from formers.training.schedules import inverse_sqrt


def train_synthetic(
    model: nn.Module,
    task: SyntheticTask,
    *,
    steps: int,
    batch_size: int = 64,
    peak_lr: float = 1e-3,
    warmup: int = 100,
    label_smoothing: float = 0.1,
    clip_norm: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` on batches drawn from ``task``; return the loss of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    factor = inverse_sqrt(peak_lr, warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: factor(i + 1))
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), disable=not progress, desc=f"training ({task.kind})", unit="step")
    for _ in bar:
        batch = task.sample(batch_size, generator)
        logits = model(batch.src, batch.tgt_in)  # (b, t, V)
        loss = sequence_cross_entropy(logits, batch.tgt_out, PAD, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    model.eval()
    return losses


@torch.no_grad()
def exact_match(model: nn.Module, task: SyntheticTask, n: int = 200, seed: int = 1) -> float:
    """Fraction of ``n`` held-out sources whose greedy output equals the target exactly."""
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    out = greedy_search(model, batch.src, max_len_a=1.0, max_len_b=1)
    width = max(out.tokens.size(1), batch.tgt_out.size(1))
    pred = F.pad(out.tokens, (0, width - out.tokens.size(1)), value=PAD)
    gold = F.pad(batch.tgt_out, (0, width - batch.tgt_out.size(1)), value=PAD)
    return (pred == gold).all(dim=1).float().mean().item()
