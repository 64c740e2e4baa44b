"""nanoGPT's CPU Shakespeare run against ``formers train configs/shakespeare_char_cpu.toml``.

nanoGPT's README reports "a loss of only 1.88" for its CPU command::

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

(its log: ``step 2000: train loss 1.7648, val loss 1.8857``). That number is nanoGPT's
``estimate_loss``: the mean loss of 20 random batches of 12 windows, one draw of a noisy
estimate. formers reports the loss over the whole validation text instead (consecutive windows,
the same expectation). To tell a difference between the two implementations from the
difference between the two measures, this script trains both, seed by seed, and measures both
models the same way.

The reference is not installable (nanoGPT is a repository, not a package), so it is written
here, independently of formers' modules, following nanoGPT's ``train.py`` and ``model.py`` of
that README command: data split (first 90% / last 10% of the characters, vocabulary of the
whole text), model (pre-norm blocks, LayerNorm without bias, GELU, learned positions, tied
output, no biases; N(0, 0.02) init with the residual projections at 0.02 / sqrt(2 * layers)),
``torch.manual_seed(seed)`` before building the model, batches from ``torch.randint`` over
window offsets, AdamW (betas 0.9/0.99, weight decay 0.1 on matrices and embeddings only, eps
1e-8), warmup 100 then cosine from 1e-3 to 1e-4 over 2,000 iterations (warmup ``lr * it /
warmup``, as in January 2023), clipping at 1.0, and an estimate every 250 iterations that draws
from the same random stream as training. Check that it is nanoGPT's: with seed 1337 its
step-0 estimate must print nanoGPT's own ``step 0: train loss 4.1676, val loss 4.1649``
(``step0_matches_nanogpt`` in the JSON), which needs the same vocabulary, split, initialization
and random stream; later numbers drift apart by floating-point summation order.

For each seed the JSON holds the reference's 20-batch estimates (nanoGPT's printed numbers),
its whole-validation loss after 2,000 updates, and formers' whole-validation loss after the
same 2,000 steps (from the run's ``log.jsonl``), with wall times on the same thread count.

Usage::

    python benchmarks/nanogpt_reference.py                      # seeds 1337, 1-6: ~25 min, 1 thread
    python benchmarks/nanogpt_reference.py --seeds 1337 --threads 2
    python benchmarks/nanogpt_reference.py --seeds 1337 --max-iters 50 --skip-formers  # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, cpu_name, git_info, load_average, print_footer, write_result
from torch import Tensor, nn

CONFIG = ROOT / "configs" / "shakespeare_char_cpu.toml"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PUBLISHED = {"step0": (4.1676, 4.1649), "step2000": (1.7648, 1.8857)}

# nanoGPT's CPU command: batch 12 of 64-character windows, 4 layers, 4 heads, 128 wide
BATCH, CONTEXT, LAYERS, HEADS, WIDTH = 12, 64, 4, 4, 128
LR, MIN_LR, WARMUP, EVAL_INTERVAL, EVAL_ITERS = 1e-3, 1e-4, 100, 250, 20


class Block(nn.Module):
    """nanoGPT's pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); no biases."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(WIDTH, bias=False)
        self.c_attn = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.attn_proj = nn.Linear(WIDTH, WIDTH, bias=False)
        self.ln_2 = nn.LayerNorm(WIDTH, bias=False)
        self.c_fc = nn.Linear(WIDTH, 4 * WIDTH, bias=False)
        self.mlp_proj = nn.Linear(4 * WIDTH, WIDTH, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(WIDTH, dim=2)
        # (b, t, c) -> (b, heads, t, c / heads)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class ReferenceGPT(nn.Module):
    """nanoGPT's ``GPT`` for this command, built in nanoGPT's module order so that the same seed
    draws the same initial weights (``nn.Module.apply`` visits children before parents)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, WIDTH)
        self.wpe = nn.Embedding(CONTEXT, WIDTH)
        self.h = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(WIDTH, bias=False)
        self.lm_head = nn.Linear(WIDTH, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * LAYERS))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)


def nanogpt_lr(it: int, max_iters: int) -> float:
    if it < WARMUP:
        return LR * it / WARMUP
    if it > max_iters:
        return MIN_LR
    ratio = (it - WARMUP) / (max_iters - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def get_batch(data: np.ndarray) -> tuple[Tensor, Tensor]:
    """nanoGPT's ``get_batch``: ``BATCH`` windows at offsets from the global random stream."""
    offsets = torch.randint(len(data) - CONTEXT, (BATCH,))
    x = torch.stack([torch.from_numpy(data[i : i + CONTEXT].astype(np.int64)) for i in offsets])
    y = torch.stack(
        [torch.from_numpy(data[i + 1 : i + 1 + CONTEXT].astype(np.int64)) for i in offsets]
    )
    return x, y


@torch.no_grad()
def estimate(model: ReferenceGPT, splits: dict[str, np.ndarray]) -> dict[str, float]:
    """nanoGPT's ``estimate_loss``: the mean of ``EVAL_ITERS`` random batches per split."""
    model.eval()
    out = {
        s: statistics.fmean(model(*get_batch(d)).item() for _ in range(EVAL_ITERS))
        for s, d in splits.items()
    }
    model.train()
    return out


@torch.no_grad()
def whole_validation_loss(model: ReferenceGPT, valid: np.ndarray) -> float:
    """formers' measure: every validation token once, in consecutive windows (the last shorter)."""
    model.eval()
    ids = torch.from_numpy(valid.astype(np.int64))
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, CONTEXT):
        x = ids[start : start + CONTEXT]
        y = ids[start + 1 : start + 1 + CONTEXT]
        x = x[: len(y)]
        total += model(x[None], y[None], reduction="sum").item()
        count += len(y)
    model.train()
    return total / count


def run_reference(text: str, seed: int, max_iters: int) -> dict[str, Any]:
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    data = np.array([index[ch] for ch in text], dtype=np.uint16)
    cut = int(len(data) * 0.9)
    splits = {"train": data[:cut], "val": data[cut:]}
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = ReferenceGPT(len(chars))
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=LR,
        betas=(0.9, 0.99),
    )
    estimates: dict[int, dict[str, float]] = {}
    x, y = get_batch(splits["train"])
    for it in range(max_iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(it, max_iters)
        if it % EVAL_INTERVAL == 0 or it == max_iters:
            estimates[it] = estimate(model, splits)
            e = estimates[it]
            print(f"  reference step {it}: train {e['train']:.4f}, val {e['val']:.4f}", flush=True)
        if it == max_iters:  # nanoGPT prints this estimate after `max_iters` updates
            break
        loss = model(x, y)
        x, y = get_batch(splits["train"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    whole = whole_validation_loss(model, splits["val"])
    return {
        "estimates": {str(k): v for k, v in estimates.items()},
        "estimate_val": estimates[max_iters]["val"],
        "whole_valid_loss": whole,
        "wall_s": time.perf_counter() - start,
    }


def run_formers(seed: int, threads: int, max_iters: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [sys.executable, "-m", "formers", "train", str(CONFIG), "--run-dir", run_dir]
        for key, value in (("seed", seed), ("threads", threads), ("max_steps", max_iters)):
            cmd += ["--set", f"train.{key}={value}"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in Path(run_dir, "log.jsonl").read_text().splitlines()]
    last = [r for r in records if r["type"] == "valid"][-1]
    return {"whole_valid_loss": last["loss"], "step": last["step"], "wall_s": wall}


def summary(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1337,1,2,3,4,5,6", help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iters", type=int, default=2000, help="2000 as published")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="Tiny Shakespeare's input.txt"
    )
    parser.add_argument("--skip-formers", action="store_true", help="run the reference only")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "nanogpt_reference_cpu.json"
    )
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found: see ../shared/data/README (or give --data)")
    if not args.skip_formers and args.data.resolve() != DEFAULT_DATA.resolve():
        raise SystemExit(
            f"formers' run reads {CONFIG.name}'s data path; --data works with --skip-formers only"
        )
    torch.set_num_threads(args.threads)
    text = args.data.read_text(encoding="utf-8")
    began = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, Any] = {}
    for seed in seeds:
        print(f"seed {seed}", flush=True)
        runs[str(seed)] = {"reference": run_reference(text, seed, args.max_iters)}
        if not args.skip_formers:
            runs[str(seed)]["formers"] = run_formers(seed, args.threads, args.max_iters)
        print(
            f"  {json.dumps({k: v.get('whole_valid_loss') for k, v in runs[str(seed)].items()})}",
            flush=True,
        )
    warnings = []
    step0 = runs.get("1337", {}).get("reference", {}).get("estimates", {}).get("0")
    matches = (
        None
        if step0 is None
        else (round(step0["train"], 4), round(step0["val"], 4)) == PUBLISHED["step0"]
    )
    if matches is False:
        warnings.append(
            f"seed 1337's step-0 estimate {step0} is not nanoGPT's {PUBLISHED['step0']}"
        )
    result: dict[str, Any] = {
        "benchmark": "nanogpt_reference",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "published": {
            "command_log_step2000": PUBLISHED["step2000"],
            "command_log_step0": PUBLISHED["step0"],
        },
        "step0_matches_nanogpt": matches,
        "max_iters": args.max_iters,
        "threads": args.threads,
        "runs": runs,
        "reference_estimate_val": summary([r["reference"]["estimate_val"] for r in runs.values()]),
        "reference_whole_valid": summary(
            [r["reference"]["whole_valid_loss"] for r in runs.values()]
        ),
        "machine": {
            "cpu": cpu_name(),
            "platform": platform.platform(),
            "load_average": load_average(),
        },
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "git": git_info(),
    }
    if not args.skip_formers:
        result["formers_whole_valid"] = summary(
            [r["formers"]["whole_valid_loss"] for r in runs.values()]
        )
    write_result(args.out, result)
    for key in ("reference_estimate_val", "reference_whole_valid", "formers_whole_valid"):
        if key in result:
            s = result[key]
            stats = ", ".join(f"{name} {s[name]:.4f}" for name in ("mean", "sd", "min", "max"))
            print(f"{key}: {stats}")
    print_footer(warnings, time.perf_counter() - began, args.out)


if __name__ == "__main__":
    main()
