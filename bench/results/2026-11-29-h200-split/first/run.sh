set -u
export GRAFT_HOME=/tmp/g
S=smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,qwen2.5-coder-7b
which nsys ncu 2>&1 | head -3
t0=$(date +%s)
.stage/graft-x bench gpu --model /none --checks tiny --shapes $S,synthetic-gqa32 --reps 30 > $OUT/split_before.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
GRAFT_X_SPLIT=0 .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/split_off.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
GRAFT_X_SPLIT=after .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/split_after.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
GRAFT_X_FILL=2 .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/split_fill2.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
grep -E "PASS|FAIL|rror" $OUT/split_before.txt | cut -c1-170 | grep -v "^logits\|^spec"
for f in split_off split_before split_after split_fill2; do echo "== $f"; grep -E "seeded|real" $OUT/$f.txt | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/qwen2.5-coder-/q/; s/smollm2-135m/s/' | paste -sd' ' | fold -w 250; done
