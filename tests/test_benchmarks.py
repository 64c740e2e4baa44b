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


def test_attention_capture_writes_json(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "attention_capture.py"), "--size", "tiny",
        "--rounds", "2", "--warmup", "1", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"encoder_decoder", "decoder_only", "encoder_only"}
    for r in result["results"].values():
        agree = r["agreement"]
        assert agree["max_abs_diff_default_vs_reference"] < 1e-5
        assert agree["max_abs_diff_default_vs_capture"] < 1e-4
        assert agree["max_abs_row_sum_error"] < 1e-5
        assert r["capture_leaves_no_state"]
        for variant in ("default", "reference", "default_after_capture", "capture"):
            assert r["timings"][variant]["median_ms"] > 0
        for stat in ("wall_min", "cpu_median", "wall_median"):
            assert set(r["ratios"][stat]) == {
                "default_over_reference", "default_after_capture_over_default",
                "capture_over_default",
            }  # fmt: skip
            assert all(x > 0 for x in r["ratios"][stat].values())
