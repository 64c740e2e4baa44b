"""The Music Transformer's skew against the explicit relative term: peak memory and time.

The relative term of relative attention (Shaw et al. 2018) is ``S^rel_ij = q_i . e_(j - i)``.
Written out (``explicit``), it gathers one embedding per pair, ``R = E[j - i]`` of shape
``(L, L, D)``, and contracts it with the queries: ``O(L^2 D)`` memory. The Music Transformer
(Huang et al. 2018, arXiv 1809.04281, section 3.4.1) multiplies the queries by the ``L``
embeddings once, ``Q E^T`` ``(L, L)``, and *skews* the product into place (``skew``,
:func:`formers.nn.relative.skew`, as :class:`~formers.nn.relative.MusicRelativeAttention` does):
beyond the ``L x L`` logits that every attention has, ``O(L D)``. The paper's claim is that
memory of the relative term, linear in ``L`` instead of quadratic times ``D``.

For each length ``L`` (one head of width ``D = 64``, batch 1, float32, causal distances) each
method runs in a fresh process that measures

- ``peak_mb``: how much the process's peak resident memory grew during the computation (after
  the queries and embeddings exist): what it allocated at most;
- ``materialized_mb``: the sizes of the tensors the method creates, counted from their shapes
  (``explicit``: the gathered ``R``, its index and the output; ``skew``: the product, its padded
  copy (the reshape and slice are views)), beside the output itself, ``L x L``;
- ``relative_embeddings_mb``: what represents the relative positions: ``R`` (``L x L x D``)
  or ``E^r`` (``L x D``): the paper's comparison;
- ``ms``: the median wall time of ``--repeats`` runs,

and checks that both give the same lower triangle (the causal part). Results go to
``benchmarks/results/relative_skew_cpu.json``.

Usage::

    python benchmarks/relative_skew.py                        # L = 512 .. 4,096, ~2 minutes
    python benchmarks/relative_skew.py --lengths 64 128 --repeats 1 --out /tmp/skew.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, device_info, git_info, load_average, write_result

from formers.nn.relative import skew

METHODS = ("explicit", "skew")
MB = 2**20


def relative_logits(method: str, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``(L, L)`` relative logits of queries ``(L, D)`` and embeddings of distances
    ``-(L-1) .. 0`` ``(L, D)`` (row ``r``: distance ``r - (L - 1)``)."""
    length = q.size(0)
    if method == "skew":
        return skew(q @ e.t())  # (L, L): column j of row i holds distance j - i (j <= i)
    i = torch.arange(length)
    index = (i[None, :] - i[:, None]).clamp(max=0) + length - 1  # (L, L) rows of E
    return torch.einsum("id,ijd->ij", q, e[index])  # e[index]: (L, L, D), one vector a pair


def materialized_bytes(method: str, length: int, dim: int) -> int:
    """Bytes of the tensors ``method`` creates, from their shapes (float32, int64 index)."""
    if method == "skew":
        return 4 * (length * length + length * (length + 1))  # Q E^T and its padded copy
    return 4 * length * length * dim + 8 * length * length + 4 * length * length  # R, index, out


def measure(method: str, length: int, dim: int, repeats: int) -> dict[str, Any]:
    """Run in this process (a fresh one per configuration): peak growth, sizes, times."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    q, e = torch.randn(length, dim, generator=gen), torch.randn(length, dim, generator=gen)
    relative_logits(method, q[:8], e[-8:])  # warm up: the first call's one-off allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = relative_logits(method, q, e)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        relative_logits(method, q, e)
        times.append(time.perf_counter() - start)
    lower = torch.ones(length, length, dtype=torch.bool).tril()
    reference = relative_logits("skew" if method == "explicit" else "explicit", q[:256], e[-256:])
    mine = relative_logits(method, q[:256], e[-256:])
    small = torch.ones(min(256, length), min(256, length), dtype=torch.bool).tril()
    return {
        "peak_mb": round((after - before) / 1024, 1),
        "materialized_mb": round(materialized_bytes(method, length, dim) / MB, 1),
        "output_mb": round(out.numel() * 4 / MB, 1),
        # what represents the relative positions: R, one vector a pair, or E, one a distance
        "relative_embeddings_mb": round(4 * dim * length * (length if method == "explicit"
                                                            else 1) / MB, 4),  # fmt: skip
        "ms": round(1e3 * statistics.median(times), 1),
        "agrees_with_other_method": bool(torch.allclose(mine[small], reference[small], atol=1e-4)),
        "finite": bool(torch.isfinite(out[lower]).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--dim", type=int, default=64, help="head width D (default: 64)")
    parser.add_argument("--repeats", type=int, default=3)
    default_out = ROOT / "benchmarks/results/relative_skew_cpu.json"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one configuration, in its own process, printed as JSON
        method, length = args.child[0], int(args.child[1])
        print(json.dumps(measure(method, length, args.dim, args.repeats)))
        return
    start, rows = time.perf_counter(), []
    for length in args.lengths:
        row: dict[str, Any] = {"length": length}
        for method in METHODS:
            cmd = [sys.executable, __file__, "--child", method, str(length), "--dim",
                   str(args.dim), "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row[method] = json.loads(done.stdout)
        row["peak_ratio_explicit_over_skew"] = round(
            row["explicit"]["peak_mb"] / max(row["skew"]["peak_mb"], 0.1), 1
        )
        rows.append(row)
        print(
            f"L={length:5d}  explicit: peak +{row['explicit']['peak_mb']:8.1f} MB "
            f"({row['explicit']['ms']:8.1f} ms)   skew: peak +{row['skew']['peak_mb']:7.1f} MB "
            f"({row['skew']['ms']:6.1f} ms)   output {row['skew']['output_mb']:.1f} MB",
            flush=True,
        )
    result = {
        "benchmark": "relative_skew",
        "command": " ".join(sys.argv),
        "device": device_info(torch.device("cpu")),
        "torch_version": torch.__version__,
        "git": git_info(),
        "load_average_1_5_15_min": load_average(),
        "setup": {"heads": 1, "batch": 1, "head_dim": args.dim, "dtype": "float32",
                  "threads": 1, "distances": "causal, -(L-1) .. 0"},  # fmt: skip
        "results": rows,
        "runtime_s": round(time.perf_counter() - start, 1),
    }
    write_result(args.out, result)
    print(f"runtime {result['runtime_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
