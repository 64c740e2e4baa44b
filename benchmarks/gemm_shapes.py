"""PyTorch's product against NumPy's and oneDNN's, layer by layer: where do
``formers.inference.gemm``'s NumPy and oneDNN backends pay?

For each weight shape, enough distinct ``nn.Linear`` layers to fill 96 MB (so that, as in a
decoding step, every weight is read from memory rather than from the cache) are converted with
``use_inference_layout(..., backend)`` for ``torch``, ``numpy`` and ``onednn`` (where this
PyTorch has oneDNN; every layer forced through the backend, whatever its size), and each set is
timed over all its layers, interleaved, best of ``--rounds``. Rows: inputs of 1, 4, 32
and 128 rows (a decoding step's batch x beams). One thread (the NumPy backend runs only there).

Usage::

    python benchmarks/gemm_shapes.py --out benchmarks/results/gemm_shapes_cpu_epyc.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, print_footer, result_header, write_result
from torch import nn

from formers.inference import gemm
from formers.inference.layout import use_inference_layout
from formers.inference.onednn import onednn_available

SHAPES = [
    (128, 128), (128, 512), (256, 256), (256, 1024), (384, 384), (384, 1536), (1536, 384),
    (512, 512), (512, 2048), (2048, 512), (1024, 1024), (512, 8000), (128, 10000),
]  # fmt: skip
ROWS = (1, 4, 32, 128)


def seconds_per_layer(layers: list[nn.Module], x: torch.Tensor, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for layer in layers:
            layer(x)
    return (time.perf_counter() - start) / (repeats * len(layers))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--megabytes", type=float, default=96.0, help="weights per shape")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                   "gemm_shapes_cpu.json")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    gemm.NUMPY_MIN_WEIGHTS = 0  # every layer through each backend: the thresholds are measured
    gemm.ONEDNN_MIN_WEIGHTS = 0
    backends = ("torch", "numpy", *(("onednn",) if onednn_available() else ()))
    rows_out: list[dict[str, Any]] = []
    for fan_in, fan_out in SHAPES:
        copies = max(4, int(args.megabytes * 1e6 / (fan_in * fan_out * 4)))
        sets = {
            backend: [use_inference_layout(nn.Linear(fan_in, fan_out), backend)
                      for _ in range(copies)]
            for backend in backends
        }  # fmt: skip
        for rows in ROWS:
            x = torch.randn(rows, 1, fan_in)  # (rows, 1, in): a decoding step's input
            repeats = max(2, int(4e8 / (copies * fan_in * fan_out * max(rows, 16))))
            best = {name: float("inf") for name in sets}
            with torch.inference_mode():
                for layers in sets.values():  # warm up
                    seconds_per_layer(layers, x, 1)
                for _ in range(args.rounds):
                    for name, layers in sets.items():
                        best[name] = min(best[name], seconds_per_layer(layers, x, repeats))
            row = {
                "in": fan_in, "out": fan_out, "weights": fan_in * fan_out, "rows": rows,
                **{f"{name}_us": 1e6 * best[name] for name in backends},
                "speed_up": best["torch"] / best["numpy"],  # NumPy's over PyTorch's
            }  # fmt: skip
            if "onednn" in best:
                row["onednn_speed_up"] = best["torch"] / best["onednn"]
            rows_out.append(row)
            times = "  ".join(f"{name} {row[f'{name}_us']:8.1f} us" for name in backends)
            ups = f"numpy {row['speed_up']:.2f}x" + (
                f", onednn {row['onednn_speed_up']:.2f}x" if "onednn" in best else ""
            )
            print(f"({fan_in:5d}, {fan_out:5d}) rows {rows:4d}: {times}  ({ups})", flush=True)
    runtime = time.perf_counter() - t_start
    result = {
        **result_header("gemm_shapes", argv, torch.device("cpu")),
        "torch": torch.__version__,
        "threads": 1,
        "cpu_vendor": gemm.cpu_vendor(),
        "numpy_blas": gemm.numpy_blas_name(),
        "backends": list(backends),
        "megabytes_per_shape": args.megabytes,
        "rows": rows_out,
        "runtime_s": runtime,
    }
    write_result(args.out, result)
    print_footer([], runtime, args.out)
    return result


if __name__ == "__main__":
    main()
