"""A load test of ``formers serve``: N concurrent clients for a bounded time, latency percentiles
and throughput, with every answer checked.

The script starts the real command, ``formers serve --checkpoint DIR --port 0 --api-key KEY``,
in a subprocess (with the API key on, as a server exposed to a network would run), and then
``--clients`` threads each send POST /translate requests of one sentence (from ``--input``, each
client starting at its own place and cycling) back to back for ``--seconds``. Every answer is
checked against the library's own translation of that sentence, computed in this process
beforehand with the same options (:func:`formers.inference.translate`): a request that fails or
times out is *dropped*, an answer that differs is *wrong*; both must be 0. It records the
requests answered, requests/s, sentences/s and the latency's p50, p95 and p99.

Usage::

    python benchmarks/serve_load.py --checkpoint runs/multi30k_en_de_t5_cpu/average \\
        --input ../shared/data/multi30k/tok/test_2016_flickr.lc.norm.tok.en.gz --clients 16 \\
        --seconds 60

Writes ``benchmarks/results/serve_load_cpu.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from common import ROOT, device_info, git_info, load_average, write_result
from serve_throughput import read_sentences, start_server, stop_server

KEY = "load-test-key"


def references(args: argparse.Namespace, sentences: list[str]) -> dict[str, str]:
    """The library's translation of each distinct sentence, with the requests' options."""
    from formers.inference.translate import translate
    from formers.training.checkpoint import load_model

    model, tokenizer, _ = load_model(args.checkpoint)
    unique = sorted(set(sentences))
    found = translate(model, tokenizer, unique, beam=args.beam, lenpen=args.lenpen)
    return {text: hypotheses[0].text for text, hypotheses in zip(unique, found, strict=True)}


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-quantile (nearest rank) of sorted values."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def load(url: str, args: argparse.Namespace, sentences: list[str], expected: dict[str, str]):
    body = {"beam": args.beam, "lenpen": args.lenpen}
    headers = {"Authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    dropped, wrong = [0], [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=args.timeout, headers=headers) as session:
            i = index * len(sentences) // args.clients
            while time.perf_counter() < stop_at:
                text = sentences[i % len(sentences)]
                i += 1
                start = time.perf_counter()
                try:
                    response = session.post("/translate", json={"text": text, **body})
                    ok = response.status_code == 200
                    answer = response.json()["translations"][0]["text"] if ok else None
                except (httpx.HTTPError, ValueError, KeyError):
                    ok, answer = False, None
                elapsed = time.perf_counter() - start
                with lock:
                    if not ok:
                        dropped[0] += 1
                    else:
                        latencies.append(elapsed)
                        wrong[0] += answer != expected[text]

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sorted(latencies), dropped[0], wrong[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a translation checkpoint")
    parser.add_argument("--input", type=Path, required=True, help="sentences, one a line (.gz ok)")
    parser.add_argument("--sentences", type=int, default=200, help="distinct sentences to send")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--lenpen", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=0, help="the server's torch threads")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load_cpu.json"
    )
    args = parser.parse_args()
    sentences = read_sentences(args.input, args.sentences)
    expected = references(args, sentences)
    load_before = load_average()
    server, url = start_server(args.checkpoint, args.threads, args.clients, "--api-key", KEY)
    try:
        warm = httpx.post(url + "/translate", json={"text": sentences[0]}, timeout=120,
                          headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
        warm.raise_for_status()
        wall, latencies, dropped, wrong = load(url, args, sentences, expected)
    finally:
        stop_server(server)
    answered = len(latencies)
    result: dict[str, Any] = {
        "benchmark": "serve_load",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "device": device_info(torch.device("cpu")),
        "torch": torch.__version__,
        "load_average": {"before": load_before, "after": load_average()},
        "setup": {
            "checkpoint": str(args.checkpoint),
            "input": str(args.input),
            "distinct_sentences": len(set(sentences)),
            "clients": args.clients,
            "seconds": args.seconds,
            "beam": args.beam,
            "lenpen": args.lenpen,
            "api_key": True,
            "server_threads": args.threads or "torch default",
        },  # fmt: skip
        "results": {
            "wall_s": wall,
            "answered": answered,
            "dropped": dropped,
            "wrong": wrong,
            "requests_per_s": answered / wall,
            "latency_p50_s": percentile(latencies, 0.50) if latencies else None,
            "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
            "latency_p99_s": percentile(latencies, 0.99) if latencies else None,
            "latency_mean_s": statistics.fmean(latencies) if latencies else None,
        },
    }
    write_result(args.out, result)
    if not latencies:
        raise SystemExit(f"no request was answered ({dropped} dropped); wrote {args.out}")
    r = result["results"]
    print(
        f"{answered} requests in {wall:.1f} s from {args.clients} clients: "
        f"{r['requests_per_s']:.1f} requests/s; latency p50 {r['latency_p50_s'] * 1000:.0f} ms, "
        f"p95 {r['latency_p95_s'] * 1000:.0f} ms, p99 {r['latency_p99_s'] * 1000:.0f} ms; "
        f"dropped {dropped}, wrong {wrong}; wrote {args.out}"
    )
    if dropped or wrong:
        raise SystemExit(f"{dropped} dropped and {wrong} wrong answers")


if __name__ == "__main__":
    main()
