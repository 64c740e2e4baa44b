#!/usr/bin/env bash
# The GPU checks of issue 15 (part 6), one short script for a machine with a CUDA GPU:
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (about 10 minutes on one H100/H200-class GPU)
# It needs a Python whose torch has CUDA, with formers installed (pip install -e ".[dev,hf,ct2,onnx]").
# Results go to OUT_DIR (default: benchmarks/results/gpu), each step's log beside its JSON; a
# failing step is reported and the others still run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure
    local name=$1; shift
    echo "== $name: $*"
    if ! "$@" > "$OUT/$name.log" 2>&1; then
        echo "== $name FAILED (see $OUT/$name.log)"; status=1
    fi
    tail -n 5 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$OUT/gpu.txt" || exit 1
step test_cuda "$PY" -m pytest -q tests/training/test_cuda.py
step train_throughput_bf16 "$PY" benchmarks/train_throughput.py --device cuda --bf16 \
    --out "$OUT/train_throughput_cuda_bf16.json"
step train_throughput_fp32 "$PY" benchmarks/train_throughput.py --device cuda \
    --out "$OUT/train_throughput_cuda.json"
step hf_decoding "$PY" benchmarks/hf_decoding.py --device cuda --out "$OUT/hf_decoding_cuda.json"
# every runtime on the same weights, on the GPU (formers, Hugging Face, CTranslate2 if built with CUDA)
step runtimes "$PY" benchmarks/runtimes.py --device cuda --rounds 3 --out "$OUT/runtimes_cuda.json"
# nanoGPT's GPU Shakespeare recipe: the target is a validation loss <= 1.47
step shakespeare_char "$PY" -m formers train configs/shakespeare_char.toml \
    --run-dir "$OUT/shakespeare_char" --overwrite --no-progress
grep '"type": "valid"' "$OUT/shakespeare_char/log.jsonl" 2>/dev/null | tail -n 1
exit $status
