#!/usr/bin/env bash
# The GPU checks of issue 15 (part 6), one short script for a machine with a CUDA GPU:
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (at most GPU_CHECK_BUDGET_S seconds, default 540)
# It needs a Python whose torch has CUDA ($PYTHON, else python3 or python). Where formers is not
# installed it runs from src/ (PYTHONPATH), as on a bare GPU machine that has PyTorch and the
# usual packages but no network. Tiny Shakespeare comes from $FORMERS_DATA, ../shared/data or
# .gpu_carry/data (made by benchmarks/gpu_carry.sh, for a machine that the shared data does not
# reach). CTranslate2 rows run where ctranslate2 imports; Hugging Face rows need transformers.
# Results go to OUT_DIR (default: benchmarks/results/gpu), each step's log beside its JSON; the
# Shakespeare run's checkpoints stay in a temporary folder (its log.jsonl is copied). The steps
# run in order of importance, each with its own time limit; a step that fails or would exceed the
# budget is reported and the others still run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
BUDGET="${GPU_CHECK_BUDGET_S:-540}"
START=$SECONDS
status=0
if ! "$PY" -c "import formers" 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
step() {  # step NAME LIMIT_S COMMAND...: run within LIMIT_S and the budget, log, remember a failure
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 30)); then
        echo "== $name SKIPPED: ${left} s of the ${BUDGET} s budget left"; status=1; return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (at most ${limit} s): $*"
    local t0=$SECONDS
    if ! timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then
        echo "== $name FAILED or timed out after $((SECONDS - t0)) s (see $OUT/$name.log)"; status=1
    else
        echo "== $name done in $((SECONDS - t0)) s"
    fi
    tail -n 5 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$OUT/gpu.txt" || exit 1
data=""
for d in "${FORMERS_DATA:-}" ../shared/data .gpu_carry/data; do
    if [[ -n "$d" && -f "$d/tinyshakespeare/input.txt" ]]; then data="$d"; break; fi
done
runtimes=(formers transformers)
if "$PY" -c "import ctranslate2" 2>/dev/null; then runtimes+=(ct2 ct2-int8); fi

step test_cuda 120 "$PY" -m pytest -q tests/training/test_cuda.py
step train_throughput_bf16 90 "$PY" benchmarks/train_throughput.py --device cuda --bf16 \
    --out "$OUT/train_throughput_cuda_bf16.json"
# nanoGPT's GPU Shakespeare recipe: the target is a validation loss <= 1.47
run_dir="$(mktemp -d)/shakespeare_char"
if [[ -n "$data" ]]; then
    step shakespeare_char 240 "$PY" -m formers train configs/shakespeare_char.toml \
        --set "data.train=$data/tinyshakespeare/input.txt" --run-dir "$run_dir" --no-progress
    cp "$run_dir/log.jsonl" "$OUT/shakespeare_char_log.jsonl" 2>/dev/null
    grep '"type": "valid"' "$OUT/shakespeare_char_log.jsonl" 2>/dev/null | tail -n 1
else
    echo "== shakespeare_char SKIPPED: no tinyshakespeare/input.txt (see benchmarks/gpu_carry.sh)"
    status=1
fi
# the same weights decoded by formers, Hugging Face (and CTranslate2 where it imports) on the GPU
step runtimes 120 "$PY" benchmarks/runtimes.py --device cuda --rounds 3 \
    --runtimes "${runtimes[@]}" --out "$OUT/runtimes_cuda.json"
step hf_decoding 60 "$PY" benchmarks/hf_decoding.py --device cuda --out "$OUT/hf_decoding_cuda.json"
step train_throughput_fp32 60 "$PY" benchmarks/train_throughput.py --device cuda \
    --out "$OUT/train_throughput_cuda.json"
echo "== $((SECONDS - START)) s in all; status $status"
exit $status
