#!/usr/bin/env bash
# The CUDA backend's checks and benchmarks in one device call (GPU.md: build
# here, carry the binary; the default model arrives in parts first).
#
#   bench/gpu.sh BIN MODEL.gguf CASES.jsonl
#
# 1. graft bench gpu: GPU vs CPU logits on the tiny fixture models and the
#    default model's reference prompts (relative error bound printed),
#    identical greedy tokens, speculative = greedy on the GPU; then step
#    latency vs width for the default model and seeded Qwen2.5-Coder shapes
#    next to the floors.
# 2. graft bench spec --device cuda on the first 50 apply cases (asserts
#    speculative output = greedy for every case), dumping prompts and output
#    lengths.
# 3. bench/hf_peer.py: transformers bf16 greedy and prompt lookup on the same
#    prompts and output lengths (needs the gguf wheel on PYTHONPATH).
# Full logs go to $OUT (or ./gpu-out); a short table is printed last.
set -uo pipefail
BIN=${1:?graft binary}
MODEL=${2:?model file}
CASES=${3:?apply cases (JSONL)}
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
export GRAFT_HOME=${GRAFT_HOME:-/tmp/graft-home}
status=0

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
"$BIN" bench gpu --model "$MODEL" --fixtures fixtures 2>&1 | tee "$OUT/bench_gpu.log" || status=1
"$BIN" bench spec --device cuda --model "$MODEL" --cases "$CASES" --n 50 --max-output 256 \
    --dump-cases "$OUT/cases.jsonl" 2>&1 | tee "$OUT/bench_spec.log" || status=1
PYTHONUNBUFFERED=1 timeout 360 python3 bench/hf_peer.py --gguf "$MODEL" --cases "$OUT/cases.jsonl" --n 8 \
    2>&1 | tee "$OUT/hf_peer.log" || status=1

echo
echo "===== summary ====="
grep -E "PASS|FAIL" "$OUT/bench_gpu.log" | sed 's/  */ /g'
grep -E "^(shape|default|qwen)" "$OUT/bench_gpu.log" | grep -E "^shape| (1|8|32|128) " 
tail -6 "$OUT/bench_spec.log"
tail -9 "$OUT/hf_peer.log"
exit $status
