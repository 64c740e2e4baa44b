"""What attention capture costs, and proof that it costs the default forward nothing.

Every model family (:class:`~formers.nn.EncoderDecoder`, :class:`~formers.nn.DecoderOnlyLM`,
:class:`~formers.nn.EncoderOnlyModel`) returns its attention probabilities only from
``forward_with_attention``, which runs ``forward`` inside an :class:`~formers.nn.recorder.
AttentionRecorder`: while it is active, each :class:`~formers.nn.attention.MultiHeadAttention`
asks its mechanism for the weights (the softmax computed with the eager kernel) and hands them to
the recorder. Outside it ``forward`` stays on the SDPA kernel, each attention module checking one
attribute. The claim to measure is therefore twofold, and each half gets its own comparison:

1. The recorder adds no work to ``forward``. ``default`` (``model(...)``) is timed against
   ``reference``: a forward assembled here from the *same modules and weights* (projections,
   norms, feed-forward networks, embeddings) around :func:`torch.nn.functional.
   scaled_dot_product_attention`, with no capture code at all. A cost of the seams (the recorder
   check, the mechanism and position-scheme calls, the mask object) would show as
   ``default / reference > 1``; the ratio also carries formers' other Python overhead (mechanism
   registry, KV-cache branches), so it bounds their cost from above.
2. Capture leaves nothing behind. Two copies with identical weights are timed side by side: one
   that never captures, and one that runs ``forward_with_attention`` every round
   (``default_after_capture``); a hook, flag or cache left by capture would slow the latter.
   Independently of timing, every module's hooks, plain attributes, kernel and training flag,
   the global module hooks and the weights are compared before and after all the capture calls
   (``capture_leaves_no_state``).

``capture`` (``forward_with_attention``) is timed too: the price of asking for the weights (an
eager softmax and ``L`` materialized ``(b, h, q, k)`` tensors per attention kind). All variants
run under ``eval()`` and ``torch.inference_mode``; each round calls every variant once, in an
order rotated round by round, so that load from other processes falls on all alike. Reported:
median, quartiles and min of the wall time per call, the median CPU time of this process, the
ratios of medians, and the outputs' agreement (``default`` against ``reference`` and ``capture``;
each captured probability row must sum to 1).

Sizes (``--size small``, the default): the Transformer base's head width (64) at half its model
width, cut down in depth so that a CPU call takes tens of milliseconds: d_model 256, 4 heads,
d_ff 1,024, vocabulary 8,000; encoder-decoder 3 + 3 post-norm layers (the paper's), decoder-only
4 pre-norm GPT-2 layers with learned positions, encoder-only 4 BERT layers. A batch of 16 random
sentences of 20-40 tokens (right-padded; the decoder-only model sees the padding as tokens, which
causality hides from the real ones). ``--size tiny`` is a smoke run of seconds.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/attention_capture.py            # ~1 minute on a 2-core CPU
    python benchmarks/attention_capture.py --size tiny --rounds 2 --warmup 1  # smoke run, seconds
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import ROOT, device_info, git_info, load_average, resolve_device, write_result
from torch import Tensor, nn

from formers.models.bert import build_bert
from formers.models.gpt import build_gpt
from formers.models.transformer import build_transformer
from formers.nn.attention import MultiHeadAttention
from formers.nn.decoder_only import DecoderOnlyLM
from formers.nn.encoder_decoder import AttentionMaps, EncoderDecoder
from formers.nn.kernels import repeat_kv
from formers.nn.layers import DecoderLayer, EncoderLayer

FAMILIES = ("encoder_decoder", "decoder_only", "encoder_only")
VARIANTS = ("default", "reference", "default_after_capture", "capture")
SIZES: dict[str, dict[str, int]] = {
    "small": dict(d_model=256, heads=4, d_ff=1024, layers=4, seq2seq_layers=3, vocab=8000,
                  batch=16, min_len=20, max_len=40),
    "tiny": dict(d_model=32, heads=2, d_ff=64, layers=1, seq2seq_layers=1, vocab=100,
                 batch=3, min_len=4, max_len=8),
}  # fmt: skip
PAD = 0  # padding id of the encoder-decoder and encoder-only models; real ids start at 3


def build(family: str, s: dict[str, int]) -> nn.Module:
    """A seeded model of ``family`` at size ``s``, in eval mode."""
    width = dict(d_model=s["d_model"], num_heads=s["heads"], d_ff=s["d_ff"])
    positions = max(128, s["max_len"])
    if family == "encoder_decoder":
        layers = s["seq2seq_layers"]
        model = build_transformer(
            dict(vocab_size=s["vocab"], num_encoder_layers=layers, num_decoder_layers=layers,
                 max_positions=positions, **width)
        )  # fmt: skip
    elif family == "decoder_only":
        model = build_gpt(
            dict(vocab_size=s["vocab"], num_layers=s["layers"], context_length=positions, **width)
        )
    else:
        model = build_bert(
            dict(vocab_size=s["vocab"], num_layers=s["layers"], max_positions=positions, pad_id=PAD,
                 cls_id=None, sep_id=None, mask_id=None, unk_id=None, **width)
        )  # fmt: skip
    return model.eval()


def make_inputs(family: str, s: dict[str, int], gen: torch.Generator) -> tuple[Tensor, ...]:
    """Right-padded ``(b, n)`` random ids (two sequences for the encoder-decoder)."""

    def padded() -> Tensor:
        lengths = torch.randint(s["min_len"], s["max_len"] + 1, (s["batch"],), generator=gen)
        ids = torch.randint(3, s["vocab"], (s["batch"], s["max_len"]), generator=gen)
        keep = torch.arange(s["max_len"])[None, :] < lengths[:, None]  # (b, n)
        return ids.masked_fill(~keep, PAD)

    return (padded(), padded()) if family == "encoder_decoder" else (padded(),)


# The capture-free reference: the same modules, assembled without any weights plumbing.


def plain_attention(
    attn: MultiHeadAttention,
    x: Tensor,
    memory: Tensor | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """``attn``'s projections around SDPA, the call the ``"sdpa"`` kernel makes (t_q == t_k)."""
    b, t, _ = x.shape
    source = x if memory is None else memory
    q = attn.q_proj(x).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)  # (b, h, t, dh)
    k = attn.k_proj(source).view(b, -1, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(source).view(b, -1, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
    if attn.positions is not None:  # rotary (the only scheme these models use)
        q, k = attn.positions(q), attn.positions(k)
    groups = attn.num_heads // attn.num_kv_heads
    k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (b, h, s, dh)
    if causal and mask is not None:
        raise ValueError("the reference handles a causal mask or a padding mask, not both")
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, -1))  # (b, t, h*dh) -> (b, t, d)


def plain_layer(
    layer: EncoderLayer | DecoderLayer,
    x: Tensor,
    memory: Tensor | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
) -> Tensor:
    """One encoder layer (``mask`` on its keys) or decoder layer (``mask`` on the memory)."""
    if isinstance(layer, EncoderLayer):
        y = plain_attention(layer.self_attn, layer.attn_residual.sublayer_input(x), None, mask,
                            causal)  # fmt: skip
        x = layer.attn_residual.merge(x, y)
    else:
        y = plain_attention(layer.self_attn, layer.self_residual.sublayer_input(x), causal=True)
        x = layer.self_residual.merge(x, y)
        if layer.cross_attn is not None:
            y = plain_attention(layer.cross_attn, layer.cross_residual.sublayer_input(x), memory,
                                mask)  # fmt: skip
            x = layer.cross_residual.merge(x, y)
    return layer.ff_residual.merge(x, layer.feed_forward(layer.ff_residual.sublayer_input(x)))


def reference_forward(model: nn.Module, *inputs: Tensor) -> Tensor:
    """What ``model(*inputs)`` computes, from ``model``'s modules, with no capture code."""
    if isinstance(model, EncoderDecoder):
        src, tgt = inputs
        mask = (src != model.pad_id)[:, None, None, :]  # (b, 1, 1, s)
        x = model.src_embed(src)
        for layer in model.encoder.layers:
            x = plain_layer(layer, x, mask=mask)
        memory, x = model.encoder.final_norm(x), model.tgt_embed(tgt)
        for layer in model.decoder.layers:
            x = plain_layer(layer, x, memory, mask)
        return model.generator(model.decoder.final_norm(x))
    if isinstance(model, DecoderOnlyLM):
        x = model.embed(inputs[0])
        for layer in model.decoder.layers:
            x = plain_layer(layer, x)
        return model.generator(model.decoder.final_norm(x))
    (ids,) = inputs
    x = model.embed(ids)
    for layer in model.encoder.layers:
        x = plain_layer(layer, x, mask=(ids != model.pad_id)[:, None, None, :])
    return model.encoder.final_norm(x)


def state_snapshot(model: nn.Module) -> dict[str, Any]:
    """Hooks, plain attributes, kernels and modes of every module, and the global hooks."""
    plain = (bool, int, float, str, type(None))
    modules = {}
    for name, m in model.named_modules():
        attrs = {k: v for k, v in vars(m).items() if isinstance(v, plain)}
        hooks = {k: len(v) for k, v in vars(m).items() if k.endswith("_hooks")}
        kernel = getattr(m, "kernel", None)
        modules[name] = (type(m).__name__, attrs, hooks, None if kernel is None else id(kernel))
    module_globals = vars(torch.nn.modules.module)
    global_hooks = {k: len(v) for k, v in module_globals.items() if k.startswith("_global_")
                    and isinstance(v, dict)}  # fmt: skip
    grad = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
    return {"modules": modules, "global_hooks": global_hooks, "grad_mode": grad}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def all_maps(maps: AttentionMaps | list[Tensor]) -> list[Tensor]:
    """The captured probability tensors of any family, in one list."""
    return [*maps.encoder, *maps.decoder, *maps.cross] if isinstance(maps, AttentionMaps) else maps


def summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    """Milliseconds per call: median, quartiles, IQR, min of wall time; median CPU time."""
    q1, _, q3 = statistics.quantiles(wall, n=4) if len(wall) > 1 else (wall[0],) * 3
    med, med_cpu = statistics.median(wall), statistics.median(cpu)
    values = dict(median=med, q1=q1, q3=q3, iqr=q3 - q1, min=min(wall), median_cpu=med_cpu)
    return {f"{k}_ms": 1e3 * v for k, v in values.items()}


def ratios(med: dict[str, float]) -> dict[str, float]:
    """The three ratios of the claim, from one statistic (median, min, ...) per variant."""
    return {
        "default_over_reference": med["default"] / med["reference"],
        "default_after_capture_over_default": med["default_after_capture"] / med["default"],
        "capture_over_default": med["capture"] / med["default"],
    }


def bench_family(family: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build, check and time the four variants of one family."""
    s, device = args.shape, args.device
    torch.manual_seed(args.seed)
    fresh = build(family, s).to(device)
    used = copy.deepcopy(fresh)  # identical weights; this copy is the one that captures
    gen = torch.Generator().manual_seed(args.seed)
    inputs = tuple(t.to(device) for t in make_inputs(family, s, gen))

    before = state_snapshot(used)
    with torch.inference_mode():
        out_default = fresh(*inputs)
        out_reference = reference_forward(fresh, *inputs)
        captured = used.forward_with_attention(*inputs)
    maps = all_maps(captured[1])
    real_rows = [w.sum(-1) for w in maps]  # no fully masked query rows in these batches

    calls: dict[str, Callable[[], object]] = {
        "default": lambda: fresh(*inputs),
        "reference": lambda: reference_forward(fresh, *inputs),
        "default_after_capture": lambda: used(*inputs),
        "capture": lambda: used.forward_with_attention(*inputs),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for k in range(args.warmup + args.rounds):
            shift = k % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                calls[variant]()
                sync()
                t1, c1 = time.perf_counter(), time.process_time()
                if k >= args.warmup:
                    wall[variant].append(t1 - t0)
                    cpu[variant].append(c1 - c0)
    after = state_snapshot(used)  # after 1 + warmup + rounds capture calls
    timings = {v: summary(wall[v], cpu[v]) for v in VARIANTS}
    per_round = [a / b for a, b in zip(wall["default"], wall["reference"], strict=True)]
    return {
        "inputs_shape": [list(t.shape) for t in inputs],
        "real_tokens": int(sum((t != PAD).sum() for t in inputs)),
        "parameters": sum(p.numel() for p in fresh.parameters()),
        "attention_maps": {"count": len(maps), "shape_first": list(maps[0].shape)},
        "timings": timings,
        "ratios": {
            "wall_min": ratios({v: timings[v]["min_ms"] for v in VARIANTS}),
            "cpu_median": ratios({v: timings[v]["median_cpu_ms"] for v in VARIANTS}),
            "wall_median": ratios({v: timings[v]["median_ms"] for v in VARIANTS}),
            "wall_per_round_median_default_over_reference": statistics.median(per_round),
        },
        "agreement": {
            "max_abs_diff_default_vs_reference": (out_default - out_reference).abs().max().item(),
            "max_abs_diff_default_vs_capture": (out_default - captured[0]).abs().max().item(),
            "max_abs_output": out_default.abs().max().item(),
            "max_abs_row_sum_error": max((r - 1).abs().max().item() for r in real_rows),
        },
        "capture_leaves_no_state": before == after and same_weights(fresh, used),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--rounds", type=int, default=40, help="timed rounds (one call per variant)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--max-len", type=int, default=None, help="longest sentence (shortest: half)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args(argv)
    args.device = resolve_device(args.device)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    args.shape = dict(SIZES[args.size])
    if args.max_len is not None:
        args.shape.update(min_len=max(1, args.max_len // 2), max_len=args.max_len)
    if args.out is None:
        suffix = args.device.type + ("" if args.size == "small" else f"_{args.size}")
        suffix += "" if args.max_len is None else f"_len{args.max_len}"
        args.out = ROOT / "benchmarks" / "results" / f"attention_capture_{suffix}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_before = load_average()
    results = {family: bench_family(family, args) for family in args.families}
    load_after = load_average()
    runtime = time.perf_counter() - t_start
    result = {
        "benchmark": "attention_capture",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "device": device_info(args.device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
        "git": git_info(),
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "size": {"name": args.size, **args.shape},
        "models": {
            "encoder_decoder": "build_transformer: post-norm, ReLU, sinusoidal, tied embeddings",
            "decoder_only": "build_gpt: pre-norm, GELU (tanh), learned positions, tied output",
            "encoder_only": "build_bert body: post-norm, GELU, learned positions + segments",
        },
        "variants": {
            "default": "model(...): SDPA kernel, the path every user takes",
            "reference": "the same modules and weights assembled here around "
            "F.scaled_dot_product_attention, with no capture code",
            "default_after_capture": "model(...) on an identical copy that runs "
            "forward_with_attention in every round",
            "capture": "model.forward_with_attention(...): eager kernel, weights returned",
        },
        "schedule": {
            "warmup_rounds": args.warmup,
            "rounds": args.rounds,
            "order": "each round calls every variant once, order rotated round by round",
            "timer": "time.perf_counter (and process_time) per call, eval() + inference_mode",
        },
        "results": results,
        "runtime_s": runtime,
    }
    write_result(args.out, result)
    print_summary(result)
    print(f"runtime {runtime:.0f} s; wrote {args.out}")
    return result


def print_summary(result: dict[str, Any]) -> None:
    size = result["size"]
    print(
        f"size {size['name']} (batch {size['batch']} x {size['min_len']}-{size['max_len']} "
        f"tokens) on {result['device']['name']}, {result['threads']} thread(s), torch "
        f"{result['torch_version']}, {result['schedule']['rounds']} rounds; load average "
        f"{result['load_average_1_5_15_min']}"
    )
    names = {"default_over_reference": "default/reference", "capture_over_default": "capture/"
             "default", "default_after_capture_over_default": "after-capture/default"}  # fmt: skip
    for family, r in result["results"].items():
        t, agree = r["timings"], r["agreement"]
        cells = ", ".join(f"{v} {t[v]['min_ms']:.1f} / {t[v]['median_ms']:.1f}" for v in VARIANTS)
        print(f"  {family}: ms per call (min / median): {cells}")
        for kind in ("wall_min", "cpu_median", "wall_median"):
            ratio = r["ratios"][kind]
            print(f"    {kind:11s} " + ", ".join(f"{names[k]} {ratio[k]:.3f}" for k in names))
        print(
            f"    max |diff| default vs reference {agree['max_abs_diff_default_vs_reference']:.1e}"
            f", vs capture {agree['max_abs_diff_default_vs_capture']:.1e}; capture leaves no "
            f"state: {r['capture_leaves_no_state']}"
        )


if __name__ == "__main__":
    main()
