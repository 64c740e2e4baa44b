"""The benchmark scripts run (a tiny smoke run; the figures themselves are not tested)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_train_throughput_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", "cpu",
        "--preset", "transformer_tiny", "--rounds", "1", "--warmup", "1", "--batch-size", "4",
        "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["equivalence"]["max_abs_logit_diff"] < 1e-4
    for model in ("formers", "torch"):
        assert result["results"][model]["median_tokens_per_s"] > 0
    assert result["results"]["ratio_ours_over_torch"] > 0


def test_hf_decoding_writes_json(tmp_path):
    pytest.importorskip("transformers", reason="needs pip install 'formers[hf]'")
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "hf_decoding.py"), "--size", "tiny",
        "--rounds", "1", "--warmup", "0", "--batch-size", "4", "--new-tokens", "6",
        "--vocab", "100", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    for mode in ("greedy", "beam"):
        r = result["results"][mode]
        assert r["identical_tokens"]
        assert r["output_shape"] == [4, 6]
        assert r["formers"]["median_tokens_per_s"] > 0 and r["ratio_ours_over_hf"] > 0
