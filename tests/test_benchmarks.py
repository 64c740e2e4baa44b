"""The benchmark scripts run (a tiny smoke run; the figures themselves are not tested)."""

import json
import subprocess
import sys
from pathlib import Path

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
