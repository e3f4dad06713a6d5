set -u
export GRAFT_HOME=/tmp/g
S=smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,qwen2.5-coder-7b
t0=$(date +%s)
.stage/graft-split bench gpu --model /none --checks tiny --shapes $S,synthetic-gqa32 --reps 30 > $OUT/split_checks.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
for b in graft graft-split graft graft-split; do .stage/$b bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/ab_$b.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"; grep -E "seeded|real" $OUT/ab_$b.txt | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/qwen2.5-coder-/q/; s/smollm2-135m/s/' | paste -sd' ' | fold -w 250; done
for b in graft graft-split; do .stage/$b bench gpu --model /none --checks none --shapes smollm2-135m --context 2048 --reps 30 > $OUT/ab2048_$b.txt 2>&1; grep -E "seeded|real" $OUT/ab2048_$b.txt | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/smollm2-135m/s/' | paste -sd' '; done
GRAFT_CUDA_GRAPHS=0 timeout 300 /usr/local/cuda/bin/ncu --clock-control none --cache-control none --csv --metrics gpu__time_duration.sum -k regex:"wide|skinny|attention|rms_norm|embed|argmax" --launch-count 4500 .stage/graft-split bench gpu --model /none --checks none --shapes smollm2-135m --reps 1 > $OUT/ncu_smollm2.csv 2> $OUT/ncu_err.txt; echo "ncu rc $? $(( $(date +%s) - t0 ))s"
gzip $OUT/ncu_smollm2.csv
grep -E "FAIL|rror" $OUT/split_checks.txt | head; grep -c PASS $OUT/split_checks.txt
