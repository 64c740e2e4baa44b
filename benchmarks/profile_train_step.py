"""Where the time of a training step goes: formers vs ``torch.nn.Transformer``.

Two views, on the models and batches of ``train_throughput.py``:

1. ``torch.profiler`` op table of full training steps (forward + backward + Adam), per model,
   with ops grouped into categories (matmul, attention, norm, dropout, optimizer, ...).
2. Component micro-benchmarks (forward + backward, interleaved, median of repeats): self- and
   cross-attention of each library, formers' attention with fused q/k/v projections, and the
   masks each one builds.

Usage::

    python benchmarks/profile_train_step.py                       # transformer_base, CPU
    python benchmarks/profile_train_step.py --preset transformer_tiny --steps 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch_reference import TorchSeq2Seq, copy_weights
from train_throughput import PRESETS, Runner, make_batch

import formers.models
from formers.training.losses import sequence_cross_entropy

CATEGORIES = {  # first match wins
    "loss": ("cross_entropy", "log_softmax", "nll_loss"),
    "matmul": ("addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"),
    "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax"),
    "layer_norm": ("layer_norm",),
    "dropout": ("dropout", "bernoulli", "native_dropout"),
    "optimizer": ("_foreach", "adam", "Optimizer", "lerp_", "addcdiv_", "addcmul_", "sqrt"),
    "embedding": ("embedding",),
    "masks": ("masked_fill", "logical", "aten::eq", "aten::ne", "aten::ge", "where", "triu"),
    "copies/reshapes": ("copy_", "contiguous", "clone", "aten::cat", "transpose", "view"),
    "elementwise": ("aten::add", "aten::mul", "aten::relu", "threshold", "aten::div", "aten::sum"),
}


def categorize(name: str) -> str:
    for cat, keys in CATEGORIES.items():
        if any(k in name for k in keys):
            return cat
    return "other"


def op_profile(runner: Runner, batches: list[dict], top: int) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            runner.step(b)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    print(f"\n== {runner.name}: self CPU time of {len(batches)} steps: {total / 1e6:.2f} s")
    for e in rows[:top]:
        share = e.self_cpu_time_total / total
        ms = e.self_cpu_time_total / 1e3 / len(batches)
        print(f"  {e.key[:58]:58s} {ms:9.1f} ms/step {share:6.1%}  calls {e.count}")
    cats: dict[str, float] = defaultdict(float)
    for e in events:
        cats[categorize(e.key)] += e.self_cpu_time_total / 1e3 / len(batches)
    return dict(cats)


def phases(runners: list[Runner], batches: list[dict], repeats: int) -> None:
    """Median wall time of forward (+ loss), backward and optimizer step, models interleaved."""
    times = {r.name: defaultdict(list) for r in runners}
    for i in range(repeats + 1):
        batch = batches[i % len(batches)]
        for r in runners if i % 2 == 0 else runners[::-1]:
            t0 = time.perf_counter()
            logits = r.model(batch["src"], batch["tgt_in"])
            loss = sequence_cross_entropy(logits, batch["tgt_out"], r.pad_id, 0.1)
            t1 = time.perf_counter()
            r.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            r.optimizer.step()
            t3 = time.perf_counter()
            if i > 0:  # the first repeat is warmup
                for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2)):
                    times[r.name][k].append(v)
    print(f"\n== phases, median ms over {repeats} steps (interleaved)")
    for name, t in times.items():
        med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
        cells = ", ".join(f"{k} {v:.0f}" for k, v in med.items())
        print(f"  {name:8s} {cells}, sum {sum(med.values()):.0f}")


def bench(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warmup
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


class FusedSelfAttention(nn.Module):
    """formers' attention math with one packed q/k/v projection (a candidate change)."""

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        d = ours.q_proj.in_features
        self.h, self.dh = ours.num_heads, ours.head_dim
        self.qkv = nn.Linear(d, 3 * d)
        self.out_proj = ours.out_proj
        with torch.no_grad():
            self.qkv.weight.copy_(
                torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
            )
            self.qkv.bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1))


def components(ours: nn.Module, base: TorchSeq2Seq, batch: dict, repeats: int) -> None:
    d = ours.config.d_model
    src, tgt = batch["src"], batch["tgt_in"]
    b, s = src.shape
    t = tgt.size(1)
    x_src = torch.randn(b, s, d, requires_grad=True)
    x_tgt = torch.randn(b, t, d, requires_grad=True)
    mem = torch.randn(b, s, d, requires_grad=True)
    keep = src != ours.pad_id  # formers: True = may attend
    keep4 = keep[:, None, None, :]
    ignore = ~keep  # torch: True = ignore
    causal_f = nn.Transformer.generate_square_subsequent_mask(t)
    o_enc, t_enc = ours.encoder.layers[0], base.transformer.encoder.layers[0]
    o_dec, t_dec = ours.decoder.layers[0], base.transformer.decoder.layers[0]
    fused = FusedSelfAttention(o_enc.self_attn)

    def fb(fn: Callable[[], Tensor]) -> Callable[[], None]:
        def run() -> None:
            fn().sum().backward()

        return run

    groups = {
        "encoder self-attention (padding mask)": {
            "formers": fb(lambda: o_enc.self_attn(x_src, mask=keep4)),
            "formers fused qkv": fb(lambda: fused(x_src, mask=keep4)),
            "torch": fb(
                lambda: t_enc.self_attn(
                    x_src, x_src, x_src, key_padding_mask=ignore, need_weights=False
                )[0]
            ),
        },
        "decoder self-attention (causal)": {
            "formers": fb(lambda: o_dec.self_attn(x_tgt, causal=True)),
            "formers fused qkv": fb(lambda: fused(x_tgt, causal=True)),
            "torch": fb(
                lambda: t_dec.self_attn(
                    x_tgt, x_tgt, x_tgt, attn_mask=causal_f, is_causal=True, need_weights=False
                )[0]
            ),
        },
        "cross-attention (padding mask)": {
            "formers": fb(lambda: o_dec.cross_attn(x_tgt, mem, mask=keep4)),
            "torch": fb(
                lambda: t_dec.multihead_attn(
                    x_tgt, mem, mem, key_padding_mask=ignore, need_weights=False
                )[0]
            ),
        },
        "encoder layer": {
            "formers": fb(lambda: o_enc(x_src, keep4)),
            "torch": fb(lambda: t_enc(x_src, src_key_padding_mask=ignore)),
        },
        "decoder layer": {
            "formers": fb(lambda: o_dec(x_tgt, mem, memory_mask=keep4)),
            "torch": fb(
                lambda: t_dec(
                    x_tgt,
                    mem,
                    tgt_mask=causal_f,
                    tgt_is_causal=True,
                    memory_key_padding_mask=ignore,
                )
            ),
        },
    }
    print(f"\n== components, forward + backward, batch {b} x src {s} x tgt {t}, median ms")
    for name, fns in groups.items():
        res = bench(fns, repeats)
        ref = res["torch"]
        cells = ", ".join(f"{k} {v * 1e3:.2f} ({v / ref:.2f}x torch)" for k, v in res.items())
        print(f"  {name}: {cells}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, default="transformer_base")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--steps", type=int, default=2, help="profiled steps per model")
    p.add_argument("--repeats", type=int, default=30, help="component benchmark repeats")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--phase-steps", type=int, default=6, help="steps for the phase timing")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--skip-profile", action="store_true")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = getattr(formers.models, args.preset)(vocab_size=args.vocab, dropout=0.1)
    base = TorchSeq2Seq(ours.config)
    copy_weights(ours, base)
    ours.train(), base.train()
    gen = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    batches = [
        make_batch(gen, args.batch_size, (20, 40), (20, 40), ours.config, cpu)
        for _ in range(args.steps)
    ]
    print(f"{args.preset}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if not args.skip_profile:
        train_args = argparse.Namespace(lr=1e-4, bf16=False)
        runners = [
            Runner(n, m, train_args, ours.pad_id) for n, m in (("formers", ours), ("torch", base))
        ]
        for r in runners:  # warmup (allocations, Adam state)
            r.step(batches[0])
        phases(runners, batches, args.phase_steps)
        cats = [op_profile(r, batches, args.top) for r in runners]
        print("\n== self CPU ms/step by category: formers / torch")
        for cat in sorted(set(cats[0]) | set(cats[1]), key=lambda c: -cats[1].get(c, 0.0)):
            a, b = cats[0].get(cat, 0.0), cats[1].get(cat, 0.0)
            print(f"  {cat:16s} {a:9.1f} {b:9.1f}  ({a - b:+.1f})")
        print(f"  {'total':16s} {sum(cats[0].values()):9.1f} {sum(cats[1].values()):9.1f}")
    components(ours, base, batches[0], args.repeats)


if __name__ == "__main__":
    main()
