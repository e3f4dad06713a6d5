#!/usr/bin/env bash
# The CUDA backend's checks and benchmarks in one device call (GPU.md: build
# here, carry the binary; the default model arrives in parts first).
#
#   bench/gpu.sh BIN MODEL.gguf DEV.jsonl [DEV-HARD.jsonl]
#
# 1. bench/hf_bf16_error.py: transformers' own bf16-vs-f32 logit error on the
#    default model's reference prompts (the scale `--peer-errors` uses).
# 2. graft bench gpu: the wide product kernel = the skinny one bit for bit
#    on 7 shapes at every width; every row's logits the same bits at step
#    widths 1-100 (tiny, default and seeded models); GPU vs CPU logits on the tiny fixture models
#    and the default model's reference prompts (relative error bound
#    printed), identical greedy tokens (up to a measured near-tie),
#    speculative = greedy on the GPU; then step
#    latency vs width for the default model and seeded Qwen2.5-Coder shapes
#    next to the floors; then the default model's steps again with
#    programmatic dependent launch off (GRAFT_CUDA_PDL=0), for its share,
#    and at 2,048 tokens of context (the apply prompts' range is 500-2,100).
# 3. graft bench spec --device cuda on the first 50 cases of DEV (asserts
#    speculative output = greedy for every case), dumping prompts and output
#    lengths to a scratch file (third-party code: not for $OUT).
# 4. bench/hf_peer.py: transformers bf16 greedy and prompt lookup on the same
#    prompts and output lengths (needs the gguf wheel on PYTHONPATH).
# 5. Given DEV-HARD: graft fixtures --device cuda in model and auto mode on
#    DEV and DEV-HARD (the apply pipeline end to end with the model on the
#    GPU; minutes), into one log.
# Full logs go to $OUT (or ./gpu-out), at most 8 files (what one device call
# brings back); a short table is printed last.
set -uo pipefail
BIN=${1:?graft binary}
MODEL=${2:?model file}
CASES=${3:?apply cases (JSONL)}
HARD=${4:-}
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
export GRAFT_HOME=${GRAFT_HOME:-/tmp/graft-home}
status=0

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
timeout 300 python3 bench/hf_bf16_error.py --gguf "$MODEL" \
    --reference fixtures/reference/smollm2-135m-instruct-q4_1/reference.json > "$OUT/hf_bf16_error.json" || status=1
cat "$OUT/hf_bf16_error.json"
"$BIN" bench gpu --model "$MODEL" --fixtures fixtures --peer-errors "$OUT/hf_bf16_error.json" 2>&1 \
    | tee "$OUT/bench_gpu.log" || status=1
GRAFT_CUDA_PDL=0 "$BIN" bench gpu --model "$MODEL" --checks none --shapes default 2>&1 \
    | tee "$OUT/bench_gpu_no_pdl.log" || status=1
"$BIN" bench gpu --model "$MODEL" --checks none --shapes default --context 2048 2>&1 \
    | tee "$OUT/bench_gpu_ctx2048.log" || status=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$BIN" bench spec --device cuda --model "$MODEL" --cases "$CASES" --n 50 --max-output 256 \
    --dump-cases "$scratch/cases.jsonl" 2>&1 | tee "$OUT/bench_spec.log" || status=1
PYTHONUNBUFFERED=1 timeout 360 python3 bench/hf_peer.py --gguf "$MODEL" --cases "$scratch/cases.jsonl" --n 8 \
    2>&1 | tee "$OUT/hf_peer.log" || status=1

for set in ${HARD:+"$CASES" "$HARD"}; do
    name=$(basename "$set" .jsonl)
    for engine in model auto; do
        echo "===== graft fixtures $name --engine $engine =====" >> "$OUT/fixtures.log"
        timeout 600 "$BIN" fixtures "$set" --engine "$engine" --device cuda --model "$MODEL" \
            >> "$OUT/fixtures.log" 2>&1
        echo "fixtures $name --engine $engine: exit $?" >> "$OUT/fixtures.log"
        tail -13 "$OUT/fixtures.log"
    done
done

echo
echo "===== summary ====="
grep -E "PASS|FAIL" "$OUT/bench_gpu.log" | sed 's/  */ /g'
grep -E "^(shape|default|qwen)" "$OUT/bench_gpu.log" | grep -E "^shape| (1|8|32|128) "
echo "pdl off:"; grep -E "^default" "$OUT/bench_gpu_no_pdl.log" | grep -E " (1|8|32|128) "
echo "context 2048:"; grep -E "^default" "$OUT/bench_gpu_ctx2048.log" | grep -E " (1|8|32|128) "
tail -6 "$OUT/bench_spec.log"
tail -9 "$OUT/hf_peer.log"
exit $status
