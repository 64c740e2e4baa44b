"""Decoding speed of formers against Hugging Face ``generate`` on the same Marian model.

A base-sized ``MarianMTModel`` (d_model 512, 6 + 6 layers, 8 heads, d_ff 2,048, vocabulary 8,000,
SiLU, shared and tied embeddings, random seeded weights) is imported into formers with
:func:`formers.models.transformer.convert.load_hf`, so both decode the same weights. A batch of
random sources (ids avoiding the special tokens) is decoded greedily and with beam search by:

- formers: :func:`formers.decoding.greedy_search` / :func:`formers.decoding.beam_search` over
  the flat decoding step ``formers translate`` uses
  (:func:`formers.inference.flat_step.fast_decodable`), with ``max_len_a=0, max_len_b=N,
  min_len=N-1`` (and for beams ``length_penalty=lambda n: n ** alpha``,
  ``forced_eos_log_prob=0.0``, ``early_stopping=True``);
- Hugging Face: ``model.generate(do_sample=False, num_beams=..., min_new_tokens=N-1,
  max_new_tokens=N, length_penalty=alpha, early_stopping=True, bad_words_ids=[[pad]])``.

formers' model uses the weight layout that ``formers translate`` and ``formers serve`` use on a
CPU (:func:`formers.inference.layout.use_inference_layout`: ``nn.Linear`` weights stored
column-major); ``--layout standard`` measures it with ``nn.Linear``'s own layout instead.

Both produce exactly ``N`` new tokens per sentence (``N - 1`` tokens, then the EOS forced at the
limit), so both count the same tokens; the script checks that the two produce identical tokens
and records it (``identical_tokens`` in the JSON). Each run is timed under
``torch.inference_mode``, after warmup, with the two implementations interleaved (ours, HF, HF,
ours, ...); tokens/s counts the new tokens of the returned best outputs (batch x N). On a shared
machine the wall clock also measures the other processes; the JSON therefore also reports tokens
per second of this process's CPU time (``median_tokens_per_cpu_s``, ``cpu_time_ratio_...``).

Usage::

    python benchmarks/hf_decoding.py                    # CPU, 1 thread, base-sized model
    python benchmarks/hf_decoding.py --threads 2 --rounds 10
    python benchmarks/hf_decoding.py --size tiny --rounds 1 --warmup 0   # smoke run, seconds
    python benchmarks/hf_decoding.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
from torch import Tensor

from formers.decoding import beam_search, greedy_search
from formers.inference.flat_step import fast_decodable

IMPLS = ("formers", "transformers")
SIZES: dict[str, dict[str, int]] = {
    "base": dict(d_model=512, layers=6, heads=8, d_ff=2048),
    "tiny": dict(d_model=64, layers=2, heads=4, d_ff=128),
}


def marian_model(args: argparse.Namespace) -> Any:
    """A random, seeded ``MarianMTModel``; EOS is id 0 and padding (= decoder start) the last."""
    import transformers

    size = SIZES[args.size]
    pad = args.vocab - 1
    config = transformers.MarianConfig(
        vocab_size=args.vocab,
        d_model=size["d_model"],
        encoder_layers=size["layers"],
        decoder_layers=size["layers"],
        encoder_attention_heads=size["heads"],
        decoder_attention_heads=size["heads"],
        encoder_ffn_dim=size["d_ff"],
        decoder_ffn_dim=size["d_ff"],
        max_position_embeddings=512,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=pad,
        eos_token_id=0,
        forced_eos_token_id=0,
        decoder_start_token_id=pad,
    )
    torch.manual_seed(args.seed)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():  # peaked next-token distributions: no near-ties between the two
        model.model.shared.weight.normal_(0.0, 0.5)
        model.final_logits_bias.normal_(0.0, 0.5)
    return model.eval()


class Runner:
    """One implementation in one mode, timed per run."""

    def __init__(self, name: str, decode: Callable[[], Tensor], tokens: int, device: torch.device):
        self.name, self.decode, self.tokens, self.device = name, decode, tokens, device
        self.tokens_per_s: list[float] = []
        self.tokens_per_cpu_s: list[float] = []
        self.cpu_util: list[float] = []
        self.output: Tensor | None = None

    def run(self, record: bool = True) -> None:
        sync(self.device)
        cpu_start, start = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            out = self.decode()
        sync(self.device)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        if self.output is None:
            self.output = out.cpu()
        if record:
            self.tokens_per_s.append(self.tokens / elapsed)
            self.tokens_per_cpu_s.append(self.tokens / cpu)
            self.cpu_util.append(cpu / (elapsed * threads()))

    def summary(self) -> dict[str, Any]:
        tps = self.tokens_per_s
        return {
            "median_tokens_per_s": statistics.median(tps),
            "mean_tokens_per_s": statistics.fmean(tps),
            "min_tokens_per_s": min(tps),
            "max_tokens_per_s": max(tps),
            "tokens_per_s_per_round": tps,
            "median_tokens_per_cpu_s": statistics.median(self.tokens_per_cpu_s),
            "median_cpu_utilization": statistics.median(self.cpu_util),
        }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def threads() -> int:
    return torch.get_num_threads()


def runners(mode: str, ours, hf, src: Tensor, args: argparse.Namespace) -> list[Runner]:
    n, pad = args.new_tokens, hf.config.pad_token_id
    tokens = src.size(0) * n
    beams = 1 if mode == "greedy" else args.beam_size
    alpha = args.length_penalty

    flat = fast_decodable(ours)  # the step formers translate decodes with

    def formers_decode() -> Tensor:
        if mode == "greedy":
            out = greedy_search(flat, src, max_len_a=0.0, max_len_b=n, min_len=n - 1)
        else:
            out = beam_search(
                flat, src, beam_size=beams, max_len_a=0.0, max_len_b=n, min_len=n - 1,
                length_penalty=lambda length: length**alpha, early_stopping=True,
                forced_eos_log_prob=0.0,
            )  # fmt: skip
        return out.tokens

    def hf_decode() -> Tensor:
        options = dict(length_penalty=alpha, early_stopping=True) if beams > 1 else {}
        out = hf.generate(
            input_ids=src, attention_mask=src != pad, do_sample=False, num_beams=beams,
            min_new_tokens=n - 1, max_new_tokens=n, bad_words_ids=[[pad]], **options,
        )  # fmt: skip
        return out[:, 1:]  # without the decoder start token

    return [
        Runner("formers", formers_decode, tokens, src.device),
        Runner("transformers", hf_decode, tokens, src.device),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32, help="sources per batch")
    p.add_argument("--src-len", type=int, default=20, help="tokens per source")
    p.add_argument("--new-tokens", type=int, default=30, help="tokens generated per sentence")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--length-penalty", type=float, default=1.0, help="alpha in len ** alpha")
    p.add_argument("--modes", nargs="+", choices=("greedy", "beam"), default=["greedy", "beam"])
    p.add_argument("--rounds", type=int, default=6, help="timed runs of each implementation")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each implementation")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--layout",
        choices=("inference", "standard"),
        default="inference",
        help="formers' weight layout: 'inference' is what formers translate/serve use on a CPU "
        "(formers.inference.layout.use_inference_layout); 'standard' is nn.Linear's own",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args(argv)
    args.device = resolve_device(args.device)
    if args.new_tokens < 2:
        p.error("--new-tokens must be >= 2")
    if args.out is None:
        suffix = args.device.type + ("" if args.size == "base" else f"_{args.size}")
        suffix += "" if args.layout == "inference" else "_standard_layout"
        args.out = ROOT / "benchmarks" / "results" / f"hf_decoding_{suffix}.json"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    import transformers

    from formers.inference.layout import use_inference_layout
    from formers.models.transformer.convert import load_hf

    device = args.device
    hf = marian_model(args)
    ours = load_hf(hf).to(device)
    if args.layout == "inference":
        use_inference_layout(ours)
    hf.to(device)
    gen = torch.Generator().manual_seed(args.seed)
    # ids 1 .. vocab - 2: neither EOS (0) nor padding (vocab - 1)
    src = torch.randint(1, args.vocab - 1, (args.batch_size, args.src_len), generator=gen)
    src = src.to(device)

    load_before = load_average()
    results: dict[str, Any] = {}
    for mode in args.modes:
        pair = runners(mode, ours, hf, src, args)
        for _ in range(args.warmup):
            for r in pair:
                r.run(record=False)
        for k in range(args.rounds):
            for r in pair if k % 2 == 0 else pair[::-1]:
                r.run()
        ours_s, hf_s = (r.summary() for r in pair)
        per_round = [a / b for a, b in zip(pair[0].tokens_per_s, pair[1].tokens_per_s, strict=True)]
        a, b = pair[0].output, pair[1].output
        results[mode] = {
            "formers": ours_s,
            "transformers": hf_s,
            "ratio_ours_over_hf": ours_s["median_tokens_per_s"] / hf_s["median_tokens_per_s"],
            "cpu_time_ratio_ours_over_hf": ours_s["median_tokens_per_cpu_s"]
            / hf_s["median_tokens_per_cpu_s"],
            "median_per_round_ratio": statistics.median(per_round),
            "per_round_ratio": per_round,
            "identical_tokens": a.shape == b.shape and torch.equal(a, b),
            "output_shape": list(a.shape),
        }
    load_after = load_average()
    runtime = time.perf_counter() - t_start

    size = SIZES[args.size]
    warnings = []
    utils = [r[impl]["median_cpu_utilization"] for r in results.values() for impl in IMPLS]
    if device.type == "cpu" and min(utils) < 0.8:
        warnings.append(
            f"CPU utilization {min(utils):.2f} < 0.8: the {threads()} threads did not get their "
            "cores (other work on the machine?); absolute timings are unreliable, the interleaved "
            "ratios less so."
        )
    result = {
        "benchmark": "hf_decoding",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "device": device_info(device),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "threads": threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "git": git_info(),
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "model": {
            "kind": "MarianMTModel (random seeded weights), imported with load_hf",
            "size": args.size,
            **size,
            "vocab_size": args.vocab,
            "activation": "swish (SiLU)",
            "parameters": sum(p.numel() for p in ours.parameters()),
            "formers_weight_layout": args.layout,
        },
        "data": {
            "batch_size": args.batch_size,
            "src_len": args.src_len,
            "new_tokens": args.new_tokens,
            "tokens_counted": "new tokens of the returned outputs (batch x new_tokens)",
        },
        "decoding": {
            "beam_size": args.beam_size,
            "length_penalty": args.length_penalty,
            "early_stopping": True,
            "formers": "greedy_search / beam_search(fast_decodable(model), max_len_a=0, "
            "max_len_b=N, min_len=N-1, "
            "length_penalty=n**alpha, forced_eos_log_prob=0.0)",
            "transformers": "generate(do_sample=False, min_new_tokens=N-1, max_new_tokens=N, "
            "bad_words_ids=[[pad]], length_penalty=alpha, early_stopping=True)",
        },
        "schedule": {
            "warmup_runs_per_implementation": args.warmup,
            "rounds": args.rounds,
            "order": "interleaved, alternating which goes first (AB, BA, AB, ...)",
            "timer": "time.perf_counter under torch.inference_mode"
            + (", cuda synchronize" if device.type == "cuda" else ""),
        },
        "results": results,
        "warnings": warnings,
        "runtime_s": runtime,
    }
    write_result(args.out, result)

    print(
        f"Marian {args.size} on {device_info(device)['name']} ({threads()} threads, torch "
        f"{torch.__version__}, transformers {transformers.__version__})"
    )
    print(
        f"batch {args.batch_size} x {args.src_len} source tokens, {args.new_tokens} new tokens, "
        f"{args.rounds} interleaved rounds after {args.warmup} warmup; formers' weight layout: "
        f"{args.layout}"
    )
    for mode, r in results.items():
        label = "greedy" if mode == "greedy" else f"beam {args.beam_size}"
        print(
            f"  {label:7s} formers {r['formers']['median_tokens_per_s']:8.1f} tokens/s, "
            f"transformers {r['transformers']['median_tokens_per_s']:8.1f} tokens/s, ratio "
            f"{r['ratio_ours_over_hf']:.2f} (per-round median {r['median_per_round_ratio']:.2f}, "
            f"by CPU time {r['cpu_time_ratio_ours_over_hf']:.2f}); "
            f"identical tokens: {r['identical_tokens']}"
        )
    print(f"load average {load_before} before, {load_after} after")
    print_footer(warnings, runtime, args.out)
    return result


if __name__ == "__main__":
    main()
