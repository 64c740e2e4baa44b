"""What removes the time outside the matrix products of a decoding step? Each attempt decodes the
same weights as ``runtimes.py`` (the base-sized Marian-shaped model, 1 thread, every sentence
``N - 1`` tokens then EOS), greedily, interleaved; outputs are compared with ``formers``:

- ``formers``: ``greedy_search`` with the column-major layout, the GEMM backend and the flat
  decoding step ``formers translate`` uses (:func:`formers.inference.layout.use_inference_layout`;
  NumPy's OpenBLAS on an AMD CPU, :mod:`formers.inference.gemm`;
  :class:`formers.inference.flat_step.FlatStepDecoder`);
- ``numpy-products``: ``formers`` with its large layers multiplied by NumPy's OpenBLAS
  (``use_inference_layout(..., "numpy")``; what ``formers`` is on an AMD CPU without AVX-512,
  the comparison where ``formers`` multiplies in oneDNN);
- ``ordinary-pages``: ``formers`` with the column-major weights in ordinary memory, not the
  block advised as transparent huge pages (``use_inference_layout(..., huge_pages=False)``);
- ``module-step``: the same without the flat step: the model's own ``decode_step`` through its
  modules (formers before the flat step; the attempts below are built on it);
- ``mkl-column-major``: the same layout, multiplied by PyTorch (MKL; ``FORMERS_GEMM=torch``);
- ``standard-layout``: ``nn.Linear``'s own row-major weights, multiplied by PyTorch;
- ``fused-qkv``: ``formers`` with each self-attention's query, key and value projections made
  one product of a ``(d, 3d)`` weight (a copy, made once);
- ``onednn-packed``: every ``nn.Linear`` through PyTorch's oneDNN linear with weights packed once
  (``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``, what Inductor's freezing
  uses on a CPU);
- ``static-cache``: a decoding step over a key/value cache of fixed capacity, written in place
  at the step's slot, so that every step has the same shapes (formers' own modules; the
  embedding and the search rules stay outside the step);
- ``static-cache-compiled``: that step through ``torch.compile`` (Inductor, freezing on); the
  seconds its first call took (compiling) are reported.

Beam search (4) is measured for the layouts only (the static-cache step is greedy-only).

``products_alone``: the bound under all of them. A forward hook records every ``nn.Linear`` call
of one ``module-step`` decode (its weight and input shape: the products ``formers`` makes, whose
flat step bypasses the modules' hooks); the same products are then replayed alone (random inputs
of those shapes, the same weights and layout) and timed, with PyTorch's product
(``products_alone``), with NumPy's (``products_alone_numpy``) and with oneDNN's packed one
(``products_alone_onednn``, where PyTorch has oneDNN; each weight packed once beforehand). A
decoder that removed all the time outside the products would take that long; it bounds the
tokens/s any attempt of this kind can reach, and is set beside 1.5x Hugging Face's tokens/s from
a ``runtimes.py`` JSON (``--runtimes-json``), the issue's target.

``outside_products``: the other half of that account, where ``formers`` multiplies in NumPy or
oneDNN. The same ``formers`` decode with that product replaced by a lookup of a ready output of
the right shape (made once per shape; the tokens are then meaningless, and every sentence still
gets its ``N - 1`` tokens), so that it takes only the time outside the products: the encoder's
and the step's other operations, the attention, the search. Its seconds, and their share of
``formers``' median, are what a step with no such overhead (a compiled one, or a C++ runtime's)
could save.

Usage::

    python benchmarks/decode_attempts.py --out benchmarks/results/decode_attempts_cpu_epyc.json
    python benchmarks/decode_attempts.py --size tiny --rounds 1 --batch-one 2 --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import (
    ROOT,
    interleaved,
    load_average,
    print_footer,
    result_header,
    speed_rows,
    write_result,
)
from decode_attempt_parts import StaticStep, fuse_self_attention, pack_linears, static_greedy
from hf_decoding import SIZES, marian_model
from torch import Tensor, nn

from formers.decoding import beam_search, greedy_search
from formers.inference import gemm, onednn
from formers.inference.gemm import cpu_vendor, gemm_backend, numpy_blas_name

ATTEMPTS = (
    "formers", "numpy-products", "ordinary-pages", "module-step", "mkl-column-major",
    "standard-layout", "onednn-packed", "fused-qkv", "static-cache", "static-cache-compiled",
)  # fmt: skip


def recorded_products(model: nn.Module, decode: Callable[[], Any]) -> list[tuple[Tensor, Any, int]]:
    """Every ``nn.Linear`` call of one ``decode()``: ``(weight, bias, rows)``."""
    calls: list[tuple[Tensor, Any, int]] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        calls.append((module.weight, module.bias, inputs[0].numel() // module.in_features))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        decode()
    finally:
        for handle in handles:
            handle.remove()
    if not any(weight is model.generator.weight for weight, _, _ in calls):
        raise RuntimeError("no product of a decoding step was recorded (only the encoder's?)")
    return calls


def _onednn_linear() -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """``(x, weight, bias) -> x @ weight.T + bias`` by oneDNN, each weight packed on first use
    (before the timed rounds: ``replay_seconds`` makes one untimed call)."""
    packed: dict[int, Tensor] = {}

    def product(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
        if id(w) not in packed:
            packed[id(w)] = onednn.pack(w)
        return onednn.packed_product(packed[id(w)], bias)(x)

    return product


def _numpy_linear(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    out = torch.from_numpy(np.matmul(x.numpy(), w.detach().T.numpy()))  # NumpyLinear's product
    return out if bias is None else out.add_(bias)


def replay_seconds(calls: list[tuple[Tensor, Any, int]], rounds: int, product: Callable) -> float:
    """Median seconds of the recorded products alone (inputs made beforehand), each multiplied
    by ``product(x, weight, bias)``."""
    inputs = [torch.randn(rows, w.size(1)) for w, _, rows in calls]

    def products() -> None:
        for (w, bias, _), x in zip(calls, inputs, strict=True):
            product(x, w, bias)

    with torch.inference_mode():
        return median_seconds(products, rounds)


def median_seconds(run: Callable[[], Any], rounds: int) -> float:
    """Median seconds of ``rounds`` calls of ``run``, after one untimed call."""
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@contextmanager
def products_skipped() -> Iterator[None]:
    """Within the block, NumPy's product (:mod:`formers.inference.gemm`, also a oneDNN layer's
    one-row products on an AMD CPU) and oneDNN's (:mod:`formers.inference.onednn`), and the
    ``F.linear`` a oneDNN layer runs below its ``min_rows`` (MKL's one-row products on an Intel
    CPU), return a ready output of the right shape instead of multiplying (one per shape, made
    on first use)."""
    ready: dict[tuple[int, ...], Tensor] = {}

    def output(shape: tuple[int, ...]) -> Tensor:
        if shape not in ready:
            ready[shape] = torch.randn(shape)
        return ready[shape]

    def lookup(rows: Tensor, weight_t: np.ndarray, bias: np.ndarray | None) -> Tensor:
        return output((rows.size(0), weight_t.shape[1]))  # (N, out)

    def packed_lookup(packed: Tensor, bias: Tensor | None) -> Callable[[Tensor], Tensor]:
        return lambda x: output((*x.shape[:-1], packed.size(0)))  # (..., out)

    def linear_lookup(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return output((*x.shape[:-1], weight.size(0)))  # (..., out)

    functional = SimpleNamespace(linear=linear_lookup)  # onednn.py uses F.linear alone
    patched = [
        (gemm, "_numpy_product", lookup), (onednn, "packed_product", packed_lookup),
        (onednn, "F", functional),
    ]  # fmt: skip
    real = [getattr(module, name) for module, name, _ in patched]
    for module, name, fake in patched:
        setattr(module, name, fake)
    try:
        yield
    finally:
        for (module, name, _), original in zip(patched, real, strict=True):
            setattr(module, name, original)


def outside_seconds(decode: Callable[..., Any], batches: list[Tensor], beam: int,
                    rounds: int) -> float:  # fmt: skip
    """Median seconds of ``decode`` over ``batches`` with its products skipped (one untimed
    round first)."""
    with torch.no_grad(), products_skipped():
        return median_seconds(lambda: [decode(src, beam) for src in batches], rounds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batch-one", type=int, default=8, help="sources decoded one at a time")
    p.add_argument("--src-len", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=31, help="N: N - 1 tokens, then EOS")
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attempts", nargs="+", choices=ATTEMPTS, default=list(ATTEMPTS),
                   help="which to run ('formers', the reference, always runs)")  # fmt: skip
    p.add_argument(
        "--runtimes-json",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "runtimes_cpu_epyc.json",
        help="a runtimes.py result of the same size: Hugging Face's and CTranslate2's tokens/s",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                   "decode_attempts_cpu.json")  # fmt: skip
    return p.parse_args(argv)


def build(
    args: argparse.Namespace,
) -> tuple[dict[str, Callable[..., Any]], nn.Module, Callable[..., Any]]:
    """``attempt -> decode(src, beam)`` (returning ``None`` where unsupported), the formers
    model, and its decode through its modules (whose forward hooks see every product; the flat
    step's NumPy products bypass the modules)."""
    from formers.inference.flat_step import fast_decodable
    from formers.inference.layout import use_inference_layout
    from formers.models.transformer.convert import load_hf

    base = load_hf(marian_model(args)).eval()
    ours = use_inference_layout(copy.deepcopy(base))
    ordinary = use_inference_layout(copy.deepcopy(base), huge_pages=False)
    numpy_products = use_inference_layout(copy.deepcopy(base), "numpy")
    mkl = use_inference_layout(copy.deepcopy(base), "torch")
    fused = fuse_self_attention(use_inference_layout(copy.deepcopy(base), "numpy"))
    packed = pack_linears(copy.deepcopy(base), args.batch_size)
    n = args.new_tokens
    step = StaticStep(base).eval()
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(step)

    def searched(model: nn.Module) -> Callable[..., Any]:
        def decode(src: Tensor, beam: int) -> Tensor:
            common = dict(max_len_a=0.0, max_len_b=n, min_len=n - 1)
            if beam == 1:
                return greedy_search(model, src, **common).tokens[:, : n - 1]
            return beam_search(model, src, beam_size=beam, **common).tokens[:, : n - 1]

        return decode

    def static(run: Callable[..., Tensor]) -> Callable[..., Any]:
        def decode(src: Tensor, beam: int) -> Tensor | None:
            return static_greedy(base, run, src, n) if beam == 1 else None

        return decode

    attempts = {
        "formers": searched(fast_decodable(ours)),
        "numpy-products": searched(fast_decodable(numpy_products)),
        "ordinary-pages": searched(fast_decodable(ordinary)), "module-step": searched(ours),
        "mkl-column-major": searched(mkl),
        "standard-layout": searched(base), "onednn-packed": searched(packed),
        "fused-qkv": searched(fused), "static-cache": static(step),
        "static-cache-compiled": static(compiled),
    }  # fmt: skip
    chosen = {k: v for k, v in attempts.items() if k == "formers" or k in args.attempts}
    return chosen, ours, attempts["module-step"]


def run_mode(attempts: dict[str, Callable[..., Any]], batches: list[Tensor], beam: int,
             args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Interleaved rounds of every attempt; the first (untimed) call of each is timed apart
    (the compiled step compiles there)."""
    tokens = sum(b.size(0) for b in batches) * (args.new_tokens - 1)
    outputs: dict[str, Any] = {}

    def once(name: str) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            outs = [attempts[name](src, beam) for src in batches]
        outputs[name] = None if outs[0] is None else torch.cat(outs)
        return time.perf_counter() - start

    first_call = {name: once(name) for name in attempts}
    times = interleaved(list(attempts), once, args.rounds)
    rows = speed_rows(times, outputs, tokens)
    for name, row in rows.items():
        if row.get("supported", True):
            row["speed_over_formers"] = rows["formers"]["median_s"] / row["median_s"]
            row["identical_to_formers"] = torch.equal(outputs[name], outputs["formers"])
            row["first_call_s"] = first_call[name]
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    attempts, ours, module_step = build(args)
    skippable = gemm_backend(ours) in ("numpy", "onednn")  # products_skipped's two
    gen = torch.Generator().manual_seed(args.seed)
    src = torch.randint(1, args.vocab - 1, (args.batch_size, args.src_len), generator=gen)
    load_before = load_average()
    reference = {}
    if args.runtimes_json.exists():
        measured = json.loads(args.runtimes_json.read_text())
        if measured["model"]["size"] == args.size and measured["threads"] == args.threads:
            reference = measured["results"]
    results: dict[str, Any] = {}
    ones = [src[i : i + 1] for i in range(args.batch_one)]
    for label, batches in ((f"batch{args.batch_size}", [src]), ("batch1", ones)):
        for mode, beam in (("greedy", 1), ("beam", args.beam_size)):
            key = f"{mode}_{label}"
            rows = run_mode(attempts, batches, beam, args)
            tokens = sum(b.size(0) for b in batches) * (args.new_tokens - 1)
            calls = recorded_products(
                ours, lambda b=batches, m=beam: [module_step(s, m) for s in b]
            )  # fmt: skip
            alone = replay_seconds(calls, args.rounds, F.linear)
            bound = {"tokens_per_s": tokens / alone, "products": len(calls)}
            alone = replay_seconds(calls, args.rounds, _numpy_linear)
            rows["products_alone_numpy"] = {"tokens_per_s": tokens / alone, "products": len(calls)}
            if onednn.onednn_available():
                alone = replay_seconds(calls, args.rounds, _onednn_linear())
                rows["products_alone_onednn"] = {
                    "tokens_per_s": tokens / alone, "products": len(calls),
                }  # fmt: skip
            hf = reference.get(key, {}).get("transformers", {}).get("tokens_per_s")
            ct2 = reference.get(key, {}).get("ct2", {}).get("tokens_per_s")
            if hf:
                bound["target_1.5x_transformers_tokens_per_s"] = 1.5 * hf
            if ct2:
                bound["ct2_tokens_per_s"] = ct2
            rows["products_alone"] = bound
            if skippable:
                outside = outside_seconds(attempts["formers"], batches, beam, args.rounds)
                rows["outside_products"] = {
                    "seconds": outside, "share_of_formers": outside / rows["formers"]["median_s"],
                }  # fmt: skip
            results[key] = rows
    runtime = time.perf_counter() - t_start
    warnings = []
    if load_before and load_before[0] > args.threads + 0.5:
        warnings.append(f"load average {load_before[0]} before the run: other work shared the CPU")
    result = {
        **result_header("decode_attempts", argv, torch.device("cpu")),
        "torch": torch.__version__,
        "threads": args.threads,
        "gemm": {
            "formers": gemm_backend(ours),
            "cpu_vendor": cpu_vendor(),
            "numpy_blas": numpy_blas_name(),
        },  # fmt: skip
        "load_average_1_5_min_before": load_before,
        "model": {"size": args.size, **SIZES[args.size], "vocab_size": args.vocab},
        "data": {
            "batch_size": args.batch_size,
            "batch_one_sentences": args.batch_one,
            "src_len": args.src_len,
            "tokens_per_sentence": args.new_tokens - 1,
        },  # fmt: skip
        "rounds": args.rounds,
        "reference": str(args.runtimes_json) if reference else None,
        "results": results,
        "warnings": warnings,
        "runtime_s": runtime,
    }
    write_result(args.out, result)
    for key, rows in results.items():
        print(key)
        for name, row in rows.items():
            if not row.get("supported", True):
                print(f"  {name:22s} (greedy only)")
                continue
            extra = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()
                     if k not in ("tokens_per_s", "seconds_per_round")}  # fmt: skip
            speed = f"{row['tokens_per_s']:8.1f} tokens/s" if "tokens_per_s" in row else " " * 17
            print(f"  {name:22s} {speed}  {extra}")
    print_footer(warnings, runtime, args.out)
    return result


if __name__ == "__main__":
    main()
