"""Helpers shared by the benchmark scripts: the machine, the commit, the device."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent


def git_info() -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# the instruction sets that decide which GEMM runs fast (formers.inference.gemm)
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_details() -> dict[str, Any]:
    """What tells two CPUs of one model name apart (a hypervisor may call both "AMD EPYC"):
    vendor, family and model numbers, caches, the vector instruction sets, and the one
    PyTorch's kernels dispatch to."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id"),
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "cache": info.get("cache size"),
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": device.type,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    else:
        info["name"] = info["cpu"]
    info["cpu_details"] = cpu_details()
    return info


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine skews CPU timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    return torch.device(name)


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result as indented JSON, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def print_footer(warnings: list[str], runtime: float, out: Path) -> None:
    """The last lines every benchmark prints: its warnings, how long it took, where it wrote."""
    for warning in warnings:
        print(f"WARNING: {warning}")
    print(f"runtime {runtime:.0f} s; wrote {out}")


def interleaved(names: list[str], once: Any, rounds: int) -> dict[str, list[float]]:
    """``rounds`` rounds of ``once(name) -> seconds`` over every name, the order alternating
    (so that neither end of a round is always the same one); the seconds of each name."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            times[name].append(once(name))
    return times


def speed_rows(times: dict[str, list[float]], outputs: dict[str, Any],
               tokens: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per name: tokens/s at the median round and at the best (fastest) one, and the rounds'
    seconds, or ``supported: False`` where the name gave no output (``None``). On a shared
    machine other tenants' memory traffic only ever slows a round, so the best round is the
    steadier figure there; the median is the usual one."""
    rows: dict[str, dict[str, Any]] = {}
    for name, seconds in times.items():
        if outputs[name] is None:
            rows[name] = {"supported": False}
        else:
            median, best = statistics.median(seconds), min(seconds)
            rows[name] = {"tokens_per_s": tokens / median, "median_s": median,
                          "best_tokens_per_s": tokens / best, "best_s": best,
                          "seconds_per_round": seconds}  # fmt: skip
    return rows


def result_header(benchmark: str, argv: list[str] | None, device: torch.device) -> dict[str, Any]:
    """The fields every benchmark's JSON opens with: its name, when, the command, the machine
    (the CPU model included) and the commit."""
    import datetime
    import sys

    command = [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    return {
        "benchmark": benchmark,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(command),
        "device": device_info(device),
        "git": git_info(),
    }
