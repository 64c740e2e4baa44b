"""Throughput and latency of ``formers serve`` under concurrent clients, with and without batching.

For each setting (dynamic batching on, then off: ``--no-batching``) the script starts the real
command, ``formers serve --checkpoint DIR --port 0``, in a subprocess, waits for it, and sends
``--requests`` POST /translate requests of one sentence each from ``--concurrency`` client
threads over HTTP on 127.0.0.1 (sentences from ``--input``, in order, cycling). It records the
wall time, requests/s, sentences/s, the latency median and 95th percentile, and checks that the
two settings return the same translation for every sentence (batching must change nothing but
the speed).

Usage::

    python benchmarks/serve_throughput.py --checkpoint runs/multi30k_en_de_cpu_raw/average \\
        --input ../shared/data/multi30k/test_2016_flickr.en.gz --requests 256 --concurrency 32

Writes ``benchmarks/results/serve_throughput_cpu.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import torch
from common import ROOT, device_info, git_info, load_average, write_result


def read_sentences(path: Path, n: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise SystemExit(f"{path}: no sentences")
    return [lines[i % len(lines)] for i in range(n)]


def start_server(checkpoint: Path, threads: int, max_batch: int, *options: str) -> tuple[
    subprocess.Popen, str
]:  # fmt: skip
    """Start ``formers serve`` on a free port with ``options``; return the process and its URL."""
    command = [
        sys.executable, "-m", "formers.cli.main", "serve", "--checkpoint", str(checkpoint),
        "--port", "0", "--threads", str(threads), "--max-batch", str(max_batch), *options,
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
        if found:  # keep reading its log (one line a request), or a full pipe would stall it
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, found.group(1)
    server.kill()
    raise SystemExit("formers serve did not start")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()


def run_setting(args: argparse.Namespace, sentences: list[str], batching: bool) -> dict[str, Any]:
    options = () if batching else ("--no-batching",)
    server, url = start_server(args.checkpoint, args.threads, args.concurrency, *options)
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            body = {"beam": args.beam, "lenpen": args.lenpen}
            client.post("/translate", json={"text": sentences[0], **body}).raise_for_status()

            def ask(text: str) -> tuple[float, str]:
                start = time.perf_counter()
                response = client.post("/translate", json={"text": text, **body})
                response.raise_for_status()
                return time.perf_counter() - start, response.json()["translations"][0]["text"]

            batches_before = client.get("/health").json()["batches"]
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                answers = list(pool.map(ask, sentences))
            wall = time.perf_counter() - start
            batches = client.get("/health").json()["batches"] - batches_before
    finally:
        stop_server(server)
    latencies = sorted(latency for latency, _ in answers)
    return {
        "batching": batching,
        "wall_s": wall,
        "requests_per_s": len(sentences) / wall,
        "latency_median_s": statistics.median(latencies),
        "latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "model_batches": batches,
        "translations": [text for _, text in answers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a translation checkpoint")
    parser.add_argument("--input", type=Path, required=True, help="sentences, one a line (.gz ok)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--lenpen", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=0, help="the server's torch threads")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_throughput_cpu.json"
    )
    args = parser.parse_args()
    sentences = read_sentences(args.input, args.requests)
    load_before = load_average()
    settings = [run_setting(args, sentences, batching) for batching in (True, False)]
    on, off = settings
    differ = sum(a != b for a, b in zip(on["translations"], off["translations"], strict=True))
    result = {
        "benchmark": "serve_throughput",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "device": device_info(torch.device("cpu")),
        "torch": torch.__version__,
        "load_average": {"before": load_before, "after": load_average()},
        "setup": {
            "checkpoint": str(args.checkpoint),
            "input": str(args.input),
            "requests": args.requests,
            "sentences_per_request": 1,
            "concurrency": args.concurrency,
            "beam": args.beam,
            "lenpen": args.lenpen,
            "server_threads": args.threads or "torch default",
        },
        "results": {
            ("batching" if s["batching"] else "no_batching"): {
                k: v for k, v in s.items() if k not in ("translations", "batching")
            }
            for s in settings
        },
        "speedup_requests_per_s": on["requests_per_s"] / off["requests_per_s"],
        "translations_that_differ": differ,
    }
    write_result(args.out, result)
    for name, r in result["results"].items():
        print(
            f"{name:12s} {r['requests_per_s']:7.1f} requests/s, latency median "
            f"{r['latency_median_s'] * 1000:7.1f} ms, p95 {r['latency_p95_s'] * 1000:7.1f} ms, "
            f"{r['model_batches']} model batches"
        )
    print(
        f"speedup {result['speedup_requests_per_s']:.2f}x; translations that differ: {differ} "
        f"of {args.requests}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
