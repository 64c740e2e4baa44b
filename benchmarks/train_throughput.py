"""Training throughput of formers' Transformer against ``torch.nn.Transformer``.

One training step is forward + backward + optimizer step, with Adam (betas 0.9/0.98, eps 1e-9,
as in arXiv 1706.03762 section 5.3) and label-smoothed cross-entropy (0.1, padding ignored).
Throughput is counted in non-padding target tokens per second.

The baseline is ``torch.nn.Transformer`` of the same shape wrapped with the same embedding as
formers' model: one token embedding shared by source and target and tied to the output
projection, scaled by ``sqrt(d_model)``, plus fixed sinusoidal positions and dropout. Before
timing, formers' weights are copied into the baseline and the two models' logits are compared
(``equivalence`` in the JSON), so both start from the same weights and compute the same thing.
Remaining differences (listed under ``differences`` in the JSON):

- ``torch.nn.Transformer`` adds a final LayerNorm to the encoder and to the decoder stack
  (2 x 2 x d_model parameters); the paper and formers' post-norm stacks have none.
- ``torch.nn.Transformer`` applies its ``dropout`` also to the attention probabilities and inside
  the feed-forward network; formers' presets (like the paper) do not. The baseline's attention
  and feed-forward dropouts are set to formers' ``attention_dropout`` / ``activation_dropout``
  (0.0) so that both models drop out the same activations (use ``--torch-native-dropout`` to
  keep torch's own placement).

Models are interleaved after warmup, alternating which one goes first in each round
(A B, B A, A B, ...), on the same batches; the JSON reports the median tokens/s of each model and
the ratio ours / torch.

Usage::

    python benchmarks/train_throughput.py                      # CPU (or CUDA if available)
    python benchmarks/train_throughput.py --preset transformer_tiny --rounds 3   # smoke run
    python benchmarks/train_throughput.py --device cuda --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import flops
import torch
from common import (
    ROOT,
    device_info,
    git_info,
    load_average,
    print_footer,
    resolve_device,
    write_result,
)
from torch import Tensor, nn
from torch_reference import TorchSeq2Seq, check_equivalence, copy_weights

import formers.models
from formers.models.transformer import TransformerConfig
from formers.training.losses import sequence_cross_entropy

PRESETS = ("transformer_base", "transformer_tiny")


def parse_length(text: str) -> tuple[int, int]:
    """``"20-40"`` (uniform range, inclusive) or ``"32"`` (fixed) -> ``(lo, hi)``."""
    lo, _, hi = text.partition("-")
    lo_i, hi_i = int(lo), int(hi or lo)
    if not 1 <= lo_i <= hi_i:
        raise argparse.ArgumentTypeError(f"bad length range {text!r}; use e.g. 20-40 or 32")
    return lo_i, hi_i


def make_batch(
    gen: torch.Generator,
    batch_size: int,
    src_len: tuple[int, int],
    tgt_len: tuple[int, int],
    cfg: TransformerConfig,
    device: torch.device,
) -> dict[str, Any]:
    """A right-padded batch of random sentences; each padded to its longest sentence.

    ``tgt_in = [BOS] + y`` and ``tgt_out = y + [EOS]``, where ``y`` has the sampled length minus
    one, so both are as long as the sampled target length.
    """

    def lengths(lo: int, hi: int) -> Tensor:
        return torch.randint(lo, hi + 1, (batch_size,), generator=gen)

    first = 3  # ids 0, 1, 2 are pad, bos, eos
    s_lens, t_lens = lengths(*src_len), lengths(*tgt_len)
    src = torch.full((batch_size, int(s_lens.max())), cfg.pad_id)
    tgt_in = torch.full((batch_size, int(t_lens.max())), cfg.pad_id)
    tgt_out = tgt_in.clone()
    for i, (s, t) in enumerate(zip(s_lens.tolist(), t_lens.tolist(), strict=True)):
        src[i, :s] = torch.randint(first, cfg.vocab_size, (s,), generator=gen)
        y = torch.randint(first, cfg.vocab_size, (t - 1,), generator=gen)
        tgt_in[i, 0] = cfg.bos_id
        tgt_in[i, 1:t] = y
        tgt_out[i, : t - 1] = y
        tgt_out[i, t - 1] = cfg.eos_id
    return {
        "src": src.to(device),
        "tgt_in": tgt_in.to(device),
        "tgt_out": tgt_out.to(device),
        "tokens": int(t_lens.sum()),  # non-pad target tokens
        "src_tokens": int(s_lens.sum()),
        "shape": [batch_size, src.size(1), tgt_in.size(1)],
    }


# --- training step and timing ---------------------------------------------------------------


class Runner:
    """A model with its optimizer and a timed ``steps``."""

    def __init__(self, name: str, model: nn.Module, args: argparse.Namespace, pad_id: int):
        self.name = name
        self.model = model
        self.pad_id = pad_id
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9
        )
        self.device = next(model.parameters()).device
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if args.bf16
            else contextlib.nullcontext()
        )
        self.tokens_per_s: list[float] = []
        self.step_s: list[float] = []
        self.cpu_util: list[float] = []  # process CPU time / (wall time x threads)
        self.losses: list[Tensor] = []

    def step(self, batch: dict[str, Any]) -> Tensor:
        with self.autocast:
            logits = self.model(batch["src"], batch["tgt_in"])
            loss = sequence_cross_entropy(logits, batch["tgt_out"], self.pad_id, 0.1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, batches: list[dict[str, Any]], record: bool = True) -> float:
        self.sync()
        cpu_start, start = time.process_time(), time.perf_counter()
        losses = [self.step(b) for b in batches]
        self.sync()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        if record:
            tokens = sum(b["tokens"] for b in batches)
            self.tokens_per_s.append(tokens / elapsed)
            self.step_s.append(elapsed / len(batches))
            self.cpu_util.append(cpu / (elapsed * torch.get_num_threads()))
            self.losses.extend(losses)
        return elapsed

    def summary(self) -> dict[str, Any]:
        tps = self.tokens_per_s
        return {
            "median_tokens_per_s": statistics.median(tps),
            "mean_tokens_per_s": statistics.fmean(tps),
            "min_tokens_per_s": min(tps),
            "max_tokens_per_s": max(tps),
            "stdev_tokens_per_s": statistics.stdev(tps) if len(tps) > 1 else 0.0,
            "median_step_s": statistics.median(self.step_s),
            "tokens_per_s_per_round": tps,
            "median_cpu_utilization": statistics.median(self.cpu_util),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "first_loss": self.losses[0].item(),
            "last_loss": self.losses[-1].item(),
        }


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", choices=PRESETS, default="transformer_base")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    p.add_argument("--src-len", type=parse_length, default="20-40", help="LO-HI or N tokens")
    p.add_argument("--tgt-len", type=parse_length, default="20-40", help="LO-HI or N tokens")
    p.add_argument("--vocab", type=int, default=8000, help="shared vocabulary size")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (each model per round)")
    p.add_argument("--steps-per-round", type=int, default=None, help="training steps per timing")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per model")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--num-batches", type=int, default=8, help="distinct batches, cycled")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--torch-native-dropout",
        action="store_true",
        help="keep nn.Transformer's attention and feed-forward dropout (formers has none there)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args(argv)
    args.device = resolve_device(args.device)
    if args.bf16 and args.device.type != "cuda":
        p.error("--bf16 is for CUDA runs")
    # defaults that keep a CPU run of the base model to a few minutes on 2 cores
    cuda = args.device.type == "cuda"
    defaults = {
        "batch_size": 32,
        "rounds": 10 if cuda else 16,
        "steps_per_round": 10 if cuda else 1,
        "warmup": 10 if cuda else 2,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.out is None:
        suffix = args.device.type + ("_bf16" if args.bf16 else "")
        if args.preset != "transformer_base":
            suffix += f"_{args.preset}"
        args.out = ROOT / "benchmarks" / "results" / f"train_throughput_{suffix}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device

    torch.manual_seed(args.seed)
    ours = getattr(formers.models, args.preset)(vocab_size=args.vocab, dropout=0.1)
    cfg: TransformerConfig = ours.config
    torch.manual_seed(args.seed)
    base = TorchSeq2Seq(cfg, torch_native_dropout=args.torch_native_dropout)
    copy_weights(ours, base)
    ours.to(device).train()
    base.to(device).train()

    gen = torch.Generator().manual_seed(args.seed)
    batches = [
        make_batch(gen, args.batch_size, args.src_len, args.tgt_len, cfg, device)
        for _ in range(args.num_batches)
    ]
    equivalence = check_equivalence(ours, base, batches[0])

    runners = [Runner("formers", ours, args, cfg.pad_id), Runner("torch", base, args, cfg.pad_id)]
    n = args.steps_per_round

    def chunk(k: int) -> list[dict[str, Any]]:
        return [batches[(k * n + j) % len(batches)] for j in range(n)]

    load_before = load_average()
    torch.manual_seed(args.seed)
    for i in range(args.warmup):
        for r in runners:
            r.timed([batches[i % len(batches)]], record=False)
    for k in range(args.rounds):
        order = runners if k % 2 == 0 else runners[::-1]
        for r in order:
            r.timed(chunk(k))

    load_after = load_average()
    ours_s, torch_s = (r.summary() for r in runners)
    per_round = [
        a / b for a, b in zip(runners[0].tokens_per_s, runners[1].tokens_per_s, strict=True)
    ]
    ratio = ours_s["median_tokens_per_s"] / torch_s["median_tokens_per_s"]
    runtime = time.perf_counter() - t_start
    warnings = []
    util = min(ours_s["median_cpu_utilization"], torch_s["median_cpu_utilization"])
    if device.type == "cpu" and util < 0.8:
        warnings.append(
            f"CPU utilization {util:.2f} < 0.8: the {torch.get_num_threads()} threads did not get "
            "their cores (other work on the machine?); timings are unreliable. Rerun on an idle "
            "machine, or with --threads 1 if only one core is free."
        )
    result = {
        "benchmark": "train_throughput",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "preset": args.preset,
        "device": device_info(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "git": git_info(),
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "model": {
            "d_model": cfg.d_model,
            "num_heads": cfg.num_heads,
            "num_encoder_layers": cfg.num_encoder_layers,
            "num_decoder_layers": cfg.num_decoder_layers,
            "d_ff": cfg.d_ff,
            "dropout": cfg.dropout,
            "attention_dropout": cfg.attention_dropout,
            "activation_dropout": cfg.activation_dropout,
            "activation": cfg.activation,
            "vocab_size": cfg.vocab_size,
            "norm_first": cfg.norm_first,
            "kernel": cfg.kernel,
        },
        "data": {
            "batch_size": args.batch_size,
            "src_len": list(args.src_len),
            "tgt_len": list(args.tgt_len),
            "num_batches": args.num_batches,
            "padded_shapes": [b["shape"] for b in batches],
            "mean_target_tokens_per_batch": statistics.fmean(b["tokens"] for b in batches),
            "padding": "right; each batch padded to its longest sentence",
            "tokens_counted": "non-pad target tokens",
        },
        "training": {
            "optimizer": f"Adam(lr={args.lr}, betas=(0.9, 0.98), eps=1e-9), default foreach",
            "loss": "F.cross_entropy(label_smoothing=0.1, ignore_index=pad), mean",
            "masks": "causal target mask (torch: tgt_mask + tgt_is_causal=True), "
            "source and memory key-padding masks; no target key-padding mask",
        },
        "schedule": {
            "warmup_steps_per_model": args.warmup,
            "rounds": args.rounds,
            "steps_per_round": n,
            "order": "interleaved, alternating which model goes first (AB, BA, AB, ...)",
            "timer": "time.perf_counter" + (", cuda synchronize" if device.type == "cuda" else ""),
        },
        "equivalence": equivalence,
        "differences": [
            "torch.nn.Transformer adds a final LayerNorm to the encoder and decoder stacks "
            f"({torch_s['parameters'] - ours_s['parameters']} extra parameters); "
            "formers' post-norm stacks (and the paper) have none",
            (
                "torch.nn.Transformer keeps its own dropout on attention probabilities and inside "
                "the feed-forward network (--torch-native-dropout); formers has none there"
                if args.torch_native_dropout
                else "torch.nn.Transformer's attention-probability and feed-forward-inner "
                "dropouts are set to formers' attention_dropout/activation_dropout "
                f"({cfg.attention_dropout}/{cfg.activation_dropout}) so both drop the same "
                "activations"
            ),
            "torch.nn.MultiheadAttention packs the q/k/v projections into one matmul "
            "(self-attention) or k/v into one (cross-attention); formers uses separate "
            "q_proj/k_proj/v_proj nn.Linear layers",
        ],
        "model_flops_utilization": {
            r.name: flops.mfu(
                ours, batches, r.summary()["median_step_s"], device_info(device)["name"]
            )  # the same shapes: ours counts
            for r in runners
        }
        if device.type == "cuda"
        else None,
        "results": {
            "formers": ours_s,
            "torch": torch_s,
            "ratio_ours_over_torch": ratio,
            "median_per_round_ratio": statistics.median(per_round),
            "per_round_ratio": per_round,
        },
        "warnings": warnings,
        "runtime_s": runtime,
    }
    write_result(args.out, result)

    print(
        f"{args.preset} on {device_info(device)['name']} ({result['precision']}, "
        f"{result['threads']} threads, torch {torch.__version__})"
    )
    print(
        f"batch {args.batch_size} x src {args.src_len} x tgt {args.tgt_len} tokens, "
        f"vocab {args.vocab}; {args.rounds} rounds x {n} steps after {args.warmup} warmup"
    )
    print(f"equivalence: max |logit diff| {equivalence['max_abs_logit_diff']:.2e}")
    for name, s in (("formers", ours_s), ("torch", torch_s)):
        print(
            f"  {name:8s} {s['median_tokens_per_s']:10.1f} tokens/s (median; "
            f"min {s['min_tokens_per_s']:.1f}, max {s['max_tokens_per_s']:.1f}), "
            f"{s['median_step_s'] * 1e3:.0f} ms/step, {s['parameters']:,} parameters"
        )
    print(
        f"  ratio formers/torch: {ratio:.3f} (median of per-round ratios "
        f"{result['results']['median_per_round_ratio']:.3f})"
    )
    util = [s["median_cpu_utilization"] for s in (ours_s, torch_s)]
    print(
        f"CPU utilization (median) {util[0]:.2f} / {util[1]:.2f}; load average {load_before} "
        f"before, {load_after} after (a load above the core count means shared cores)"
    )
    print_footer(warnings, runtime, args.out)
    return result


if __name__ == "__main__":
    main()
